"""Render what was heard to a WAV file: additive synthesis, one note at a time.

Each heard note is a sum of up to 8 partials ``f_k = k·f0·sqrt(1 + B·k²)`` (slight
inharmonicity ``B`` that grows towards the treble), each decaying exponentially (faster
for high notes and high partials), louder and brighter with loudness. At the note's
``end_us`` the dampers land and the sound fades within ~50 ms; a half-down pedal
(sensed value 1..63) at that moment lets it fade more slowly. A note never damped rings
out until it has decayed by 60 dB (at most ``MAX_RING_S``).

Speed: a partial is a decaying complex exponential ``a·z^n``; a note is rendered in
blocks of ``_BLOCK`` samples as the matrix product (blocks × partials) @ (partials ×
block samples), so the cost is one BLAS call per note instead of a sine per sample.

Two voices (:class:`Voice`; ``sim://?voice=plain|rich``): the plain one above (what this
module's functions render unless told, sample for sample as before voices existed: the
tests of other rules render it), and a richer, harder one closer to a real piano
(``Voice.RICH``, docs/simulator.md "Voices"; :data:`DEFAULT_VOICE`, what ``sim://``'s
microphone records unless its URL names a voice, since session 19):

- up to ``RICH_MAX_PARTIALS`` partials below 0.45 of the sample rate, same level law;
- unison strings (``strings_of``: 1 in the low bass, 2, then 3), detuned by
  ``DETUNE_CENTS`` and coupled through the bridge (Weinreich's model, J. Acoust. Soc.
  Am. 62, 1474 (1977)): per partial the modes of ``i·Ω − η·J − γ·I`` (Ω the strings'
  mistunings, J all ones, η the bridge's admittance, γ a string's own loss). The hammer
  strikes the strings nearly in phase: the symmetric mode, which moves the bridge, takes
  most of the energy and decays fast (the prompt sound, the plain voice's decay); the
  rest decays slowly (the aftersound), and the mistuning makes partials beat;
- a soundboard that radiates the low bass poorly (``RADIATION_HZ``, 12 dB/octave below),
  the note's onset power kept at the level law's (the spectrum changes, not the loudness:
  a bass note's upper partials carry what its fundamental does not);
- a hammer thump at each strike (:func:`thump`): broadband noise shaped like the
  hammer's contact force, a few ms, brighter and shorter when loud.

The rich voice's modes are more exponentials in the same block product, so its cost is
a few times the plain one's (``bench/bench_sim.py`` prints the ratio: 4.4-4.6x).
"""

from __future__ import annotations

import bisect
import logging
import math
import wave
from enum import Enum
from pathlib import Path

import numpy as np

from ..fileio import atomic_open
from ..performance import HeardNote, Performance
from ..spec.model import PianoSpec
from ..voicing import ATTACK_S, MAX_PARTIALS, f0_hz, partial_amplitudes

log = logging.getLogger(__name__)

DAMPER_FADE_S = 0.05  # time constant of the fade once the damper lands
FADE_TAUS = 5  # render the fade for this many time constants (-43 dB)
MAX_RING_S = 8.0  # an undamped note rings at most this long
PAD_S = 0.25  # silence after the last sound
PEAK = 0.9  # normalise the loudest sample to this fraction of full scale
_BLOCK = 256
_SMALL_GEMM = 200_000  # m·n·k under OpenBLAS's multithreading threshold (262144)


class Voice(Enum):
    """How a heard note sounds: ``plain`` (tests/test_sim_voice.py holds it) or ``rich``
    (unisons, double decay, hammer thump, weak bass fundamentals)."""

    PLAIN = "plain"
    RICH = "rich"


# the voice sim://'s microphone records where its URL names none: the rich one, the nearer
# to a real piano (session 19; the plain one flatters the detector: docs/simulator.md "Voices")
DEFAULT_VOICE = Voice.RICH


# --- the rich voice. Each figure is physics from the literature named, at a value we chose
# in its published range (not fitted to any take, not tuned on the detector's rows) ---
RICH_MAX_PARTIALS = 20  # a real piano note has dozens of partials; 20: 4.4-4.6x the plain render time
# unison strings: pitches from C2 have 2 strings, from A2 three; below C2 one (a grand's
# bass: single wound strings, then bichords, then trichords; the breaks vary by maker)
BICHORD_FROM, TRICHORD_FROM = 36, 45
# a unison's strings are mistuned by this much (highest - lowest, cents), drawn per pitch:
# ~0.5-2 cents (issue's brief; Weinreich 1977: a slight mistuning is what feeds the aftersound)
DETUNE_CENTS = (0.5, 2.0)
# a string's own loss (air, internal friction) against the bridge's: the aftersound decays
# with this many times the prompt sound's time constant (the double decay: Weinreich 1977;
# Cheng, Dixon and Mauch 2015 fit it on recorded notes; the factor 4 is our pick)
AFTERSOUND_X = 4.0
BRIDGE_REACTANCE = 0.5  # the bridge admittance's imaginary part / its real part (Weinreich: comparable)
HAMMER_UNEVEN = 0.05  # the hammer's blow per string: 1 +- this (s.d.), per pitch (hammers are not flat)
# the soundboard radiates below its lowest modes poorly: 12 dB/octave under this
# frequency (A0's fundamental ~ -20 dB, C2's -8 dB, C4's -0.4 dB; bass notes' spectra
# show weak fundamentals: Fletcher & Rossing, The Physics of Musical Instruments; 80 Hz our pick)
RADIATION_HZ = 80.0
# the hammer's thump: its RMS at the contact's peak, dB under the sum of the note's partial
# amplitudes at onset (our pick: plainly audible, under the tone); the hammer stays on the
# string a few ms at pp and less at ff (Askenfelt & Jansson's contact times; 4 / 1.5 ms ours)
THUMP_DB = -14.0
THUMP_TAU_S = (0.004, 0.0015)  # contact force's time constant at velocity 0 .. 127
THUMP_S = 0.04  # rendered this long (-40 dB at pp)
THUMP_DULL_HZ = 600.0  # a soft blow's thump: the noise through a one-pole low-pass here
VOICE_SEED = 88  # the rich voice's piano: its unisons' mistunings and hammers (fixed, as a tuning is)


def strings_of(pitch: int) -> int:
    """How many unison strings ``pitch`` has in the rich voice."""
    return 1 if pitch < BICHORD_FROM else 2 if pitch < TRICHORD_FROM else 3


def radiation(f_hz: np.ndarray) -> np.ndarray:
    """(K,) the soundboard's radiation of partials at ``f_hz`` (1 well above RADIATION_HZ)."""
    r = (np.asarray(f_hz, dtype=np.float64) / RADIATION_HZ) ** 2
    return r / (1.0 + r)


def decay_s(pitch: int) -> float:
    """Time constant (s) of a note's fundamental: about 4 s at A0, 0.2 s at C8."""
    return 4.0 * 2.0 ** (-(pitch - 21) / 20.0)


def _note_length(note: HeardNote, fade_s: float, sample_rate: int, voice: Voice = Voice.PLAIN) -> int:
    """Samples to render for ``note``: until its damper fade ends, or it rings out."""
    slow = AFTERSOUND_X if voice is Voice.RICH else 1.0
    ring = min(MAX_RING_S, slow * decay_s(note.pitch) * math.log(1000.0))
    if note.end_us is not None:
        ring = min(ring, max(0, note.end_us - note.t_us) / 1e6 + FADE_TAUS * fade_s)
    return max(1, int(math.ceil(ring * sample_rate)))


def _pedal_at(pedal: list[tuple[int, int]], times: list[int], t_us: int) -> int:
    i = bisect.bisect_right(times, t_us) - 1
    return pedal[i][1] if i >= 0 else 0


def _fade_s(pedal: list[tuple[int, int]], times: list[int], end_us: int | None) -> float:
    if end_us is None:
        return DAMPER_FADE_S
    v = _pedal_at(pedal, times, end_us)
    return DAMPER_FADE_S * (1.0 + 10.0 * v / 64.0) if 0 < v < 64 else DAMPER_FADE_S


def _partials(pitch: int, n: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, f_k Hz, tau_k s) of ``pitch``'s first ``n`` partials below 0.45 of the sample
    rate: ``f_k = k·f0·sqrt(1 + B·k²)`` (B the inharmonicity), each decaying with its time
    constant (higher partials faster)."""
    b = 1e-4 * 2.0 ** ((pitch - 21) / 20.0)  # inharmonicity
    k = np.arange(1, n + 1, dtype=np.float64)
    fk = k * f0_hz(pitch) * np.sqrt(1.0 + b * k * k)
    k, fk = k[fk < 0.45 * sample_rate], fk[fk < 0.45 * sample_rate]
    return k, fk, decay_s(pitch) / (1.0 + 0.6 * (k - 1.0))


class _PitchBank:
    """Per pitch, the partials' decaying oscillators, computed once per render.

    For pitch p with partials k (rates ``s_k`` per sample): ``rows[b] = [Re, Im] of
    exp(s_k·BLOCK·b)`` (MAX blocks × 2K) and ``base = [Im; Re] of exp(s_k·j)`` (2K × BLOCK),
    so ``rows[:nb] @ (gain_k · base)`` is the note's samples, block by block.
    """

    def __init__(self, sample_rate: int, voice: Voice = Voice.PLAIN) -> None:
        self.sample_rate = sample_rate
        self.voice = voice
        self.max_blocks = -(-int(math.ceil((MAX_RING_S + 1.0) * sample_rate)) // _BLOCK)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._gain: dict[int, np.ndarray] = {}  # rich: per mode, the soundboard's radiation
        self._thump: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def gain(self, pitch: int) -> np.ndarray | None:
        """(M,) float32 radiation of each mode of ``pitch`` (rich), None (plain)."""
        if self.voice is Voice.PLAIN:
            return None
        self.get(pitch)
        return self._gain[pitch]

    def noise(self, pitch: int) -> tuple[np.ndarray, np.ndarray]:
        """The rich voice's thump noise of ``pitch``: (white, dull), each (THUMP_S·sr,)
        float64 of unit RMS, fixed per pitch (drawn from VOICE_SEED)."""
        hit = self._thump.get(pitch)
        if hit is None:
            n = int(THUMP_S * self.sample_rate)
            white = np.random.default_rng([VOICE_SEED, pitch, 1]).standard_normal(n)
            f = np.fft.rfftfreq(2 * n, 1.0 / self.sample_rate)
            dull = np.fft.irfft(np.fft.rfft(white, 2 * n) / (1.0 + 1j * f / THUMP_DULL_HZ), 2 * n)[:n]
            hit = (white / np.sqrt(np.mean(white**2)), dull / np.sqrt(np.mean(dull**2)))
            self._thump[pitch] = hit
        return hit

    def get(self, pitch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k (K,), rows (MAX, 2K) float32, base (2K, BLOCK) float32) for ``pitch``
        (rich: per mode M instead of per partial K; ``k`` each mode's partial number)."""
        hit = self._cache.get(pitch)
        if hit is not None:
            return hit
        if self.voice is Voice.RICH:
            return self._get_rich(pitch)
        sr = self.sample_rate
        k, fk, tau = _partials(pitch, MAX_PARTIALS, sr)
        decay, omega = 1.0 / (tau * sr), 2.0 * np.pi * fk / sr  # per sample
        j = np.arange(_BLOCK, dtype=np.float64)[None, :]
        mag = np.exp(-decay[:, None] * j)
        base = np.concatenate([mag * np.sin(omega[:, None] * j), mag * np.cos(omega[:, None] * j)])
        n0 = _BLOCK * np.arange(self.max_blocks, dtype=np.float64)[:, None]
        mag = np.exp(-decay[None, :] * n0)
        rows = np.concatenate([mag * np.cos(omega[None, :] * n0), mag * np.sin(omega[None, :] * n0)], axis=1)
        hit = (k, rows.astype(np.float32), base.astype(np.float32))
        self._cache[pitch] = hit
        return hit

    def _get_rich(self, pitch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rich voice's modes: per partial, the coupled unison's eigenmodes
        (``a' = (iΩ − ηJ − γI) a``, the sound the bridge's motion ``Σ a``), each a
        decaying exponential with a complex weight ``c``: ``Im(c·z^n)`` (sine phase)."""
        sr = self.sample_rate
        k, fk, tau = _partials(pitch, RICH_MAX_PARTIALS, sr)  # tau: the prompt sound's, as the plain voice
        n = strings_of(pitch)
        rng = np.random.default_rng([VOICE_SEED, pitch])
        cents = rng.uniform(-1.0, 1.0, n)
        if n > 1:
            cents = (cents - cents.mean()) * rng.uniform(*DETUNE_CENTS) / float(np.ptp(cents))
        blow = 1.0 + HAMMER_UNEVEN * rng.standard_normal(n) if n > 1 else np.ones(1)
        blow /= blow.mean()
        gamma = 1.0 / (AFTERSOUND_X * tau)  # (K,) 1/s: a string's own loss
        # the bridge: a perfectly tuned unison's symmetric mode decays at 1/tau (the prompt sound)
        eta = (1.0 / tau - gamma) / n * (1.0 + 1j * BRIDGE_REACTANCE)  # (K,)
        mistune = 2.0 * np.pi * fk[:, None] * (2.0 ** (cents[None, :] / 1200.0) - 1.0)  # (K, n) rad/s
        m = (1j * mistune[:, :, None] * np.eye(n) - eta[:, None, None] * np.ones((n, n))
             - gamma[:, None, None] * np.eye(n))  # (K, n, n)
        lam, vec = np.linalg.eig(m)  # (K, n), (K, n, n)
        w = np.linalg.solve(vec, np.broadcast_to(blow, (len(k), n))[:, :, None])[:, :, 0]  # (K, n)
        c = vec.sum(axis=1) * w / n  # (K, n) each mode's share of the bridge's motion; Σ = 1
        s = ((lam + 2j * np.pi * fk[:, None]) / sr).ravel()  # (M,) per sample
        c = c.ravel()
        km = np.repeat(k, n)
        j = np.arange(_BLOCK, dtype=np.float64)
        cj = c[:, None] * np.exp(s[:, None] * j[None, :])  # (M, BLOCK)
        base = np.concatenate([cj.imag, cj.real])
        z = np.exp(s[None, :] * (_BLOCK * np.arange(self.max_blocks, dtype=np.float64))[:, None])  # (MAX, M)
        rows = np.concatenate([z.real, z.imag], axis=1)
        hit = (km, rows.astype(np.float32), base.astype(np.float32))
        self._cache[pitch] = hit
        self._gain[pitch] = radiation(np.repeat(fk, n)).astype(np.float32)
        return hit


def _onset_norm(velocity: float, k: np.ndarray, gain: np.ndarray) -> float:
    """The rich voice's level: the factor that gives its partials (``k`` per mode, under the
    soundboard's ``gain``) the onset power the level law gives the plain voice's (its
    partials up to MAX_PARTIALS): the voice changes the spectrum, not the loudness scale
    (a velocity is a loudness: robo_player/voicing.py)."""
    first = np.unique(k, return_index=True)[1]  # one mode per partial: its level and radiation
    a = partial_amplitudes(velocity, k[first])
    plain = float(np.sum(a[k[first] <= MAX_PARTIALS] ** 2))
    rich = float(np.sum((a * gain[first]) ** 2))
    return math.sqrt(plain / rich) if rich > 0.0 else 0.0


def thump(velocity: float, white: np.ndarray, dull: np.ndarray, level: float, sample_rate: int) -> np.ndarray:
    """(len(white),) the hammer's thump of a note of ``velocity``: the pitch's noise (its
    ``white`` and ``dull`` parts mixed by loudness) under the contact force's shape
    ``t/τ·e^(1−t/τ)`` (τ from THUMP_TAU_S, shorter when loud), RMS ``level`` at its peak."""
    loud = min(max(velocity, 0.0) / 127.0, 1.0)
    tau = THUMP_TAU_S[0] + (THUMP_TAU_S[1] - THUMP_TAU_S[0]) * loud
    t = np.arange(len(white)) / (tau * sample_rate)
    return level * (t * np.exp(1.0 - t)) * (loud * white + (1.0 - loud) * dull)


def _render_note(note: HeardNote, n: int, fade_s: float, bank: _PitchBank) -> np.ndarray:
    """(n,) float32 samples of one note, starting at its onset."""
    return render_note_part(note, n, fade_s, bank, 0, n)


def render_note_part(note: HeardNote, n: int, fade_s: float, bank: _PitchBank, i0: int, i1: int) -> np.ndarray:
    """Samples ``i0..i1`` (from its onset, within ``0..n``) of the note that
    :func:`render_audio` renders ``n`` samples long: the same blocks, ramp and damper fade
    (the room's live take renders a stream block by block: sim/room.py)."""
    sample_rate = bank.sample_rate
    i0, i1 = max(0, i0), min(n, i1)
    if i1 <= i0:
        return np.zeros(0, dtype=np.float32)
    k, rows, base = bank.get(note.pitch)
    amp = partial_amplitudes(note.velocity, k).astype(np.float32)  # (K,) the level law
    gain = bank.gain(note.pitch)
    if gain is not None:  # the rich voice: per mode, its partial's level x the soundboard's radiation,
        amp *= gain * np.float32(_onset_norm(note.velocity, k, gain))  # at the level law's onset power
    w2 = base * np.concatenate([amp, amp])[:, None]  # (2K, BLOCK)
    b0, b1 = i0 // _BLOCK, -(-i1 // _BLOCK)
    y = np.empty((b1 - b0) * _BLOCK, dtype=np.float32)
    # Small products: OpenBLAS runs them on one thread (threads thrash on a busy machine).
    step = max(1, _SMALL_GEMM // (2 * len(k) * _BLOCK))
    for r0 in range(b0, b1, step):
        r1 = min(b1, r0 + step)
        y[(r0 - b0) * _BLOCK : (r1 - b0) * _BLOCK] = (rows[r0:r1] @ w2).ravel()
    y = y[i0 - b0 * _BLOCK : i1 - b0 * _BLOCK]
    na = min(n, int(ATTACK_S * sample_rate))
    if i0 < na:
        y[: min(na, i1) - i0] *= np.linspace(0.0, 1.0, na, endpoint=False, dtype=np.float32)[i0 : min(na, i1)]
    if bank.voice is Voice.RICH:
        white, dull = bank.noise(note.pitch)
        if i0 < len(white):
            # each partial's level once (it has one mode per string)
            level = 10.0 ** (THUMP_DB / 20.0) * float(np.sum(amp)) / strings_of(note.pitch)
            th = thump(note.velocity, white, dull, level, sample_rate)
            y[: min(len(th), i1) - i0] += th[i0 : min(len(th), i1)].astype(np.float32)
    if note.end_us is not None:
        ne = max(0, int((note.end_us - note.t_us) * sample_rate // 1_000_000))
        if ne < i1:
            lo = max(ne, i0)
            tail = np.arange(lo - ne, i1 - ne, dtype=np.float32)
            y[lo - i0 :] *= np.exp(-tail / np.float32(fade_s * sample_rate))
    return y


def render_audio(performance: Performance, *, sample_rate: int = 44100, voice: Voice = Voice.PLAIN) -> np.ndarray:
    """(N,) float32 mono samples of the performance in ``voice``, not normalised."""
    notes = [h for h in performance.heard if h.t_us >= 0]
    pedal = sorted(performance.pedal)
    times = [t for t, _ in pedal]
    spans = []
    end = 0
    for h in notes:
        fade = _fade_s(pedal, times, h.end_us)
        n = _note_length(h, fade, sample_rate, voice)
        s0 = int(h.t_us * sample_rate // 1_000_000)
        spans.append((h, s0, n, fade))
        end = max(end, s0 + n)
    out = np.zeros(end + int(PAD_S * sample_rate), dtype=np.float32)
    bank = _PitchBank(sample_rate, voice)
    for h, s0, n, fade in spans:
        out[s0 : s0 + n] += _render_note(h, n, fade, bank)
    return out


def render_audio_rich(performance: Performance, *, sample_rate: int = 44100) -> np.ndarray:
    """:func:`render_audio` in the rich voice (a module-level function: the room's
    :data:`~.room.Renderer`, so takes of the same voice compare equal)."""
    return render_audio(performance, sample_rate=sample_rate, voice=Voice.RICH)


RENDERERS = {Voice.PLAIN: render_audio, Voice.RICH: render_audio_rich}  # the room's renderer of each voice


def voice_of(render: object) -> Voice:
    """The piano voice a room's renderer renders (ValueError for another instrument's)."""
    for voice, fn in RENDERERS.items():
        if fn is render:
            return voice
    raise ValueError(f"{render!r} is not a piano voice's renderer (the live take renders the piano only)")


def render_wav(
    performance: Performance,
    path: str | Path,
    *,
    sample_rate: int = 44100,
    spec: PianoSpec | None = None,
    voice: Voice = Voice.PLAIN,
) -> Path:
    """Write the heard notes of ``performance`` as 16-bit mono PCM WAV, atomically.

    ``spec``, if given, is used to warn about heard pitches the instrument does not have.
    Returns the path written.
    """
    if not 8000 <= sample_rate <= 192_000:
        raise ValueError(f"sample_rate {sample_rate} out of range (allowed: 8000..192000)")
    if spec is not None:
        odd = sorted({h.pitch for h in performance.heard if not spec.has_pitch(h.pitch)})
        if odd:
            log.warning("heard pitches outside %s: %s", spec.name, odd[:10])
    return write_pcm_wav(render_audio(performance, sample_rate=sample_rate, voice=voice), path, sample_rate,
                         len(performance.heard))  # fmt: skip


def write_pcm_wav(y: np.ndarray, path: str | Path, sample_rate: int, n_notes: int) -> Path:
    """Normalise ``y`` (float32, modified in place) to :data:`PEAK` and write it as 16-bit
    mono PCM WAV, atomically (the piano's and the guitar's renderings)."""
    peak = float(np.abs(y).max()) if len(y) else 0.0
    if peak > 0.0:
        y *= np.float32(PEAK / peak)
    pcm = np.clip(np.rint(y * 32767.0), -32768, 32767).astype("<i2")
    path = Path(path)
    with atomic_open(path, "wb") as fh, wave.open(fh, "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(sample_rate)
        wf.writeframes(pcm.tobytes())
    log.info("wrote %s: %.2f s of audio, %d notes", path, len(pcm) / sample_rate, n_notes)
    return path

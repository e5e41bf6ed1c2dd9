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
"""

from __future__ import annotations

import bisect
import logging
import math
import wave
from pathlib import Path

import numpy as np

from ..fileio import atomic_open
from ..performance import HeardNote, Performance
from ..spec.model import PianoSpec
from ..voicing import ATTACK_S, MAX_PARTIALS, partial_amplitudes

log = logging.getLogger(__name__)

DAMPER_FADE_S = 0.05  # time constant of the fade once the damper lands
FADE_TAUS = 5  # render the fade for this many time constants (-43 dB)
MAX_RING_S = 8.0  # an undamped note rings at most this long
PAD_S = 0.25  # silence after the last sound
PEAK = 0.9  # normalise the loudest sample to this fraction of full scale
_BLOCK = 256
_SMALL_GEMM = 200_000  # m·n·k under OpenBLAS's multithreading threshold (262144)


def decay_s(pitch: int) -> float:
    """Time constant (s) of a note's fundamental: about 4 s at A0, 0.2 s at C8."""
    return 4.0 * 2.0 ** (-(pitch - 21) / 20.0)


def _note_length(note: HeardNote, fade_s: float, sample_rate: int) -> int:
    """Samples to render for ``note``: until its damper fade ends, or it rings out."""
    ring = min(MAX_RING_S, decay_s(note.pitch) * math.log(1000.0))
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


class _PitchBank:
    """Per pitch, the partials' decaying oscillators, computed once per render.

    For pitch p with partials k (rates ``s_k`` per sample): ``rows[b] = [Re, Im] of
    exp(s_k·BLOCK·b)`` (MAX blocks × 2K) and ``base = [Im; Re] of exp(s_k·j)`` (2K × BLOCK),
    so ``rows[:nb] @ (gain_k · base)`` is the note's samples, block by block.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.max_blocks = -(-int(math.ceil((MAX_RING_S + 1.0) * sample_rate)) // _BLOCK)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def get(self, pitch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k (K,), rows (MAX, 2K) float32, base (2K, BLOCK) float32) for ``pitch``."""
        hit = self._cache.get(pitch)
        if hit is not None:
            return hit
        sr = self.sample_rate
        f0 = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
        b = 1e-4 * 2.0 ** ((pitch - 21) / 20.0)  # inharmonicity
        k = np.arange(1, MAX_PARTIALS + 1, dtype=np.float64)
        fk = k * f0 * np.sqrt(1.0 + b * k * k)
        k, fk = k[fk < 0.45 * sr], fk[fk < 0.45 * sr]
        tau = decay_s(pitch) / (1.0 + 0.6 * (k - 1.0))  # (K,) s
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
    if note.end_us is not None:
        ne = max(0, int((note.end_us - note.t_us) * sample_rate // 1_000_000))
        if ne < i1:
            lo = max(ne, i0)
            tail = np.arange(lo - ne, i1 - ne, dtype=np.float32)
            y[lo - i0 :] *= np.exp(-tail / np.float32(fade_s * sample_rate))
    return y


def render_audio(performance: Performance, *, sample_rate: int = 44100) -> np.ndarray:
    """(N,) float32 mono samples of the performance, not normalised."""
    notes = [h for h in performance.heard if h.t_us >= 0]
    pedal = sorted(performance.pedal)
    times = [t for t, _ in pedal]
    spans = []
    end = 0
    for h in notes:
        fade = _fade_s(pedal, times, h.end_us)
        n = _note_length(h, fade, sample_rate)
        s0 = int(h.t_us * sample_rate // 1_000_000)
        spans.append((h, s0, n, fade))
        end = max(end, s0 + n)
    out = np.zeros(end + int(PAD_S * sample_rate), dtype=np.float32)
    bank = _PitchBank(sample_rate)
    for h, s0, n, fade in spans:
        out[s0 : s0 + n] += _render_note(h, n, fade, bank)
    return out


def render_wav(
    performance: Performance,
    path: str | Path,
    *,
    sample_rate: int = 44100,
    spec: PianoSpec | None = None,
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
    return write_pcm_wav(render_audio(performance, sample_rate=sample_rate), path, sample_rate,
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

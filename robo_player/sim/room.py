"""The room: what a microphone in the room records of the simulated piano.

:class:`Room` turns the notes the physics sounded (exact, in performance time of one
stream) into a recording, as a sound card would hand it over:

- the piano's audio (:mod:`.audio`, the same synthesis as ``--wav``);
- a short room reverb: the direct sound plus exponentially decaying diffuse noise from
  ``predelay_s`` (default ``REVERB_PREDELAY_S``) on, ``rt60_s`` to -60 dB, ``wet_db`` below the direct sound;
- a microphone gain (``gain_db``, default ``GAIN_DB`` -24 dB, ``GAIN_DB_RANGE``
  -60..0: a velocity-127 note's partials at the level law of
  :mod:`robo_player.voicing` times this gain); a signal past full scale clips at +-1,
  as a sound card's converter does. The host side does not know it: the detector's
  loudness assumes -24 dB (its reference), and the calibrator fits the take's level
  (:mod:`robo_player.hearing.level`);
- the sync click (a piezo by the microphone, ``spec.sync_click``) where the physics
  says its output's on-edge made one: :func:`click_wave`, a sharp broadband transient
  (a 4.5 kHz ring decaying in 0.25 ms, its first half-period a step), ``CLICK_DB``
  below full scale at the default gain (the microphone's gain moves it as it moves the
  piano), through the room like the piano;
- noise fixed in absolute terms, as a real room and card have it, whatever is played:
  the room's own noise (ventilation, the street, the microphone's self-noise) white at
  ``snr_db`` below the reference, a mezzo-forte middle C (velocity 64, the mean power of
  its first 0.5 s through this gain: :func:`reference_power`), so it follows the gain as
  the piano does; plus the converter's floor, ``CONVERTER_FLOOR_DB`` dBFS of white noise
  that no gain moves, so a quiet microphone is a noisy one (at the default gain it is
  ~20 dB under the room's noise; at -60 dB gain it sets the floor). A soft calibration
  strike is heard against the same noise as a loud chord;
- an unknown constant offset between the MCU's clock and the audio clock (the card
  started recording ``offset_s`` before the stream's time zero) and the card's clock
  error (``drift_ppm``): a performance time ``t`` lands at audio time
  ``(t + offset_s) * (1 + drift_ppm * 1e-6)`` seconds.

The microphone's place in the room (``position``, session 25): position 0 is where it
stands at first (``gain_db``, the room's tail); the calibration may ask for it to be
moved between takes (``calibrate --mic-positions N``: a real room's colour of each key's
partials is averaged over several places, as acousticians average a room by measuring
at several microphone positions). :meth:`Room.at_position` is the room heard from
position k: its own fixed tail (drawn from the room's seed and k) and its own gain (the
distance to the strings changed: ``gain_db`` plus a change drawn within
+-``POSITION_GAIN_DB`` from the seed and k), the same noise law; the host side is told
neither.

Offset and drift are drawn from the room's seed (offset 0.05..0.45 s, drift +-100 ppm)
unless given; the host side never sees them, it has to find them (the alignment of
:mod:`robo_player.hearing.align`). The take is rendered lazily, on the first call of
:meth:`RoomTake.samples`, so a stream nobody listens to costs nothing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..performance import HeardNote, Performance
from .audio import _fade_s, _note_length, _PitchBank, render_audio, render_note_part, voice_of

CLICK_DB = -12.0  # the click's peak at the microphone (dBFS)
CLICK_HZ = 4500.0  # a piezo disc's ring
CLICK_TAU_S = 0.00025
CONVERTER_FLOOR_DB = -90.0  # a modest sound card's own noise, RMS, dB below full scale
REFERENCE_PITCH, REFERENCE_VELOCITY, REFERENCE_S = 60, 64, 0.5  # what snr_db is measured against
REVERB_PREDELAY_S = 0.004  # first reflections arrive this long after the direct sound
# where the first reflection may come (s): a microphone near the strings sees the lid's or
# the floor's after 1-2 ms, a far one in a big room after ~20 ms (sim:// ``predelay_ms``,
# session 25: a loudness read must not rest on the default's 4 ms gap)
PREDELAY_RANGE_S = (0.0005, 0.020)
SAMPLE_RATES = (44100, 48000)
GAIN_DB = -24.0  # the microphone's default gain (the detector's reference: hearing/detector.py)
GAIN_DB_RANGE = (-60.0, 0.0)  # a quiet far microphone .. a hot preamp (0 dB clips the loud notes)
# a microphone moved to another place "about a metre from the last, facing the strings at
# a similar distance" (the calibration's prompt) changes its distance to the strings by
# up to ~40 % (1.5 m -> 1.1..2.1 m: -3..+3 dB by the inverse-square law); each place's
# change is drawn uniform in +-this from the room's seed (our pick, not measured)
POSITION_GAIN_DB = 3.0
MOVE_GAIN_DB_MAX = 12.0  # sim://?move_gain_db= at most (a microphone moved 4x nearer or farther)
# how far apart the microphone's places are ("about a metre from the last": the prompt's),
# and the speed of sound: below c / 2r the places hear the room alike (:func:`_place_tail`)
POSITION_SPACING_M = 1.0
SPEED_OF_SOUND_M_S = 343.0

# an instrument's voice: the samples of a performance's heard notes at a sample rate (the
# piano's :func:`.audio.render_audio`, the guitar's Karplus-Strong
# :func:`.guitar.audio.render_audio`); a module-level function, so takes compare equal
Renderer = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Room:
    """A room and a microphone; offset and drift ``None``: drawn from ``seed``."""

    sample_rate: int = 48000
    snr_db: float = 30.0
    gain_db: float = GAIN_DB
    rt60_s: float = 0.3
    wet_db: float = -14.0
    offset_s: float | None = None
    drift_ppm: float | None = None
    seed: int = 0
    # the reverb's tail: drawn anew for every take (False, the simulator until session 24)
    # or once for the room (True: a real room's response from the piano to a fixed
    # microphone is the same on every take, so its colour of each key's partials does not
    # average out over a calibration's takes; docs/calibration.md, "Session 24, velocity")
    fixed_tail: bool = False
    # the microphone's place (0: where it stood first; :meth:`at_position`)
    position: int = 0
    # how far a move changes the microphone's gain, at most (dB; 0: the tail only)
    move_gain_db: float = POSITION_GAIN_DB
    predelay_s: float = REVERB_PREDELAY_S  # the first reflection's delay after the direct sound

    def __post_init__(self) -> None:
        if self.position < 0:
            raise ValueError(f"room: position {self.position} out of range (allowed: >= 0)")
        if not 0.0 <= self.move_gain_db <= MOVE_GAIN_DB_MAX:
            raise ValueError(f"room: move_gain_db {self.move_gain_db} out of range (allowed: 0..{MOVE_GAIN_DB_MAX:g})")
        if self.sample_rate not in SAMPLE_RATES:
            raise ValueError(f"room: sample_rate {self.sample_rate} (allowed: 44100, 48000)")
        if not 0.0 <= self.rt60_s <= 3.0:
            raise ValueError(f"room: rt60_s {self.rt60_s} out of range (allowed: 0..3)")
        lo, hi = GAIN_DB_RANGE
        if not lo <= self.gain_db <= hi:
            raise ValueError(f"room: gain_db {self.gain_db} out of range (allowed: {lo:g}..{hi:g})")
        if not PREDELAY_RANGE_S[0] <= self.predelay_s <= PREDELAY_RANGE_S[1]:
            raise ValueError(f"room: predelay_s {self.predelay_s} out of range (allowed: 0.0005..0.02)")
        if self.drift_ppm is not None and not abs(self.drift_ppm) <= 1000:
            raise ValueError(f"room: drift_ppm {self.drift_ppm} out of range (allowed: -1000..1000)")
        if self.offset_s is not None and not 0.0 <= self.offset_s <= 10.0:
            raise ValueError(f"room: offset_s {self.offset_s} out of range (allowed: 0..10)")

    def at_position(self, position: int) -> Room:
        """This room (its microphone at position 0) heard from the microphone's place
        ``position``: its own tail (:func:`room_tail`) and its gain moved by
        :func:`position_gain_change_db`; position 0 is this room unchanged."""
        if self.position != 0:
            raise ValueError(f"room: at_position from position {self.position} (allowed: from position 0)")
        if position == 0:
            return self
        lo, hi = GAIN_DB_RANGE
        gain = min(hi, max(lo, self.gain_db + position_gain_change_db(self.seed, position, self.move_gain_db)))
        return replace(self, position=position, gain_db=gain)


def position_gain_change_db(seed: int, position: int, span_db: float = POSITION_GAIN_DB) -> float:
    """The microphone's gain at place ``position`` less at place 0 (dB): drawn uniform in
    +-``span_db`` from the room's ``seed`` and the place (0 at place 0)."""
    if position == 0:
        return 0.0
    return span_db * float(np.random.default_rng([seed, 3, position]).uniform(-1.0, 1.0))


class RoomTake:
    """One stream's recording (the :class:`~robo_player.performance.AudioTake` of the
    simulator). ``samples()`` renders it once; ``sample_rate`` is the card's nominal rate."""

    def __init__(
        self, room: Room, notes: list[HeardNote], pedal: list[tuple[int, int]], take: int,
        clicks_us: list[int] | None = None, render: Renderer = render_audio,
        buzzes_us: list[int] | None = None,
    ) -> None:
        """``render``: the instrument's voice (default the piano's); ``buzzes_us``: when
        a buzzed note sounded (the guitar's rattle, ``perf.extra["buzzes"]``)."""
        self.sample_rate = room.sample_rate
        self._render_fn = render
        self._buzzes = list(buzzes_us or [])
        self._room = room
        self._notes = notes
        self._clicks = list(clicks_us or [])
        self._pedal = pedal
        self._offset_s, self._drift, self._noise_seed = card_clock(room, take)
        self._samples: np.ndarray | None = None

    def _key(self) -> tuple[object, ...]:
        return (self._room, self._notes, self._clicks, self._pedal, self._offset_s, self._drift, self._noise_seed,
                self._render_fn, self._buzzes)  # fmt: skip

    def __eq__(self, other: object) -> bool:
        """Two takes are the same recording when rendered from the same sounded notes,
        clicks and pedal through the same room and card (so equal performances compare
        equal without rendering either)."""
        return isinstance(other, RoomTake) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable cache: not hashable

    @property
    def render(self) -> Renderer:
        """The instrument's voice this take renders (:data:`Renderer`)."""
        return self._render_fn

    def _audio_us(self, t_us: int) -> int:
        return int(round((t_us + self._offset_s * 1e6) * (1.0 + self._drift)))

    def samples(self) -> np.ndarray:
        """(N,) float32 mono samples in -1..1, as the sound card recorded them."""
        if self._samples is None:
            self._samples = self._render()
        return self._samples

    def _render(self) -> np.ndarray:
        room, sr = self._room, self.sample_rate
        warped = [
            replace(h, t_us=self._audio_us(h.t_us), end_us=None if h.end_us is None else self._audio_us(h.end_us))
            for h in self._notes
        ]
        pedal = [(self._audio_us(t), v) for t, v in self._pedal]
        perf = Performance(heard=warped, pedal=pedal)
        if self._buzzes:
            perf.extra["buzzes"] = [{"t_us": self._audio_us(t)} for t in self._buzzes]
        y = np.asarray(self._render_fn(perf, sample_rate=sr), dtype=np.float64)
        y *= 10.0 ** (room.gain_db / 20.0)
        if self._clicks:
            # the piezo is heard through the same microphone and preamp as the piano
            wave = click_wave(sr) * 10.0 ** ((room.gain_db - GAIN_DB) / 20.0)
            end = max(self._audio_us(t) for t in self._clicks) * 1e-6 * sr + len(wave) + 1
            if end > len(y):
                y = np.concatenate([y, np.zeros(int(end) - len(y))])
            for t in self._clicks:
                _add_at(y, wave, self._audio_us(t) * 1e-6 * sr)
        rng = np.random.default_rng(self._noise_seed)
        if room.rt60_s > 0 and len(y):
            y = _reverb(y, room_tail(room, rng))
        y += rng.normal(0.0, noise_sd(room, self._render_fn), size=len(y))
        return np.clip(y, -1.0, 1.0).astype(np.float32)


def card_clock(room: Room, take: int) -> tuple[float, float, int]:
    """The sound card of take number ``take``: (offset s, drift as a fraction, the seed
    of its noise and reverb), drawn from the room's seed unless the room fixes them."""
    rng = np.random.default_rng([room.seed, take])
    offset_s = room.offset_s if room.offset_s is not None else float(rng.uniform(0.05, 0.45))
    drift = (room.drift_ppm if room.drift_ppm is not None else float(rng.uniform(-100, 100))) * 1e-6
    return offset_s, drift, int(rng.integers(2**32))


def noise_sd(room: Room, render: Renderer) -> float:
    """The s.d. of the take's noise: the room's (``snr_db`` under the reference, moved by
    the gain) and the converter's floor."""
    room_power = reference_power(room.sample_rate, render) * 10.0 ** ((room.gain_db - room.snr_db) / 10.0)
    return math.sqrt(room_power + 10.0 ** (CONVERTER_FLOOR_DB / 10.0))


LIVE_BLOCK = 512  # samples per block the card hands over while a stream runs (10.7 ms at 48 kHz)
# each block's capture time (PortAudio's inputBufferAdcTime, brought to the MCU's clock
# by the driver's clock sync): a constant error (the converter's and the driver's
# latency, unknown to the host side, drawn in +-STAMP_BIAS_US) and a jitter per block
STAMP_BIAS_US = 3_000.0
STAMP_JITTER_US = 500.0
_REVERB_CHUNK = 4096  # the live take's reverb: overlap-add in chunks of this many samples


class LiveTake:
    """One stream's recording as the sound card hands it over while the stream runs:
    blocks of :data:`LIVE_BLOCK` samples, each with the MCU time its first sample was
    captured at (with the card's constant error and jitter). Every sample is rendered
    once, from the notes sounded so far, and is the sample the drain's :class:`RoomTake`
    of the same take number renders (the same notes, clicks, reverb and noise; equal
    within float error: tests/test_live_audio.py). The piano's voices only (``render``:
    the drain's renderer, :func:`.audio.render_audio` or its rich voice's)."""

    def __init__(self, room: Room, take: int, render: Renderer = render_audio) -> None:
        self._room = room
        self._voice = voice_of(render)
        self.sample_rate = sr = room.sample_rate
        self._offset_s, self._drift, seed = card_clock(room, take)
        self._rng = np.random.default_rng(seed)  # the reverb's tail, then the noise: as RoomTake draws them
        self._tail = room_tail(room, self._rng) if room.rt60_s > 0 else None
        self._tail_fft: np.ndarray | None = None
        self._noise_sd = noise_sd(room, render)
        self._gain = 10.0 ** (room.gain_db / 20.0)
        self._click = click_wave(sr) * 10.0 ** ((room.gain_db - GAIN_DB) / 20.0)
        self._bank = _PitchBank(sr, self._voice)
        self._carry = np.zeros(0)  # the reverb of what is handed out, still to come
        self.samples_out = 0  # samples handed out so far
        stamps = np.random.default_rng([room.seed, take, 1])  # apart: the take's samples do not move
        self._bias_us = float(stamps.uniform(-STAMP_BIAS_US, STAMP_BIAS_US))
        self._stamps = stamps

    def _audio_us(self, t_us: float) -> int:
        return int(round((t_us + self._offset_s * 1e6) * (1.0 + self._drift)))

    def t_us_of(self, sample: int) -> float:
        """The MCU (stream) time at which sample number ``sample`` was captured (exact)."""
        return sample / self.sample_rate * 1e6 / (1.0 + self._drift) - self._offset_s * 1e6

    def blocks(
        self, notes: list[HeardNote], pedal: list[tuple[int, int]], clicks_us: list[int], upto_us: int,
    ) -> list[tuple[np.ndarray, float]]:
        """The new blocks whose samples were all captured by stream time ``upto_us``, from
        ``notes`` (exact, stream time: every note whose sound reaches those samples, each
        end given where it is before ``upto_us``), the sensed ``pedal`` and the clicks:
        ``(samples (LIVE_BLOCK,) float32, capture time of the first, µs)``."""
        sr = self.sample_rate
        n1 = int(self._audio_us(upto_us - 2_000) * sr // 1_000_000) // LIVE_BLOCK * LIVE_BLOCK
        n0 = self.samples_out
        if n1 <= n0:
            return []
        y = self._render(notes, pedal, clicks_us, n0, n1)
        self.samples_out = n1
        out = []
        for b in range(n0, n1, LIVE_BLOCK):
            stamp = self.t_us_of(b) + self._bias_us + float(self._stamps.normal(0.0, STAMP_JITTER_US))
            out.append((y[b - n0 : b - n0 + LIVE_BLOCK], stamp))
        return out

    def _render(self, notes: list[HeardNote], pedal: list[tuple[int, int]], clicks_us: list[int],
                n0: int, n1: int) -> np.ndarray:
        """Samples ``n0..n1`` as RoomTake._render makes them (there: the whole take at once)."""
        sr = self.sample_rate
        warped = [
            replace(h, t_us=self._audio_us(h.t_us), end_us=None if h.end_us is None else self._audio_us(h.end_us))
            for h in notes
        ]
        ped = sorted((self._audio_us(t), v) for t, v in pedal)
        times = [t for t, _ in ped]
        dry = np.zeros(n1 - n0, dtype=np.float32)
        for h in warped:
            if h.t_us < 0:
                continue
            fade = _fade_s(ped, times, h.end_us)
            n = _note_length(h, fade, sr, self._voice)
            s0 = int(h.t_us * sr // 1_000_000)
            if s0 >= n1 or s0 + n <= n0:
                continue
            part = render_note_part(h, n, fade, self._bank, n0 - s0, n1 - s0)
            lo = max(s0, n0) - n0
            dry[lo : lo + len(part)] += part
        y = dry.astype(np.float64) * self._gain
        w = len(self._click) + 1
        for t in clicks_us:
            pos = self._audio_us(t) * 1e-6 * sr - n0
            if -w < pos < len(y):
                _add_at(y, self._click, pos)
        if self._tail is not None:
            y = self._reverb(y)
        y += self._rng.normal(0.0, self._noise_sd, size=len(y))
        return np.clip(y, -1.0, 1.0).astype(np.float32)

    def _reverb(self, y: np.ndarray) -> np.ndarray:
        """``y`` + its reverb, overlap-added onto what the earlier samples left."""
        assert self._tail is not None
        n_ir = len(self._tail)
        nfft = 1 << (_REVERB_CHUNK + n_ir - 2).bit_length()
        if self._tail_fft is None:
            self._tail_fft = np.fft.rfft(self._tail, nfft)
        acc = np.zeros(len(y) + n_ir - 1)
        acc[: len(self._carry)] += self._carry
        for c0 in range(0, len(y), _REVERB_CHUNK):
            x = y[c0 : c0 + _REVERB_CHUNK]
            wet = np.fft.irfft(np.fft.rfft(x, nfft) * self._tail_fft, nfft)[: len(x) + n_ir - 1]
            acc[c0 : c0 + len(wet)] += wet
        self._carry = acc[len(y) :]
        return y + acc[: len(y)]


@functools.lru_cache(maxsize=8)
def reference_power(sample_rate: int, render: Renderer = render_audio) -> float:
    """Mean power (full scale 1) of the reference note (a mezzo-forte middle C in the
    instrument's voice ``render``) at 0 dB gain, no room: the level ``Room.snr_db``
    counts from."""
    end = int(REFERENCE_S * 1e6)
    ref = HeardNote(0, REFERENCE_PITCH, float(REFERENCE_VELOCITY), end)
    y = np.asarray(render(Performance(heard=[ref], pedal=[]), sample_rate=sample_rate), dtype=np.float64)
    return float(np.mean(y[: int(REFERENCE_S * sample_rate)] ** 2))


def click_wave(sr: int) -> np.ndarray:
    """One click as the microphone records it (peak ``CLICK_DB`` dBFS), sample 0 its start."""
    t = np.arange(int(0.003 * sr)) / sr
    w = np.sin(2 * np.pi * CLICK_HZ * t) * np.exp(-t / CLICK_TAU_S)
    return w * (10.0 ** (CLICK_DB / 20.0) / float(np.max(np.abs(w))))


def _add_at(y: np.ndarray, wave: np.ndarray, pos: float) -> None:
    """``y`` += ``wave`` starting at fractional sample ``pos`` (linear interpolation)."""
    i = int(math.floor(pos))
    f = pos - i
    w = np.concatenate([[0.0], wave]) * f + np.concatenate([wave, [0.0]]) * (1.0 - f)
    lo = max(0, i)
    y[lo : i + len(w)] += w[lo - i : len(y) - i]


def reverb_tail(sr: int, rt60_s: float, wet_db: float, rng: np.random.Generator,
                predelay_s: float = REVERB_PREDELAY_S) -> np.ndarray:
    """The room's diffuse tail (its impulse response less the direct sound), drawn from
    ``rng``, silent for its first ``predelay_s``."""
    n_ir = int(rt60_s * sr)
    t = np.arange(n_ir) / sr
    tail = rng.normal(0.0, 1.0, n_ir) * np.exp(-6.91 * t / rt60_s)  # -60 dB at rt60
    return _silent_then_wet(tail, sr, predelay_s, wet_db)


def _silent_then_wet(tail: np.ndarray, sr: int, predelay_s: float, wet_db: float) -> np.ndarray:
    """``tail`` silent for its first ``predelay_s`` and scaled to ``wet_db`` below the direct sound."""
    tail[: int(predelay_s * sr)] = 0.0
    tail *= 10.0 ** (wet_db / 20.0) / math.sqrt(float(np.sum(tail * tail)) or 1.0)
    return tail


def room_tail(room: Room, take_rng: np.random.Generator) -> np.ndarray:
    """The reverb tail of a take through ``room``: drawn from the take's generator
    ``take_rng`` (its noise is drawn after it), or with ``room.fixed_tail`` the room's own,
    the same on every take (drawn from the room's seed and the microphone's place: place 0's
    from the seed alone, as before places were)."""
    if room.fixed_tail:
        first = reverb_tail(room.sample_rate, room.rt60_s, room.wet_db, np.random.default_rng([room.seed, 2]), room.predelay_s)
        if room.position == 0:
            return first
        own = reverb_tail(room.sample_rate, room.rt60_s, room.wet_db, np.random.default_rng([room.seed, 2, room.position]),
                          room.predelay_s)  # fmt: skip
        return _place_tail(first, own, room)
    return reverb_tail(room.sample_rate, room.rt60_s, room.wet_db, take_rng, room.predelay_s)


def _place_tail(first: np.ndarray, own: np.ndarray, room: Room) -> np.ndarray:
    """The tail heard at another place of the microphone, ``POSITION_SPACING_M`` from the
    first: a diffuse field's pressure at two points ``r`` apart correlates as sin(kr)/kr
    (k = 2 pi f / c), so at each frequency the place's tail is the first place's times that
    coherence plus its ``own`` (an independent draw) times the rest (sqrt(1 - coh^2)):
    alike below ~c / 2r (172 Hz at 1 m, where the bass keys' lower partials lie), nearly
    independent above. Silent for the predelay and scaled to the room's ``wet_db`` as
    :func:`reverb_tail`'s."""
    n = len(first)
    f = np.fft.rfftfreq(n, 1.0 / room.sample_rate)
    coh = np.sinc(2.0 * f * POSITION_SPACING_M / SPEED_OF_SOUND_M_S)  # sin(kr) / kr
    tail = np.fft.irfft(coh * np.fft.rfft(first) + np.sqrt(1.0 - coh * coh) * np.fft.rfft(own), n)
    return _silent_then_wet(tail, room.sample_rate, room.predelay_s, room.wet_db)


def _reverb(y: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """``y`` through a room: direct sound + a diffuse exponential ``tail`` (FFT convolution)."""
    n_ir = len(tail)
    n = len(y) + n_ir - 1
    nfft = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(y, nfft) * np.fft.rfft(tail, nfft), nfft)[: len(y)]
    return y + wet


__all__ = ["CONVERTER_FLOOR_DB", "GAIN_DB", "GAIN_DB_RANGE", "LIVE_BLOCK", "MOVE_GAIN_DB_MAX", "POSITION_GAIN_DB",
           "PREDELAY_RANGE_S", "REVERB_PREDELAY_S", "SAMPLE_RATES", "LiveTake", "Renderer", "Room", "RoomTake", "card_clock",
           "click_wave", "noise_sd", "position_gain_change_db", "reference_power", "reverb_tail", "room_tail"]

"""Hearing guitar picks in a recording: one pick at a time, its string and fret known.

The piano's detector (:mod:`.detector`) tells keys apart by harmonic templates and
times a hammer's attack against a reference tone. A plucked string is simpler to hear
and different to time: the pick lets the string go at once, so its sound starts as a
*step* (from the room's noise to the string's full level within a sample: a
Karplus-Strong string's first period is its excitation), and the first period carries
the pick's loudness before the string's own losses shape it. The guitar's calibration
plays its picks one at a time (no two within :data:`ISOLATION_S`, each damped before
the next), so the ear needs no owner test; it needs a precise step and a level:

- **onset** (:meth:`PickEar.find`): candidates where the power over 1 ms rises
  :data:`RISE_DB` above the power before (the quietest 5 ms of the 20 ms before); the
  step's sample is the maximum-likelihood change point of the signal's variance (two
  segments, each of constant power) within :data:`STEP_REACH_S` of the rise;
- **loudness**: the mean power of the string's first period after the step (the
  pitch known: string + fret), less the background, as MIDI velocity by the guitar's
  level law (:func:`power_of_velocity`: the pick's amplitude ``(v/127)^1.5`` and its
  brightness, a one-pole lowpass whose pole falls as the pick gets louder, on the
  string's own spectrum as heard in that period), up to the
  take's level (the microphone's gain, unknown: fitted by the calibrator against the
  spec's nominal curve, :func:`take_level`);
- **clock** (:func:`align_picks`, where the spec has no sync click; with one the
  patterns are clicked and :func:`~.align.align_clicks` gives an absolute clock): a sync
  pattern (:data:`~.align.PATTERN_US`) picked on one string at full drive at the start
  and the end of a take; the pattern's onsets fix the audio clock's offset and drift.
  The aligned times are early by that picker's full-drive latency (the calibrator finds
  it from the curves' shape: :func:`robo_player.calibrator.guitar_listening.common_offset`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import HearingError
from ..voicing import f0_hz
from .align import MAX_DRIFT, MAX_OFFSET_S, PATTERN_US, ClockFit, fit_clock
from .detector import check_audio

# the ear's reference (dB): the microphone chain's gain, in the room's ``gain_db`` sense (the
# voice at unit level times this gain: sim/room.py), at which this ear reads a take's level
# as 0 dB, as the piano's detector's -24 dB. Not 0: a pick's first period as the voice
# renders it carries, on average over the neck, 0.22 dB less power than the law says
# (each pitch's own timbre, -1.0..+0.5 dB, s.d. 0.32 dB; mean -0.21..-0.23 dB at velocity
# 60, 110 and 127 over pitches 28-88: tests/test_guitar_audio.py measures it). It matters
# only where the gain is given (--mic-gain-db): the anchor on the nominal absorbs it
REFERENCE_GAIN_DB = 0.22
ISOLATION_S = 0.35  # the calibration's picks: no two onsets closer than this
SKIP_S = 0.1  # after a candidate, the next is looked for this much later (the sync pattern: 160 ms apart)
RISE_DB = 12.0  # a pick: its power over RISE_WIN_S rises this far above the quiet before
RISE_WIN_S = 0.001
BEFORE_S = 0.020  # the background: the quietest BG_WIN_S of this long before
BG_WIN_S = 0.005
STEP_REACH_S = 0.004  # the change point is looked for this far either side of the rise
PATTERN_TOL_S = 0.004  # a pattern's gaps as heard may differ this much from the MCU's (+ drift)
END_SEARCH_S = 0.12  # the end pattern's picks are looked for this far around the prediction


def _pole(velocity: np.ndarray) -> np.ndarray:
    loud = np.clip(np.asarray(velocity, dtype=np.float64) / 127.0, 0.0, 1.0)
    return np.asarray(0.15 + 0.6 * (1.0 - loud))


def _lowpass_gain(pole: np.ndarray, w: np.ndarray) -> np.ndarray:
    """|(1 - p) / (1 - p e^-jw)|^2, poles (V,) by frequencies (B,)."""
    p = np.asarray(pole)[..., None]
    return np.asarray((1.0 - p) ** 2 / (1.0 - 2.0 * p * np.cos(w) + p * p))


def power_of_velocity(velocity: float | np.ndarray, spectrum: np.ndarray | None = None) -> np.ndarray:
    """The guitar's level law: the mean power of a pick's first period at loudness
    ``velocity`` (MIDI units, 127 the loudest the voice has), at unit level: the
    amplitude ``(v/127)^1.5`` squared, times 2 (the pick position's comb on the string's
    shape), times the power gain of the brightness lowpass ``(1 - p) / (1 - p z^-1)``
    (pole ``p = 0.15 + 0.6 (1 - v/127)``: a softer pick is darker) on the string's own
    spectrum. ``spectrum``: the pick's first period as heard (its rfft's power; the
    string's shape is that over the lowpass at ``velocity``), None: a white shape
    (gain ``(1 - p) / (1 + p)``). ``sim/guitar/audio.py`` renders with the same law (a
    test holds them together)."""
    v = np.asarray(velocity, dtype=np.float64)
    loud = np.clip(v / 127.0, 0.0, 1.0)
    pole = _pole(v)
    if spectrum is None:
        return np.asarray(2.0 * loud**3 * (1.0 - pole) / (1.0 + pole))
    s = np.asarray(spectrum, dtype=np.float64)
    w = np.pi * np.arange(len(s)) / max(1, len(s) - 1)
    g = _lowpass_gain(np.atleast_1d(pole), w)  # (V, B)
    gain = float(np.sum(s)) / np.maximum(np.sum(s / g, axis=-1), 1e-30)  # the shape's gain through the lowpass
    return np.asarray(2.0 * loud**3 * gain.reshape(np.shape(loud)))


_V_GRID = np.linspace(0.0, 127.0, 1271)
_P_WHITE = power_of_velocity(_V_GRID)


def velocity_of_power(power: float, level: float = 1.0, spectrum: np.ndarray | None = None) -> float:
    """Inverse of :func:`power_of_velocity` at the take's ``level`` (a power ratio);
    above the loudest the law has, 127."""
    grid = _P_WHITE if spectrum is None else power_of_velocity(_V_GRID, spectrum)
    return float(np.interp(power / level, grid, _V_GRID))


@dataclass(frozen=True, slots=True)
class Pick:
    t_s: float  # the step, audio time
    power: float  # mean power of the first period less the background
    spectrum: np.ndarray  # its power spectrum (rfft), the background's share taken off

    def velocity(self, level: float) -> float:
        return velocity_of_power(self.power, level, self.spectrum)


class PickEar:
    """One recording, for :meth:`find`."""

    def __init__(self, samples: np.ndarray, sample_rate: int, where: str = "audio") -> None:
        self.y = check_audio(samples, sample_rate, where)
        self.sr = sample_rate
        self.where = where
        self._c = np.concatenate([[0.0], np.cumsum(self.y.astype(np.float64) ** 2)])

    def _power(self, i0: np.ndarray | int, n: int) -> np.ndarray:
        """Mean power over [i0, i0 + n) (clipped to the take)."""
        a = np.clip(np.asarray(i0), 0, len(self.y))
        b = np.clip(np.asarray(i0) + n, 0, len(self.y))
        return np.asarray((self._c[b] - self._c[a]) / np.maximum(b - a, 1))

    def _background(self, i: int) -> float:
        w, span = int(BG_WIN_S * self.sr), int(BEFORE_S * self.sr)
        starts = np.arange(max(0, i - span), max(1, i - w + 1), max(1, w // 4))
        return float(np.min(self._power(starts, w))) if len(starts) else float(self._power(0, w)[()])

    def _backgrounds(self, ks: np.ndarray) -> np.ndarray:
        """:meth:`_background` at each of ``ks`` at once, the same numbers (the same
        windows' powers, their minimum): one array of every sample's windows, not a call
        a sample (that loop was most of a guitar calibration's time; session 27)."""
        w, span = int(BG_WIN_S * self.sr), int(BEFORE_S * self.sr)
        step = max(1, w // 4)
        ks = np.asarray(ks, dtype=np.int64)
        lo, hi = np.maximum(0, ks - span), np.maximum(1, ks - w + 1)
        n = np.maximum(0, -(-(hi - lo) // step))  # len(np.arange(lo, hi, step)) each
        m = np.arange(max(1, int(np.max(n, initial=0))))
        p = np.where(m[None, :] < n[:, None], self._power(lo[:, None] + step * m[None, :], w), np.inf)
        return np.where(n > 0, np.min(p, axis=1), float(self._power(0, w)[()]))

    def candidates(self, t0_s: float, t1_s: float) -> list[int]:
        """Samples in [t0, t1] where the power over :data:`RISE_WIN_S` first rises
        :data:`RISE_DB` over the background before (one per rise)."""
        i0, i1 = max(0, int(t0_s * self.sr)), min(len(self.y), int(t1_s * self.sr))
        w = int(RISE_WIN_S * self.sr)
        hop = max(1, w // 4)
        out: list[int] = []
        i = i0
        ratio = 10.0 ** (RISE_DB / 10.0)
        while i < i1:
            idx = np.arange(i, min(i1, i + 200 * hop), hop)
            p = self._power(idx, w)
            rose = np.flatnonzero(p > ratio * np.maximum(self._backgrounds(idx), 1e-20))
            if not len(rose):
                i = int(idx[-1]) + hop
                continue
            hit = int(idx[rose[0]])
            out.append(hit)
            i = hit + int(SKIP_S * self.sr)  # one candidate per pick
        return out

    def step(self, i: int) -> int:
        """The change point of the variance within :data:`STEP_REACH_S` of ``i``: the
        sample where a quiet segment before and a loud one after fit best."""
        r = int(STEP_REACH_S * self.sr)
        a, b = max(0, i - 2 * r), min(len(self.y), i + 2 * r)
        ks = np.arange(max(a + 8, i - r), min(b - 8, i + r))
        if not len(ks):
            return i
        e1 = (self._c[ks] - self._c[a]) / (ks - a)
        e2 = (self._c[b] - self._c[ks]) / (b - ks)
        ll = -(ks - a) * np.log(np.maximum(e1, 1e-30)) - (b - ks) * np.log(np.maximum(e2, 1e-30))
        return int(ks[int(np.argmax(ll))])

    def find(self, pitch: int, t0_s: float, t1_s: float) -> Pick | None:
        """The first pick of ``pitch`` whose rise lies in [t0, t1] (audio seconds), or None."""
        cands = self.candidates(t0_s, t1_s)
        if not cands:
            return None
        k = self.step(cands[0])
        n = int(round(self.sr / f0_hz(pitch)))
        seg = self.y[k : k + n]
        if len(seg) < n:
            return None
        bg = self._background(k)
        spec = np.abs(np.fft.rfft(seg)) ** 2 / (n * n)
        spec[1 : (n + 1) // 2] *= 2.0  # one-sided: the bins sum to the mean power
        spec = np.maximum(spec - bg * 2.0 / n, 0.0)  # white background: its share of each bin
        return Pick(k / self.sr, max(float(np.mean(seg * seg)) - bg, 0.0), spec)


def align_picks(ear: PickEar, pitch: int, starts_us: Sequence[int], where: str) -> ClockFit:
    """The clock from the sync patterns picked on ``pitch`` at ``starts_us`` (MCU µs):
    the first pattern looked for from the take's start (the card's offset unknown, up
    to :data:`~.align.MAX_OFFSET_S`), the others around where the first puts them."""
    gaps = np.diff(np.asarray(PATTERN_US, dtype=np.float64)) * 1e-6
    span = PATTERN_US[-1] * 1e-6
    cands = [c / ear.sr for c in ear.candidates(0.0, MAX_OFFSET_S + 0.5 + span)]
    first: list[float] | None = None
    for j, t in enumerate(cands):
        got = [t]
        for g in gaps:
            want = got[-1] + g
            near = [c for c in cands[j + 1 :] if abs(c - want) <= PATTERN_TOL_S + MAX_DRIFT * span]
            if not near:
                break
            got.append(min(near, key=lambda c: abs(c - want)))
        if len(got) == len(PATTERN_US):
            first = got
            break
    if first is None:
        raise HearingError(f"{where}: the sync pattern (picks at {', '.join(str(x // 1000) for x in PATTERN_US)} ms "
                           f"on pitch {pitch}) was not heard in the first {MAX_OFFSET_S + 0.5 + span:.1f} s "
                           f"({len(cands)} onsets there)")  # fmt: skip
    mcu = [starts_us[0] + dt for dt in PATTERN_US]
    audio = [ear.step(int(t * ear.sr)) / ear.sr for t in first]
    for s in starts_us[1:]:
        guess = fit_clock(mcu, audio) if len(mcu) > 4 else ClockFit(audio[0] - mcu[0] * 1e-6, 1.0, 0.0, 1)
        for dt in PATTERN_US:
            at = guess.to_audio_s(s + dt)
            reach = END_SEARCH_S if len(mcu) == 4 else 0.02
            c = ear.candidates(at - reach, at + reach)
            if c:
                mcu.append(s + dt)
                audio.append(ear.step(c[0]) / ear.sr)
    clock = fit_clock(mcu, audio)
    if abs(clock.b - 1.0) > MAX_DRIFT * 2:
        raise HearingError(f"{where}: the sync patterns give a clock drift of {clock.drift_ppm:+.0f} ppm "
                           f"(allowed: +-{MAX_DRIFT * 2e6:.0f}): not the patterns played?")  # fmt: skip
    return clock


def take_level(pairs: Iterable[tuple[Pick, float]]) -> float:
    """The take's level (power ratio against the law's unit level): the geometric mean
    over (pick heard, expected velocity) of heard / law (a handful of strings: the mean
    tells more than the median)."""
    r = [p.power / float(power_of_velocity(v, p.spectrum)) for p, v in pairs if p.power > 0 and v > 0]
    if not r:
        raise HearingError("guitar audio: no pick heard to fix the take's level")
    return float(np.exp(np.mean(np.log(r))))


def level_db(level: float) -> float:
    return 10.0 * math.log10(level) if level > 0 else -math.inf


__all__ = ["ISOLATION_S", "REFERENCE_GAIN_DB", "Pick", "PickEar", "align_picks", "level_db", "power_of_velocity", "take_level",
           "velocity_of_power"]  # fmt: skip

"""Time alignment between the MCU's clock and the audio clock.

A sound card's clock has its own start (an unknown offset from the MCU's) and its own
rate (a drift of up to +-100 ppm). The calibrator strikes a known pattern on one key at
full drive at the start of every take and again at its end (:data:`PATTERN_US`: four
strikes at irregular gaps, so the pattern cannot be matched one strike off). Their
onsets fix the line ``audio_s = a + b * mcu_s`` (least squares): ``b`` is the drift, and
``a`` the offset plus the sync key's latency at full drive (one constant for every take
of a session; the calibrator finds it with the curves, see ``docs/hearing.md``).

Where the setup has a sync click (``spec.sync_click``: a piezo on a spare output) the
pattern is clicked instead (:func:`align_clicks`): the click sounds a known delay after
its output's on-edge, so the line is absolute and no constant is left to guess.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import HearingError
from .click import find_clicks
from .detector import MIN_RISE_DB, Detector

PATTERN_US = (0, 160_000, 420_000, 780_000)  # one pattern: strikes at these offsets
PATTERN_SPAN_US = 1_200_000  # a pattern and its key's ring-out
MAX_OFFSET_S = 1.0  # the card may start this long before the MCU's time zero (or the
#                     first strike's latency on top of it)
MAX_DRIFT = 500e-6


@dataclass(frozen=True, slots=True)
class ClockFit:
    """``audio_s = a_s + b * mcu_s``."""

    a_s: float
    b: float
    rms_us: float
    points: int

    @property
    def drift_ppm(self) -> float:
        return (self.b - 1.0) * 1e6

    def to_mcu_us(self, audio_s: float) -> float:
        return (audio_s - self.a_s) / self.b * 1e6

    def to_audio_s(self, mcu_us: float) -> float:
        return self.a_s + self.b * mcu_us * 1e-6


def fit_clock(mcu_us: Sequence[float], audio_s: Sequence[float]) -> ClockFit:
    """Least-squares line through (mcu time, audio time) pairs (at least 2)."""
    x = np.asarray(mcu_us, dtype=np.float64) * 1e-6
    y = np.asarray(audio_s, dtype=np.float64)
    if len(x) < 2 or float(np.ptp(x)) <= 0.0:
        raise HearingError(f"clock alignment: {len(x)} sync onsets heard at one time (need >= 2 apart)")
    b, a = np.polyfit(x, y, 1)
    res = y - (a + b * x)
    return ClockFit(float(a), float(b), float(np.sqrt(np.mean(res * res))) * 1e6, len(x))


def _peaks(det: Detector, pitch: int, t0: float, t1: float) -> list[float]:
    """Times (audio s) of the frames where ``pitch``'s salience rise peaks above MIN_RISE_DB."""
    r = det.rise_db(pitch)
    hop_s = det.hop / det.sr
    f0, f1 = max(1, int(t0 / hop_s)), min(len(r) - 1, int(t1 / hop_s))
    seg = r[f0 - 1 : f1 + 1]
    idx = np.nonzero((seg[1:-1] >= MIN_RISE_DB) & (seg[1:-1] >= seg[:-2]) & (seg[1:-1] > seg[2:]))[0]
    return [(f0 + int(i)) * hop_s for i in idx]


def _window(start_us: int, guess: ClockFit | None) -> tuple[float, float]:
    """Where (audio s) the pattern from MCU time ``start_us`` can be: from the start of
    the recording without ``guess`` (the card's offset is unknown), else around it."""
    if guess is None:
        return 0.0, MAX_OFFSET_S + (PATTERN_US[-1] + 100_000) * 1e-6
    t = guess.to_audio_s(start_us)
    return t - 0.05, t + (PATTERN_US[-1] + 100_000) * 1e-6


def _match(cands: list[float], what: str, lo: float, hi: float, where: str) -> list[float]:
    """The candidates (audio s) that make the pattern, first to last; HearingError if
    fewer than all its strikes are there."""
    best: list[float] = []
    for c in cands:
        got = [c]
        for dt in PATTERN_US[1:]:
            want = c + dt * 1e-6
            near = [p for p in cands if abs(p - want) <= 0.025]
            if near:
                got.append(min(near, key=lambda p: abs(p - want)))  # noqa: B023
        if len(got) > len(best):
            best = got
        if len(best) == len(PATTERN_US):
            break
    if len(best) < len(PATTERN_US):
        raise HearingError(
            f"{where}: the sync pattern ({what}, {len(PATTERN_US)} at "
            f"{', '.join(f'{t / 1000:g}' for t in PATTERN_US)} ms) was not heard "
            f"between {lo:.2f} and {hi:.2f} s of the recording (heard {len(best)} of its "
            f"strikes; {len(cands)} onsets of that {what.split()[0]} there): is this the right recording?"
        )
    return best


def find_pattern(det: Detector, pitch: int, start_us: int, guess: ClockFit | None, where: str) -> list[float]:
    """Audio onset times of the pattern struck on ``pitch`` from MCU time ``start_us``.

    Without ``guess`` the pattern is searched from the start of the recording (the
    card's offset is unknown); with one, around where ``guess`` puts it."""
    lo, hi = _window(start_us, guess)
    best = _match(_peaks(det, pitch, lo, hi), f"key {pitch}", lo, hi, where)
    onsets = []
    for c in best:
        o = det.find(pitch, c - 0.02, c + 0.02, alone=True)
        if o is None:
            raise HearingError(f"{where}: sync strike near {c:.3f} s lost on refinement")
        onsets.append(o.t_s)
    return onsets


def _fit_patterns(
    starts_us: list[int], find: Callable[[int, ClockFit | None], list[float]], mcu_shift_us: int, where: str,
) -> ClockFit:
    """The clock line through the patterns from ``starts_us`` (MCU), each found by
    ``find(start, guess)``; ``mcu_shift_us``: what the sound lags its command by."""
    first = find(starts_us[0], None)
    mcu = [starts_us[0] + d + mcu_shift_us for d in PATTERN_US]
    fit = fit_clock(mcu, first)
    # a first guess of the rate from the first pattern alone is poor (+-10 ms over a
    # minute): take the offset from it, the rate as nominal, then refit with each pattern
    fit = ClockFit(fit.a_s + (fit.b - 1.0) * mcu[0] * 1e-6, 1.0, fit.rms_us, fit.points)
    audio = list(first)
    for s in starts_us[1:]:
        audio += find(s, fit)
        mcu += [s + d + mcu_shift_us for d in PATTERN_US]
        fit = fit_clock(mcu, audio)
    if abs(fit.b - 1.0) > MAX_DRIFT:
        raise HearingError(
            f"{where}: the audio clock runs {fit.drift_ppm:+.0f} ppm against the MCU's "
            f"(allowed: +-{MAX_DRIFT * 1e6:.0f}): not one recording of this take?"
        )
    return fit


def align_clicks(y: np.ndarray, sr: int, starts_us: list[int], delay_us: int, where: str) -> ClockFit:
    """The clock line of one take whose click patterns began at ``starts_us`` (MCU time of
    the click output's on-edges; each click sounds ``delay_us`` later). Absolute: an
    aligned time is the MCU's own, with no unknown constant."""

    def find(start: int, guess: ClockFit | None) -> list[float]:
        lo, hi = _window(start, guess)
        return _match(find_clicks(y, sr, lo, hi), "click output", lo, hi, where)

    return _fit_patterns(starts_us, find, delay_us, where)


def align_take(det: Detector, pitch: int, starts_us: list[int], where: str) -> ClockFit:
    """The clock line of one take whose patterns on ``pitch`` began at ``starts_us``
    (MCU time, the first at the take's start): early by the sync key's full-drive
    latency (one unknown constant, see the module's docstring)."""
    return _fit_patterns(starts_us, lambda s, g: find_pattern(det, pitch, s, g, where), 0, where)

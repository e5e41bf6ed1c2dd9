"""The sync click: a sharp broadband transient (a piezo disc by the microphone, on a
spare MCU output, ``spec.sync_click``) timed to a few tens of microseconds.

:func:`find_clicks` high-passes the recording (its first difference: the high band,
where a piano's partials are weak and its 2 ms attacks are slow), takes the power envelope and
returns, for every peak :data:`MIN_RISE_DB` over the floor, the time its amplitude
last rose through :data:`ONSET_FRACTION` of the peak (or :data:`BACKGROUND_X` x what
rang before it, if more), interpolated between samples. A click is a step out of what
rang before it (:data:`STEP_X`) and over within a millisecond (its ring decays in 0.25
ms; the room's first reflections come 4 ms later), while a piano's high partials go on
ringing: a peak whose high band has not fallen :data:`DECAY_DB`, or back to what rang
before it, :data:`DECAY_FROM_S`..:data:`DECAY_TO_S` after it is no click (in a quiet
room the treble's upper partials stand well over the noise).
"""

from __future__ import annotations

import numpy as np

MIN_RISE_DB = 20.0  # a click's peak power over the high band's median
ONSET_FRACTION = 0.2  # the onset: where the amplitude first reaches this x the peak
BACKGROUND_X = 1.5  # ... and at least this x the loudest of the high band 1..4 ms before
LOOKBACK_S = 0.001  # a click reaches its peak within this
MIN_GAP_S = 0.02  # clicks closer than this are one
STEP_X = 2.5  # a click's peak stands this x over the loudest of the high band 1..4 ms before
DECAY_DB = 20.0  # a click's high band falls this far ...
DECAY_FROM_S, DECAY_TO_S = 0.0015, 0.0035  # ... this long after its peak (a partial does not)


def find_clicks(y: np.ndarray, sr: int, lo_s: float = 0.0, hi_s: float | None = None) -> list[float]:
    """Onset times (s, the recording's clock) of the clicks between ``lo_s`` and ``hi_s``."""
    n = len(y)
    i0 = max(0, int(lo_s * sr))
    i1 = n if hi_s is None else min(n, int(hi_s * sr) + 1)
    if i1 - i0 < int(0.01 * sr):
        return []
    seg = np.asarray(y[i0:i1], dtype=np.float64)
    # a short causal high-pass (the first difference: +6 dB/octave, 2 samples long; a
    # sharp FFT filter would smear the click's start backwards)
    hp = np.r_[0.0, np.diff(seg)]
    amp = np.abs(hp)
    w = max(1, int(0.00015 * sr))  # the envelope: max over the last 0.15 ms (bridges a ring's half-periods)
    env = np.lib.stride_tricks.sliding_window_view(np.r_[np.zeros(w - 1), amp], w).max(axis=1)
    floor = float(np.median(env * env)) or 1e-20
    hot = np.flatnonzero(env * env > floor * 10.0 ** (MIN_RISE_DB / 10.0))
    out: list[float] = []
    gap, back = int(MIN_GAP_S * sr), int(LOOKBACK_S * sr)
    k = 0
    while k < len(hot):
        start = int(hot[k])
        peak_i = start + int(np.argmax(amp[start : start + back]))
        peak = float(amp[peak_i])
        # what rang before (another sound's high band) sets a floor under the threshold
        before = amp[max(0, start - 4 * back) : max(0, start - back)]
        after = env[peak_i + int(DECAY_FROM_S * sr) : peak_i + int(DECAY_TO_S * sr)]
        if len(before) and peak < STEP_X * float(before.max()):
            k = int(np.searchsorted(hot, start + back))  # no step out of what rang before
            continue
        settled = max(peak * 10.0 ** (-DECAY_DB / 20.0), BACKGROUND_X * float(before.max()) if len(before) else 0.0)
        if len(after) and float(after.max()) > settled:
            k = int(np.searchsorted(hot, peak_i + int(DECAY_TO_S * sr)))  # a ringing sound: no click
            continue
        level = max(ONSET_FRACTION * peak, BACKGROUND_X * float(before.max()) if len(before) else 0.0)
        # the onset: the last time before the peak the envelope was under the threshold
        below = np.flatnonzero(env[max(0, peak_i - back) : peak_i + 1] < level)
        j = max(0, peak_i - back) + (int(below[-1]) + 1 if len(below) else 0)
        a0 = float(amp[j - 1]) if j > 0 else 0.0
        a1 = float(amp[j])
        frac = 1.0 if a1 <= a0 else (level - a0) / (a1 - a0)
        out.append((i0 + j - 1 + min(1.0, max(0.0, frac))) / sr)
        k = int(np.searchsorted(hot, start + gap))
    return out


__all__ = ["find_clicks"]

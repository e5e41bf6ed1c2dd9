"""A take's level: the one number between what the detector hears and what was meant.

The detector turns a strike's power into MIDI velocity at its reference microphone
(:data:`~robo_player.hearing.detector.REFERENCE_GAIN_DB`, the level law of
:mod:`robo_player.voicing`). A real microphone's gain is unknown (the microphone, its
distance, the preamp): every heard velocity is then off by the same factor of power.
:func:`take_level_db` fits that factor as one number over pairs of heard and
expected power (dB, the mean of the middle half), and :func:`remove_level` takes it
out of a heard velocity. ``robo-player verify`` pairs the heard notes with the plan's
velocities (:func:`robo_player.hearing.cli.level_to_plan`); the calibration through audio pairs
every key's full-drive strike with the spec's nominal velocity at full drive (the one
loudness the calibrator knows before it has measured anything: docs/hearing.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..voicing import VELOCITY_MAX, f0_hz, power_for_velocity, velocity_for_power
from .detector import band_hi_hz


def band_top_hz(pitch: int, sample_rate: int) -> float:
    """The top of the band whose partials the detector's loudness sums (its ``f_hi``,
    as it hands it to the level law)."""
    return band_hi_hz(f0_hz(pitch), sample_rate) + 1.0


def level_db(pitch: int, heard: float, expected: float, sample_rate: int) -> float | None:
    """Heard power over expected power of one note (dB), or None where either cannot
    say it (not finite, silent, or at the top of the detector's scale)."""
    if not (math.isfinite(heard) and math.isfinite(expected)) or expected <= 0.0:
        return None
    if not 0.0 < heard < VELOCITY_MAX - 1.0:
        return None
    f = band_top_hz(pitch, sample_rate)
    return 10.0 * math.log10(power_for_velocity(pitch, heard, f) / power_for_velocity(pitch, expected, f))


def take_level_db(pairs: Iterable[tuple[int, float, float]], sample_rate: int) -> tuple[float, int]:
    """The take's level (dB) from ``(pitch, heard velocity, expected velocity)`` pairs:
    the interquartile mean of their :func:`level_db` (the mean of the middle half; the
    median under 4 pairs); (0.0, 0) when no pair can say it.

    Not the median: the pairs differ by the keys' own loudness and the detector's noise,
    both spread without gross outliers, and the mean of the middle half is the steadier
    of the two and still ignores a quarter of strays each side (a calibration's first
    round, 12 keys, truth seeds 1-6: level error rms 0.63 dB by the median, 0.49 by
    this; docs/hearing.md)."""
    d = sorted(x for p, h, e in pairs if (x := level_db(p, h, e, sample_rate)) is not None)
    if not d:
        return 0.0, 0
    if len(d) < 4:
        return float(np.median(d)), len(d)
    q = len(d) // 4
    return float(np.mean(d[q : len(d) - q])), len(d)


def remove_level(pitch: int, velocity: float, level: float, sample_rate: int) -> float:
    """``velocity`` as heard by a microphone ``level`` dB quieter (the take's level out)."""
    if level == 0.0 or not math.isfinite(velocity) or velocity <= 0.0:
        return velocity
    f = band_top_hz(pitch, sample_rate)
    return velocity_for_power(pitch, power_for_velocity(pitch, velocity, f) * 10.0 ** (-level / 10.0), f)


__all__ = ["band_top_hz", "level_db", "remove_level", "take_level_db"]

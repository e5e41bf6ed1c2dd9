"""Step times of a carriage move: the trapezoidal profile of docs/guitar.md.

A positioner's position is in counts of its travel (``0..pwm_max`` over ``travel_mm``);
one count is one step. A move from rest to rest accelerates at ``accel`` up to
``max_speed``, cruises, and decelerates symmetrically (a triangle when the distance is
too short to reach the top speed): the time of step ``i`` (1..n) is when the distance
covered reaches ``i`` steps.

This is what the simulated MCU of ``sim://`` does; the firmware's generator and its
Python model (``robo_player/motion.py``) replace it once they exist.
"""

from __future__ import annotations

import math

import numpy as np


def move_steps(start: int, target: int, t0_us: int, max_speed_steps_s: float,
               accel_steps_s2: float) -> np.ndarray:  # fmt: skip
    """(n,) int64: the time (µs) of every step from ``start`` to ``target``, from ``t0_us``."""
    n = abs(int(target) - int(start))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    v, a = float(max_speed_steps_s), float(accel_steps_s2)
    s = np.arange(1, n + 1, dtype=np.float64)
    if n >= v * v / a:  # trapezoid: accelerate over v²/2a steps, cruise, decelerate
        s_a = v * v / (2.0 * a)
        t_a = v / a
        t_total = n / v + v / a
        t = np.where(
            s <= s_a,
            np.sqrt(2.0 * s / a),
            np.where(s <= n - s_a, t_a + (s - s_a) / v,
                     t_total - np.sqrt(np.maximum(2.0 * (n - s) / a, 0.0))),
        )  # fmt: skip
    else:  # triangle: accelerate to the middle, decelerate
        t_total = 2.0 * math.sqrt(n / a)
        t = np.where(s <= n / 2.0, np.sqrt(2.0 * s / a),
                     t_total - np.sqrt(np.maximum(2.0 * (n - s) / a, 0.0)))  # fmt: skip
    return t0_us + np.rint(t * 1e6).astype(np.int64)


def move_duration_us(start: int, target: int, max_speed_steps_s: float, accel_steps_s2: float) -> int:
    """Time (µs) from the start of a move to its last step."""
    st = move_steps(start, target, 0, max_speed_steps_s, accel_steps_s2)
    return int(st[-1]) if len(st) else 0


__all__ = ["move_duration_us", "move_steps"]

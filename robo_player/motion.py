"""The step profile of a positioner: when each step of a move happens.

A move of ``n = |target - start|`` steps follows a trapezoidal speed profile: it
accelerates at ``a`` (steps/s²) up to the top speed ``v`` (steps/s), cruises, and
decelerates at ``a`` to stop on the target; a move too short to reach ``v`` is a
triangle (peak speed ``sqrt(a n)``). Step ``k`` (1..n) happens when the continuous
position reaches ``k``; the last step ends the move. In microseconds after the start::

    accelerating (2 a k <= v²):        t(k) = isqrt(k C)               C = floor(2e12 / a)
    cruising:                          t(k) = floor(1e6 (v² + 2 a k) / (2 a v))
    decelerating (2 a (n - k) < v²):   t(k) = T - isqrt((n - k) C)
    T = floor(1e6 (a n + v²) / (a v))  (trapezoid, a n >= v²)
    T = isqrt(2 n C)                   (triangle: accelerate to k <= n/2, then decelerate)

All integer arithmetic, so the firmware's step generator (firmware/boards/*/out_step.c)
computes the same times; a test holds the two within 1 µs per step. The continuous
duration is ``n/v + v/a`` (trapezoid) or ``2 sqrt(n/a)`` (triangle), the formula in
docs/guitar.md; :func:`move_duration_us` is the integer one above (within 1 µs of it).

    from robo_player.motion import move_steps, move_duration_us
    t = move_steps(0, 400, 1_000, 27_920, 465_000)   # int64 step times, µs
    move_duration_us(0, 400, 27_920, 465_000)        # == t[-1] - 1_000
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt

import numpy as np

__all__ = [
    "MAX_ACCEL",
    "MAX_SPEED",
    "MAX_STEPS",
    "Profile",
    "move_duration_us",
    "move_steps",
    "position_at",
    "profile",
]

MAX_STEPS = 65535  # a move spans at most the 16-bit position range
MAX_SPEED = 65535  # steps/s (the firmware keeps speeds in 16 bits)
MAX_ACCEL = (1 << 24) - 1  # steps/s² (24 bits: 1e6 (v² + 2 a k) stays within 64 bits)

_US = 1_000_000


@dataclass(frozen=True, slots=True)
class Profile:
    """The integer constants of one move (what the firmware computes at its start)."""

    steps: int  # n
    speed: int  # v, steps/s
    accel: int  # a, steps/s²
    c: int  # floor(2e12 / a): isqrt(k c) is the accelerating step time, µs
    trapezoid: bool  # reaches v (a n >= v²)
    total_us: int  # T: the last step's time after the start

    def accelerating(self, k: int) -> bool:
        if self.trapezoid:
            return 2 * self.accel * k <= self.speed * self.speed
        return 2 * k <= self.steps

    def decelerating(self, k: int) -> bool:
        r = self.steps - k
        if self.trapezoid:
            return 2 * self.accel * r < self.speed * self.speed
        return 2 * k > self.steps


def _check(name: str, value: float, low: int, high: int) -> int:
    v = int(round(value))
    if not low <= v <= high:
        raise ValueError(f"motion: {name}: {value} is out of range (allowed {low}..{high})")
    return v


def profile(steps: int, max_speed_steps_s: float, accel_steps_s2: float) -> Profile:
    """The move's constants; speed and acceleration are rounded to whole steps/s(²)."""
    n = _check("steps", steps, 0, MAX_STEPS)
    v = _check("max_speed_steps_s", max_speed_steps_s, 1, MAX_SPEED)
    a = _check("accel_steps_s2", accel_steps_s2, 1, MAX_ACCEL)
    c = 2 * _US * _US // a
    if a * n >= v * v:
        return Profile(n, v, a, c, True, _US * (a * n + v * v) // (a * v))
    return Profile(n, v, a, c, False, isqrt(2 * n * c))


def _isqrt_array(x: np.ndarray) -> np.ndarray:
    """floor(sqrt(x)) of int64 values below 2**62, exact (float guess, then fixed)."""
    s = np.floor(np.sqrt(x.astype(np.float64))).astype(np.int64)
    for _ in range(2):
        s = np.where(s * s > x, s - 1, s)
        s = np.where((s + 1) * (s + 1) <= x, s + 1, s)
    return s


def _relative_times(p: Profile) -> np.ndarray:
    """Step times after the start, µs, int64 (shape (n,))."""
    n = p.steps
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = np.arange(1, n + 1, dtype=np.int64)
    r = n - k
    v, a = p.speed, p.accel
    if p.trapezoid:
        acc = 2 * a * k <= v * v
        dec = 2 * a * r < v * v
    else:
        acc = 2 * k <= n
        dec = ~acc
    out = np.empty(n, dtype=np.int64)
    out[acc] = _isqrt_array(k[acc] * p.c)
    out[dec] = p.total_us - _isqrt_array(r[dec] * p.c)
    cruise = ~(acc | dec)
    if cruise.any():
        # 1e6 (v² + 2 a k) can pass 2**63: split it as q (2 a v) + rem exactly
        kc = k[cruise]
        den = 2 * a * v
        num0 = _US * v * v  # the constant part, a Python int
        q0, r0 = divmod(num0, den)
        step_q, step_r = divmod(2 * a * _US, den)  # per step: 1e6 / v as quotient, rest
        rem = r0 + kc * step_r  # < den + n den: fits in int64 (den < 2**41)
        out[cruise] = q0 + kc * step_q + rem // den
    return out


def move_steps(
    start: int, target: int, t0_us: int, max_speed_steps_s: float, accel_steps_s2: float
) -> np.ndarray:
    """The time of every step of the move from ``start`` to ``target`` (int64 µs, ascending).

    ``len(result) == abs(target - start)``; the move starts at ``t0_us``; the last entry
    is ``t0_us + move_duration_us(...)``.
    """
    p = profile(abs(int(target) - int(start)), max_speed_steps_s, accel_steps_s2)
    return _relative_times(p) + np.int64(t0_us)


def move_duration_us(
    start: int, target: int, max_speed_steps_s: float, accel_steps_s2: float
) -> int:
    """From the move's start to its last step, µs (0 for no move)."""
    return profile(abs(int(target) - int(start)), max_speed_steps_s, accel_steps_s2).total_us


def position_at(
    start: int, target: int, t0_us: int, max_speed_steps_s: float, accel_steps_s2: float,
    t_us: np.ndarray | int,
) -> np.ndarray:  # fmt: skip
    """The position (steps) at each time ``t_us``: start plus the steps done by then."""
    times = move_steps(start, target, t0_us, max_speed_steps_s, accel_steps_s2)
    done = np.searchsorted(times, np.asarray(t_us, dtype=np.int64), side="right")
    sign = 1 if target >= start else -1
    return np.int64(start) + sign * done.astype(np.int64)

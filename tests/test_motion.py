"""The positioner step profile (robo_player/motion.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player.motion import move_duration_us, move_steps, position_at, profile


def _continuous_us(k: int, n: int, v: float, a: float) -> float:
    """Time the continuous trapezoid reaches position k (float reference)."""
    if a * n >= v * v:
        d = v * v / (2 * a)
        total = n / v + v / a
        if k <= d:
            return math.sqrt(2 * k / a) * 1e6
        if n - k < d:
            return (total - math.sqrt(2 * (n - k) / a)) * 1e6
        return (v / a + (k - d) / v) * 1e6
    total = 2 * math.sqrt(n / a)
    if 2 * k <= n:
        return math.sqrt(2 * k / a) * 1e6
    return (total - math.sqrt(2 * (n - k) / a)) * 1e6


moves = st.tuples(
    st.integers(0, 4095), st.integers(0, 4095), st.integers(50, 60000), st.integers(100, 2_000_000)
)


@settings(max_examples=200, deadline=None)
@given(moves)
def test_steps_follow_the_continuous_trapezoid(m: tuple[int, int, int, int]) -> None:
    start, target, v, a = m
    t = move_steps(start, target, 500, v, a)
    n = abs(target - start)
    assert t.dtype == np.int64 and len(t) == n
    if n == 0:
        assert move_duration_us(start, target, v, a) == 0
        return
    assert np.all(np.diff(t) > 0)
    assert t[-1] - 500 == move_duration_us(start, target, v, a)
    ref = np.array([_continuous_us(k, n, v, a) for k in range(1, n + 1)]) + 500
    # integer floors and C = floor(2e12/a): within 1.5 us of the real-valued profile
    assert np.max(np.abs(t - ref)) <= 1.5


def test_duration_is_the_docs_formula() -> None:
    v, a = 27_920, 465_000
    for n in (1, 2, 50, 838, 1677, 1678, 4095):
        cont = (n / v + v / a) if a * n >= v * v else 2 * math.sqrt(n / a)
        assert abs(move_duration_us(0, n, v, a) - cont * 1e6) <= 1.0
    assert profile(1678, v, a).trapezoid and not profile(1676, v, a).trapezoid


def test_profile_is_symmetric_and_direction_free() -> None:
    up = move_steps(100, 3100, 0, 20_000, 300_000)
    down = move_steps(3100, 100, 0, 20_000, 300_000)
    assert np.array_equal(up, down)
    gaps = np.diff(np.concatenate([[0], up]))
    # accelerate then decelerate: intervals mirror within the 1 us floors
    assert np.max(np.abs(gaps - gaps[::-1])) <= 2
    assert gaps[len(gaps) // 2] == pytest.approx(1e6 / 20_000, abs=1)  # cruising at v


def test_position_at_counts_steps() -> None:
    t = move_steps(50, 10, 1000, 5000, 100_000)
    assert position_at(50, 10, 1000, 5000, 100_000, 999) == 50
    assert position_at(50, 10, 1000, 5000, 100_000, int(t[0])) == 49
    assert position_at(50, 10, 1000, 5000, 100_000, int(t[-1])) == 10
    assert list(position_at(50, 10, 1000, 5000, 100_000, np.array([t[4] - 1, t[4]]))) == [46, 45]


@pytest.mark.parametrize(
    "args,where",
    [((0, 70000, 1000, 1000), "steps"), ((0, 10, 0, 1000), "max_speed_steps_s"),
     ((0, 10, 1000, 0), "accel_steps_s2"), ((0, 10, 70000, 1000), "max_speed_steps_s")],
)
def test_bad_values_name_the_field_and_range(args: tuple[int, int, int, int], where: str) -> None:
    with pytest.raises(ValueError, match=rf"motion: {where}: .* out of range \(allowed"):
        move_duration_us(*args)

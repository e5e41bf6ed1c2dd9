"""The piano calibrator on the instrument with its strikes' own spread (sim://?spread=1).

Each strike scatters (timing s.d. 0.1-0.2 ms + 1-2 % of its latency, loudness 1-2 %:
docs/simulator.md, "Spread"); about ten strikes per key must give curves that average
through that scatter, not interpolate it (docs/calibration.md, "Spread"). Every key of
piano-88-grand, truth seed 1 (the bench's figures: ``bench/bench_calibration.py --seeds
1``): before the fits allowed for the spread 19 keys fell back to the isotonic table and
5 keys' return was measured more than 1 ms short.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from robo_player.calibrator import calibrate_session
from robo_player.driver import open_port
from robo_player.spec import load_spec


@pytest.fixture(scope="module")
def spread_session() -> Any:
    spec = load_spec("piano-88-grand")
    dev = open_port("sim://?sensor=notes&spread=1", spec, truth_seed=1, sensor_seed=1)
    try:
        cal, rep = calibrate_session(dev, spec, seed=1)
        yield spec, dev._truth, cal, rep
    finally:
        dev.close()


def _latency(kt: Any, d: float) -> float:
    u = (d - kt.threshold) / (1.0 - kt.threshold)
    return kt.latency_full_us * u ** (-kt.alpha) if u > 0 else math.inf


def test_curves_average_through_the_spread(spread_session: Any) -> None:
    """No isotonic fallback, and each key's latency table within 1 ms + 4 % of the truth
    (two s.d. of one strike's spread at its top) where the planner reads it (velocities
    25..115, drives rounded to PWM counts). Measured (session 13, two more strikes at the
    soft end): worst 4.6 ms at 139 ms (key 35, 1 ms + 2.6 %); session 12: 9.0 ms at 305 ms
    (key 50, 2.9 %); before, 19 of 88 keys fell back and key 56 was 36.9 ms off."""
    spec, truth, cal, rep = spread_session
    assert not rep.isotonic_keys, rep.isotonic_keys
    for p in cal.keys:
        c, kt, pm = cal.keys[p], truth.key(p), spec.key(p).pwm_max
        for vt in np.linspace(max(25.0, c.min_velocity), min(115.0, c.max_velocity), 60):
            d = round(c.drive_for_velocity(vt) * pm) / pm
            true = _latency(kt, d)
            if not math.isfinite(true):
                continue
            err = abs(c.latency_at(d) - true)
            assert err <= 1000.0 + 0.04 * true, (p, round(vt), round(true), round(err))


def test_key_return_has_a_margin_for_the_spread(spread_session: Any) -> None:
    """``return_us`` never more than 1 ms short of the truth (a re-strike would find the
    key not up), and not more than 10 ms long. Measured: −0.43 .. +7.30 ms, mean +3.25
    (session 15: the probe read by GLS, a third probe where two are loose, 2.5 s.d.;
    tests/test_key_return.py); −0.44 .. +7.81 ms, mean +3.81 (session 13: a
    late strike is a softer one; key 22 was +18.4 ms, two probes giving bounds only, before
    its third probe); session 12: +0.05 .. +9.05 ms; before, 5
    keys were 1.1 to 2.1 ms short (keys 39, 47, 91, 96, 98)."""
    _, truth, cal, _ = spread_session
    for p in cal.keys:
        got, r_true = cal.keys[p].return_us, truth.key(p).return_us
        assert got is not None, p
        assert r_true - 1000.0 <= got <= r_true + 10_000.0, (p, got, r_true)

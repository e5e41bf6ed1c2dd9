"""Calibration on the simulated piano: curves against the hidden truth, cost, file I/O.

The calibrator sees only ``play``; these tests may read the truth (``dev._truth``) to
check what it learned.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player.calibrator import (
    CalibrationReport,
    StrikeResult,
    calibrate,
    calibrate_session,
    curve_from_fit,
    fit_key,
    fit_latency,
    isotonic,
)
from robo_player.driver import Performance, open_port
from robo_player.errors import CalibrationError
from robo_player.plan import Op, Plan
from robo_player.spec import load_spec
from robo_player.spec.calibration import Calibration

PITCHES = [21, 45, 60, 83, 108]


def true_latency_us(kt: object, d: float) -> float:
    u = (d - kt.threshold) / (1.0 - kt.threshold)  # type: ignore[attr-defined]
    if u <= 0:
        return math.inf
    return float(kt.latency_full_us * u ** (-kt.alpha))  # type: ignore[attr-defined]


def true_velocity(kt: object, d: float) -> float:
    u = max(0.0, (d - kt.threshold) / (1.0 - kt.threshold))  # type: ignore[attr-defined]
    k, v0, g = kt.k, kt.v0, kt.gain  # type: ignore[attr-defined]
    return float(g * (v0 + (1 - v0) * (1 - math.exp(-k * u)) / (1 - math.exp(-k))))


class Recorder:
    """A device that exposes only ``play`` and keeps every plan and performance."""

    def __init__(self, inner: object) -> None:
        self._play = inner.play  # type: ignore[attr-defined]
        self.url = "recorder://"
        self.plans: list[Plan] = []
        self.perfs: list[Performance] = []

    def play(self, plan: Plan, progress: object = None) -> Performance:
        self.plans.append(plan)
        perf = self._play(plan)
        self.perfs.append(perf)
        return perf

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def spec():  # noqa: ANN201
    return load_spec("piano-88-grand")


@pytest.fixture(scope="module", params=[0, 7])
def session(request, spec):  # noqa: ANN001, ANN201
    dev = open_port("sim://", spec, truth_seed=request.param, sensor_seed=request.param)
    rec = Recorder(dev)
    fractions: list[float] = []
    cal, rep = calibrate_session(
        rec, spec, pitches=PITCHES, seed=request.param, progress=fractions.append
    )
    return dev._truth, rec, cal, rep, fractions


def test_threshold_within_one_percent_of_truth(session) -> None:  # noqa: ANN001
    truth, _, cal, _, _ = session
    for p in PITCHES:
        kt = truth.key(p)
        assert abs(cal.keys[p].threshold - kt.threshold) <= 0.01 * kt.threshold, p


def test_latency_curve_within_1ms_over_usable_range(session, spec) -> None:  # noqa: ANN001
    truth, _, cal, _, _ = session
    for p in PITCHES:
        c, kt = cal.keys[p], truth.key(p)
        assert c.latency_us[0] <= spec.timing.pipeline_delay_us + 1
        for d in np.linspace(c.drive[0], 1.0, 200):
            assert abs(c.latency_at(d) - true_latency_us(kt, d)) < 1000.0, (p, d)


def test_loudness_curve_within_2_units(session) -> None:  # noqa: ANN001
    truth, _, cal, _, _ = session
    for p in PITCHES:
        c, kt = cal.keys[p], truth.key(p)
        for d in np.linspace(c.drive[0], 1.0, 200):
            assert abs(c.velocity_at(d) - true_velocity(kt, d)) < 2.0, (p, d)


def test_curves_are_monotone_tables(session) -> None:  # noqa: ANN001
    _, _, cal, _, _ = session
    for p in PITCHES:
        c = cal.keys[p]
        assert len(c.drive) >= 32 and c.drive[-1] == 1.0
        assert all(b > a for a, b in zip(c.drive, c.drive[1:], strict=False))
        assert all(b >= a for a, b in zip(c.velocity, c.velocity[1:], strict=False))
        assert all(b <= a for a, b in zip(c.latency_us, c.latency_us[1:], strict=False))
        assert c.threshold < c.drive[0]


def test_cost_strikes_per_key_and_plays(session, spec) -> None:  # noqa: ANN001
    _, rec, cal, rep, _ = session
    assert isinstance(rep, CalibrationReport)
    for p in PITCHES:
        assert 1 <= cal.keys[p].strikes <= 12
    assert rep.strikes == sum(cal.keys[p].strikes for p in PITCHES)
    assert rep.play_calls == len(rec.plans) <= 4
    assert rep.sim_time_us > 0
    # keys not asked for keep nominal curves
    other = next(k.pitch for k in spec.keys if k.pitch not in PITCHES)
    assert cal.keys[other].strikes == 0


def test_plans_stay_within_power_and_thermal_limits(session, spec) -> None:  # noqa: ANN001
    _, rec, _, rep, _ = session
    for plan, perf in zip(rec.plans, rec.perfs, strict=True):
        strikes = [c for c in plan if c.op is Op.STRIKE]
        ends = sorted((c.t_us, c.t_us + c.pulse_us) for c in strikes)
        for t0, _ in ends:
            overlapping = sum(1 for s, e in ends if s <= t0 < e)
            assert overlapping <= spec.power.max_simultaneous_strikes
        assert all(c.pulse_us == spec.strike.default_pulse_us for c in strikes)
        assert not perf.coil_failures
        assert perf.extra.get("min_supply_scale", 1.0) == 1.0  # no strike was sagged
    assert rep.max_coil_temp_ratio < 0.5


def test_progress_reported_up_to_one(session) -> None:  # noqa: ANN001
    *_, fractions = session
    assert fractions and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert all(0.0 <= f <= 1.0 for f in fractions)


def test_pedal_latency_measured(session) -> None:  # noqa: ANN001
    truth, _, cal, rep, _ = session
    assert rep.pedal_measured
    assert cal.pedal_latency_us is not None
    assert abs(cal.pedal_latency_us - truth.pedal_latency_us) < 1000


def test_max_strikes_per_key_is_respected(spec) -> None:  # noqa: ANN001
    dev = open_port("sim://", spec, truth_seed=3)
    cal, rep = calibrate_session(dev, spec, pitches=[30, 70], max_strikes_per_key=4)
    assert all(cal.keys[p].strikes <= 4 for p in (30, 70))
    with pytest.raises(CalibrationError, match="max_strikes_per_key"):
        calibrate_session(dev, spec, pitches=[30], max_strikes_per_key=2)


def test_unknown_pitch_rejected(spec) -> None:  # noqa: ANN001
    dev = open_port("sim://", spec, truth_seed=0)
    with pytest.raises(CalibrationError, match=r"pitch 7 is not a key.*21\.\.108"):
        calibrate_session(dev, spec, pitches=[7])


class Deaf:
    """Hears nothing of one pitch (a broken key or coil)."""

    def __init__(self, inner: object, pitch: int) -> None:
        self._inner, self._pitch, self.url = inner, pitch, "deaf://"

    def play(self, plan: Plan, progress: object = None) -> Performance:
        perf = self._inner.play(plan)  # type: ignore[attr-defined]
        perf.heard = [h for h in perf.heard if h.pitch != self._pitch]
        return perf


def test_dead_key_is_reported(spec) -> None:  # noqa: ANN001
    dev = Deaf(open_port("sim://", spec, truth_seed=0), 60)
    with pytest.raises(CalibrationError, match="key 60: heard 0 of"):
        calibrate_session(dev, spec, pitches=[59, 60])


def test_calibration_file_round_trip_and_spec_check(spec, tmp_path: Path) -> None:  # noqa: ANN001
    dev = open_port("sim://", spec, truth_seed=1)
    cal, _ = calibrate_session(dev, spec, pitches=[40, 41])
    path = tmp_path / "cal.yaml"
    cal.save(path)
    back = Calibration.load(path)
    back.check_for(spec, path)
    assert back.spec_hash == spec.spec_hash and back.pedal_latency_us == cal.pedal_latency_us
    for p in (40, 41):
        a, b = cal.keys[p], back.keys[p]
        assert b.strikes == a.strikes
        assert b.drive == pytest.approx(a.drive, abs=1e-6)
        assert b.velocity == pytest.approx(a.velocity, abs=1e-4)
        assert b.latency_us == pytest.approx(a.latency_us, abs=0.1)
        assert abs(b.threshold - a.threshold) <= 1e-6
    other = load_spec("piano-61-diy")
    with pytest.raises(CalibrationError, match="piano-61-diy"):
        back.check_for(other, path)


def test_calibrate_all_keys_of_61_key_spec() -> None:
    """The whole calibrate() on a second spec (8-bit PWM, 4 strikes at once, no pedal)."""
    spec = load_spec("piano-61-diy")
    dev = open_port("sim://", spec, truth_seed=2)
    rec = Recorder(dev)
    cal = calibrate(rec, spec, max_strikes_per_key=12)
    cal.check_for(spec)
    assert cal.measured and cal.pedal_latency_us is None
    assert all(1 <= c.strikes <= 12 for c in cal.keys.values())
    assert len(rec.plans) <= 4
    truth = dev._truth
    worst = max(
        abs(c.latency_at(d) - true_latency_us(truth.key(p), d))
        for p, c in cal.keys.items()
        for d in np.linspace(c.drive[0], 1.0, 25)
    )
    assert worst < 1500.0  # 8-bit PWM: the test strikes land on a coarse drive grid


# --- the fitting, without a device ------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    theta=st.floats(0.1, 0.35),
    lf=st.floats(12_000, 30_000),
    alpha=st.floats(0.5, 0.9),
)
def test_fit_latency_recovers_noiseless_family(theta: float, lf: float, alpha: float) -> None:
    us = np.array([1.0, 0.5, 0.2, 0.1, 0.05, 0.03])
    d = theta + us * (1 - theta)
    lat = lf * us ** (-alpha)
    th, a, al, rms = fit_latency(d, lat)
    assert abs(th - theta) < 1e-3
    assert abs(al - alpha) < 0.02
    assert rms < 20.0
    pred = a * (d - th) ** (-al)
    assert np.allclose(pred, lat, rtol=1e-3)


@given(st.lists(st.floats(-100, 100), min_size=1, max_size=30))
def test_isotonic_is_monotone_and_idempotent(ys: list[float]) -> None:
    up = isotonic(ys, increasing=True)
    down = isotonic(ys, increasing=False)
    assert np.all(np.diff(up) >= -1e-9) and np.all(np.diff(down) <= 1e-9)
    assert np.allclose(isotonic(up), up)
    assert abs(up.mean() - np.mean(ys)) < 1e-6  # PAVA keeps the mean


def test_fit_outside_family_falls_back_to_monotone_table() -> None:
    # a key whose latency has a kink and whose loudness steps: no power law fits
    drives = [1.0, 0.8, 0.6, 0.5, 0.45, 0.4, 0.35, 0.32]
    lats = [20_000, 21_000, 60_000, 62_000, 64_000, 120_000, 122_000, 250_000]
    vels = [120, 119, 70, 69, 68, 30, 31, 12]
    strikes = [
        StrikeResult(60, d, 0, True, float(L), float(v))
        for d, L, v in zip(drives, lats, vels, strict=True)
    ]
    fit = fit_key(strikes)
    assert fit is not None and fit.isotonic
    curve = curve_from_fit(60, fit, 300_000, len(strikes))
    assert all(b >= a for a, b in zip(curve.velocity, curve.velocity[1:], strict=False))
    assert all(b <= a for a, b in zip(curve.latency_us, curve.latency_us[1:], strict=False))
    assert curve.drive[-1] == 1.0 and curve.threshold < curve.drive[0]

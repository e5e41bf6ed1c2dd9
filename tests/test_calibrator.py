"""Calibration on the simulated piano: curves against the hidden truth, cost, file I/O.

The calibrator sees only ``play``; these tests may read the truth (``dev._truth``) to
check what it learned. They calibrate through the note-level sensor
(``sim://?sensor=notes``, not the default microphone): they test the rounds and the fits,
in seconds; the calibration through audio is tests/test_hearing_calibration.py's.
The accuracy tests calibrate the exact instrument (``spread=0``): their targets are the
fits' on strikes without their own spread. With it (sim://'s default) the calibrator
misses them (docs/simulator.md, "Spread"); tests/test_sim_spread.py holds that as a
strict xfail until the calibrator averages repeated strikes.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player.calibrator import (
    MAX_STRIKES_PER_KEY,
    PROBE_GAP_FRACTION,
    CalibrationReport,
    KeyFit,
    StrikeResult,
    calibrate,
    calibrate_session,
    curve_from_fit,
    fit_key,
    fit_latency,
    isotonic,
    probe_estimate,
    return_estimate,
)
from robo_player.calibrator.key_return import PROBE_AGAIN_SD_US, next_probe
from robo_player.calibrator.strikes import LAT_NOISE_AUDIO_US, LAT_REL_NOISE_AUDIO, VEL_NOISE_AUDIO
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
    dev = open_port("sim://?sensor=notes&spread=0", spec, truth_seed=request.param, sensor_seed=request.param)
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
    for p in PITCHES:  # the cap (issue 11: <= 14, probes included)
        assert 1 <= cal.keys[p].strikes <= MAX_STRIKES_PER_KEY
    assert rep.strikes == sum(cal.keys[p].strikes for p in PITCHES)
    # the sensor check and four rounds (the fourth: the soft end again, session 13)
    assert rep.play_calls == len(rec.plans) <= 5
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


def test_plans_keep_the_supply_margin_by_the_shared_rules(opened, spec) -> None:  # noqa: ANN001
    # a supply so small that it, not the pulse count, limits the schedule: at every moment
    # a level changes, the current of every energised coil (the shared rules' amps on the
    # actuator map) stays within the calibrator's margin of it
    import dataclasses

    from robo_player import rules
    from robo_player.calibrator import SUPPLY_MARGIN

    tight = dataclasses.replace(spec, power=dataclasses.replace(spec.power, supply_a=12.0))
    amap = tight.actuators
    rec = Recorder(opened(open_port("sim://?sensor=notes", tight, truth_seed=3)))
    calibrate_session(rec, tight, pitches=range(60, 68), seed=3)
    limit = rules.supply_limit_a(amap, 1 - SUPPLY_MARGIN) + rules.EPS_A
    peak = 0.0
    for plan in rec.plans:
        steps: list[tuple[int, int, int]] = []  # (t_us, actuator, level)
        for c in plan:
            if c.op is Op.STRIKE:
                steps += [(c.t_us, c.actuator, c.drive), (c.t_us + c.pulse_us, c.actuator, c.hold)]
            elif c.op is Op.RELEASE:
                steps.append((c.t_us, c.actuator, 0))
        steps.sort(key=lambda s: (s[0], s[2]))  # at one time: drops before rises
        levels: dict[int, int] = {}
        for _t, ch, level in steps:
            levels[ch] = level
            peak = max(peak, rules.supply_amps(amap, levels))
    assert 0.8 * limit < peak <= limit, (peak, limit)  # the supply did limit the schedule


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


def test_max_strikes_per_key_is_respected(opened, spec) -> None:  # noqa: ANN001
    dev = opened(open_port("sim://?sensor=notes", spec, truth_seed=3))
    cal, rep = calibrate_session(dev, spec, pitches=[30, 70], max_strikes_per_key=4)
    assert all(cal.keys[p].strikes <= 4 for p in (30, 70))
    with pytest.raises(CalibrationError, match="max_strikes_per_key"):
        calibrate_session(dev, spec, pitches=[30], max_strikes_per_key=2)


def test_unknown_pitch_rejected(opened, spec) -> None:  # noqa: ANN001
    dev = opened(open_port("sim://?sensor=notes", spec, truth_seed=0))
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


def test_dead_key_is_reported(opened, spec) -> None:  # noqa: ANN001
    dev = Deaf(opened(open_port("sim://?sensor=notes", spec, truth_seed=0)), 60)
    with pytest.raises(CalibrationError, match="key 60: heard 0 of"):
        calibrate_session(dev, spec, pitches=[59, 60])


def test_calibration_file_round_trip_and_spec_check(opened, spec, tmp_path: Path) -> None:  # noqa: ANN001
    dev = opened(open_port("sim://?sensor=notes", spec, truth_seed=1))
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
        assert a.return_us is not None and b.return_us == pytest.approx(a.return_us, abs=0.1)
        assert a.return_est_us is not None and b.return_est_us == pytest.approx(a.return_est_us, abs=0.1)
    other = load_spec("piano-61-diy")
    with pytest.raises(CalibrationError, match="piano-61-diy"):
        back.check_for(other, path)


def test_calibrate_all_keys_of_61_key_spec(opened) -> None:
    """The whole calibrate() on a second spec (8-bit PWM, 4 strikes at once, no pedal)."""
    spec = load_spec("piano-61-diy")
    dev = opened(open_port("sim://?sensor=notes&spread=0", spec, truth_seed=2))
    rec = Recorder(dev)
    cal = calibrate(rec, spec, max_strikes_per_key=12)
    cal.check_for(spec)
    assert cal.measured and cal.pedal_latency_us is None
    assert all(1 <= c.strikes <= 12 for c in cal.keys.values())
    assert len(rec.plans) <= 5  # the sensor check and four rounds
    truth = dev._truth
    worst = max(
        abs(c.latency_at(d) - true_latency_us(truth.key(p), d))
        for p, c in cal.keys.items()
        for d in np.linspace(c.drive[0], 1.0, 25)
    )
    assert worst < 1500.0  # 8-bit PWM: the test strikes land on a coarse drive grid
    # key return on every key of the 61-key spec (8-bit PWM, 4 strikes at once)
    err = [c.return_us - truth.key(p).return_us for p, c in cal.keys.items()]  # type: ignore[operator]
    assert min(err) >= -1000.0 and max(err) <= 5000.0, (min(err), max(err))


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


# --- key return ----------------------------------------------------------------------


def test_return_time_measured_within_bounds(session) -> None:  # noqa: ANN001
    truth, _, cal, rep, _ = session
    for p in PITCHES:
        r_true = truth.key(p).return_us
        got = cal.keys[p].return_us
        assert got is not None, p
        # never short of the truth (a planner waiting this long finds the key up) and
        # not much longer (repeats stay fast)
        assert r_true - 1000.0 <= got <= r_true + 5000.0, (p, got, r_true)
        # the estimate without the margin (re-strikes scale their drive by it): close
        # to the truth on either side, and below the margined value
        est = cal.keys[p].return_est_us
        assert est is not None and abs(est - r_true) <= 0.03 * r_true and est < got, (p, est, r_true)
        assert rep.return_us[p] == pytest.approx(got, abs=0.1)
    assert rep.return_probes >= len(PITCHES) and not rep.return_unmeasured


def test_return_probe_strikes_exactly_gap_after_release(session, spec) -> None:  # noqa: ANN001
    """A probe is a full-drive strike a known gap after the same key's release, shorter
    than any plausible return (so it measures), and never counted into the curve fit."""
    _, rec, cal, rep, _ = session
    gap = round(PROBE_GAP_FRACTION * spec.timing.key_return_us / 2000) * 2000
    pwm_max = {k.channel: k.pwm_max for k in spec.keys}
    seen: dict[int, list[int]] = {}  # channel -> gaps of its probes, in order
    for plan in rec.plans:
        last_release: dict[int, int] = {}
        for c in plan:
            if c.op is Op.RELEASE:
                last_release[c.actuator] = c.t_us
            elif c.op is Op.STRIKE and c.actuator in last_release:
                e = c.t_us - last_release[c.actuator]
                if e < 150_000:  # ordinary strikes wait >= 150 ms for the return
                    assert c.drive == pwm_max[c.actuator], c
                    seen.setdefault(c.actuator, []).append(e)
    assert len(seen) == len(PITCHES)
    # a second probe where the first measured loosely, a third where two still do (session 15)
    assert all(gaps[0] == gap and len(gaps) <= 3 for gaps in seen.values()), (gap, seen)
    assert sum(len(g) for g in seen.values()) == rep.return_probes
    assert all(cal.keys[p].strikes <= MAX_STRIKES_PER_KEY for p in PITCHES)


def test_return_time_over_truth_seeds(opened) -> None:
    """Several truth seeds, keys spread over the keyboard: never more than 1 ms short of
    the true return time; at most 5 ms long for nearly all keys."""
    spec = load_spec("piano-88-grand")
    pitches = list(range(21, 109, 8))
    err = []
    for seed in (1, 2, 3, 4):
        dev = opened(open_port("sim://?sensor=notes&spread=0", spec, truth_seed=seed, sensor_seed=10 + seed))
        cal, rep = calibrate_session(dev, spec, pitches=pitches, seed=seed)
        # 11 curve strikes + 1 to 3 probes (session 15: a third where two measured loosely)
        assert rep.strikes <= 13.5 * len(pitches) and all(cal.keys[p].strikes <= 14 for p in pitches)
        err += [cal.keys[p].return_us - dev._truth.key(p).return_us for p in pitches]
    e = np.array(err, dtype=float)
    assert e.min() >= -1000.0, e.min()
    assert np.mean(e <= 5000.0) >= 0.95, np.sort(e)[-5:]
    assert np.median(e) <= 3000.0


def _truth_with_returns(spec, seed: int, returns: dict[int, int], path: Path) -> Path:  # noqa: ANN001
    from robo_player.sim.truth import Truth  # tests may build truths; the calibrator may not

    t = Truth.draw(spec, seed)
    keys = tuple(
        dataclasses.replace(k, return_us=returns[k.pitch]) if k.pitch in returns else k
        for k in t.keys
    )
    dataclasses.replace(t, keys=keys).save(path)
    return path


def test_return_time_outside_the_plausible_range(opened, spec, tmp_path: Path) -> None:  # noqa: ANN001
    """Keys much quicker or slower than the nominal: a second probe at another gap;
    a key too slow for both probes keeps the spec's nominal (None) and is reported."""
    returns = {30: 20_000, 40: 30_000, 60: 47_000, 80: 110_000, 100: 250_000}
    path = _truth_with_returns(spec, 5, returns, tmp_path / "truth.yaml")
    dev = opened(open_port(f"sim://?sensor=notes&spread=0&truth={path}", spec))
    cal, rep = calibrate_session(dev, spec, pitches=list(returns))
    for p, r in returns.items():
        c = cal.keys[p]
        assert c.strikes <= MAX_STRIKES_PER_KEY, p  # 11 for the curves, up to 3 probes
        if r > 4 * 48_000:  # silent at both gaps (48 ms, then 86 ms)
            assert c.return_us is None and p in rep.return_unmeasured
            continue
        assert c.return_us is not None and c.return_us >= r - 1000.0, (p, c.return_us)
    # quick keys: the bound from a probe at full strength is used, or the second probe
    # measures them; either way within a few ms of the 24 ms gap or better
    assert cal.keys[40].return_us <= 33_000 and cal.keys[30].return_us <= 27_000  # type: ignore[operator]
    # (a slow key's margin is wider: 2 s.d. of an estimate that counts the fitted curves'
    # own error, session 15: 5.26 ms over R = 110 ms, on the exact instrument)
    assert cal.keys[80].return_us <= 1.05 * 110_000  # type: ignore[operator]


def _fit(theta: float, lat_a: float, alpha: float) -> KeyFit:
    return KeyFit(theta, lat_a, alpha, vel_a=8.0, vel_b=120.0, vel_k=3.0)


@settings(max_examples=60, deadline=None)
@given(
    r_us=st.floats(10_000, 200_000),
    theta=st.floats(0.1, 0.35),
    lat_a=st.floats(8_000, 20_000),
    alpha=st.floats(0.55, 0.85),
)
def test_probe_estimate_inverts_the_return_model(
    r_us: float, theta: float, lat_a: float, alpha: float
) -> None:
    """Noiseless probe at gap g: measured R when g/R is in the informative band, an upper
    bound >= R at full strength, a lower bound <= R when silent."""
    fit = _fit(theta, lat_a, alpha)
    g = 48_000
    ratio = min(1.0, g / r_us)
    d_eff = ratio * 1.0
    probe = StrikeResult(60, 1.0, 0, probe_gap_us=g)
    lat = float(fit.latency_us(d_eff)) if d_eff > theta else math.inf
    if ratio >= 0.5 and lat <= 400_000:
        probe.heard, probe.latency_us, probe.velocity = True, lat, float(fit.velocity(d_eff))
    est = probe_estimate(fit, probe)
    if not probe.heard:
        assert est.kind == "lower" and est.value_us <= r_us + 1.0
        assert est.return_us is None
    elif est.kind == "upper":
        assert est.value_us >= min(r_us, g) - 1.0 and ratio >= 0.94
        assert est.return_us is not None and est.return_us > est.value_us
    else:
        assert est.kind == "measured"
        assert abs(est.value_us - r_us) <= 0.002 * r_us + 20.0
        assert est.return_us is not None and est.return_us >= est.value_us


def test_a_third_probe_only_between_an_upper_bound_and_a_silent_probe() -> None:
    """Two probes that only bracket R (one at full strength, one silent at half its gap)
    get a third, at 0.9 x the lower bound; two silent ones do not, nor two that measured R
    closely (session 15: two that measured it loosely do, below)."""
    fit = _fit(0.2, 15_000, 0.7)
    full = StrikeResult(60, 1.0, 0, True, float(fit.latency_us(1.0)), float(fit.velocity(1.0)), 48_000)
    silent = StrikeResult(60, 1.0, 0, probe_gap_us=24_000)
    assert probe_estimate(fit, full).kind == "upper" and probe_estimate(fit, silent).kind == "lower"
    third = next_probe(fit, [full, silent], 48_000)
    assert third is not None and third.gap_us == 44_000  # 0.9 x 48 ms (24 ms / 0.5) = 43.2, on the 2 ms grid
    assert next_probe(fit, [full, silent, StrikeResult(60, 1.0, 0, probe_gap_us=44_000)], 48_000) is None
    low = StrikeResult(60, 1.0, 0, probe_gap_us=48_000)
    assert next_probe(fit, [low, StrikeResult(60, 1.0, 0, probe_gap_us=86_000)], 48_000) is None
    # measured twice: a third only while the strikes' part of the s.d. is over
    # PROBE_AGAIN_SD_US (the key's own strikes tell how much it scatters: on its curves
    # exactly, the least; none, as assumed), never a fourth
    m = [StrikeResult(60, 1.0, 0, True, float(fit.latency_us(0.7)), float(fit.velocity(0.7)), g)
         for g in (48_000, 50_000)]  # fmt: skip
    assert probe_estimate(fit, m[0]).kind == "measured"
    exact = [StrikeResult(60, d, 0, True, float(fit.latency_us(d)), float(fit.velocity(d)))
             for d in np.linspace(0.3, 1.0, 11)]  # fmt: skip
    assert next_probe(fit, exact + m, 48_000) is None
    loose = next_probe(fit, m, 48_000)
    est = return_estimate(fit, m)
    assert math.sqrt(est.sd_us**2 - est.curve_sd_us**2) > PROBE_AGAIN_SD_US
    assert loose is not None and loose.gap_us == round(0.7 * est.value_us / 2000) * 2000
    assert next_probe(fit, [*m, m[0]], 48_000) is None


def test_probes_are_left_out_of_the_curve_fit() -> None:
    fit0 = _fit(0.2, 15_000, 0.7)
    drives = [1.0, 0.8, 0.6, 0.45, 0.35, 0.28]
    strikes = [
        StrikeResult(60, d, 0, True, float(fit0.latency_us(d)), float(fit0.velocity(d)))
        for d in drives
    ]
    clean = fit_key(strikes)
    probe = StrikeResult(60, 1.0, 0, True, 90_000.0, 20.0, probe_gap_us=48_000)
    with_probe = fit_key([*strikes, probe])
    assert clean is not None and with_probe is not None
    assert with_probe.theta == pytest.approx(clean.theta)
    assert with_probe.alpha == pytest.approx(clean.alpha)
    # and a silent probe does not count as a silent drive either
    silent_probe = StrikeResult(60, 1.0, 0, probe_gap_us=20_000)
    assert fit_key([*strikes, silent_probe]).theta == pytest.approx(clean.theta)  # type: ignore[union-attr]
    # the combination: two measured probes average; a silent one alone is only a bound
    p1 = StrikeResult(
        60, 1.0, 0, True, float(fit0.latency_us(0.6)), float(fit0.velocity(0.6)), 48_000
    )
    assert return_estimate(fit0, [*strikes, p1]).value_us == pytest.approx(80_000, rel=2e-3)
    assert return_estimate(fit0, [*strikes, silent_probe]).kind == "lower"
    assert return_estimate(fit0, strikes).kind == "none"


def test_a_doubtful_onset_weighs_less_in_the_fits() -> None:
    # 88 keys seed 4, key 40: soft strikes near the threshold heard off by a few ms
    # (timed without their direct sound: ``StrikeResult.doubtful``) bent the soft curve
    # by 2.5 ms; a probe heard -6.9 ms off put a played note +3.6 ms off. Measured: the
    # soft curve's worst error 1.09 / 1.31 / 1.06 ms unweighed, 0.18 / 0.48 / 0.07 ms
    # weighed (noise seeds 4-6); the probe's R 69.2 ms unweighed, 79.9 ms weighed (80).
    # Since the fits allow for the action's own spread (session 12; here its least, the
    # strikes have none): 1.08 / 1.30 / 1.02 ms unweighed, 0.22 / 0.50 / 0.07 weighed
    fit0 = _fit(0.26, 15_000, 0.7)
    drives = [1.0, 0.777, 0.532, 0.454, 0.337, 0.305, 0.29, 0.28, 0.275]
    soft = np.array([0.3, 0.32, 0.35])
    truth = fit0.latency_us(soft)
    noise = (VEL_NOISE_AUDIO, LAT_NOISE_AUDIO_US, LAT_REL_NOISE_AUDIO)
    for seed in (4, 5, 6):
        rng = np.random.default_rng(seed)
        strikes = [
            StrikeResult(40, d, 0, True, float(fit0.latency_us(d) + rng.normal(0, 200)), float(fit0.velocity(d)))
            for d in drives
        ]
        strikes[5].latency_us += 3_000.0  # within the outlier rule's 4 ms
        strikes[8].latency_us -= 3_500.0
        bent = fit_key(strikes, *noise)
        strikes[5].doubtful = strikes[8].doubtful = True
        weighed = fit_key(strikes, *noise)
        assert bent is not None and weighed is not None
        err_bent = float(np.abs(bent.latency_us(soft) - truth).max())
        err_weighed = float(np.abs(weighed.latency_us(soft) - truth).max())
        assert err_bent > 1_000.0 and err_weighed < 600.0, (seed, err_bent, err_weighed)
    # a probe at full drive 48 ms after a release sounds as drive 0.6 (R 80 ms), heard
    # at its loudness and 6.9 ms early: marked doubtful, its loudness decides
    probe = StrikeResult(40, 1.0, 0, True, float(fit0.latency_us(0.6)) - 6_900.0, float(fit0.velocity(0.6)), 48_000)
    unweighed = return_estimate(fit0, [probe]).value_us
    probe.doubtful = True
    weighed_r = return_estimate(fit0, [probe]).value_us
    assert abs(unweighed - 80_000) > 5_000 and abs(weighed_r - 80_000) < 800, (unweighed, weighed_r)

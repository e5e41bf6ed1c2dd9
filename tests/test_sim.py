"""The simulated piano: physics properties, sensor noise, truth files, the sim:// device."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player.driver.ports import HeardNote, open_port
from robo_player.errors import PlanError, SpecError, TransportError
from robo_player.plan import Command, Op, Plan, cc_to_counts
from robo_player.sim import CoilEvent, Microphone, PianoPhysics, Truth, expand_plan, open_sim
from robo_player.sim.physics import MIN_SOUND_US
from robo_player.sim.spread import Z_MAX
from robo_player.spec import load_spec
from robo_player.spec.model import PianoSpec


@pytest.fixture(scope="module")
def spec() -> PianoSpec:
    return load_spec("piano-88-grand")


@pytest.fixture(scope="module")
def truth(spec: PianoSpec) -> Truth:
    return Truth.draw(spec, 7)


def strike(spec: PianoSpec, pitch: int, t_us: int, duty: float, hold_until: int | None = None,
           pulse_us: int = 35_000, hold: float = 0.35) -> list[CoilEvent]:
    """Coil events of one strike: pulse, hold, release at ``hold_until`` (if given)."""
    a = spec.key(pitch).channel
    evs = [CoilEvent(t_us, a, duty), CoilEvent(t_us + pulse_us, a, hold)]
    if hold_until is not None:
        evs.append(CoilEvent(hold_until, a, 0.0))
    return evs


def single(spec: PianoSpec, truth: Truth, pitch: int, duty: float, **kw: int) -> list[HeardNote]:
    """What one strike on a fresh piano sounds like (exact, no sensor noise)."""
    ph = PianoPhysics(spec, truth, spread=False)  # the formulas, not this strike's deviation
    return ph.run(strike(spec, pitch, 0, duty, hold_until=500_000, **kw)).heard


def sweep(spec: PianoSpec, truth: Truth, strikes: list[tuple[int, float]]) -> list[HeardNote | None]:
    """Each (pitch, duty) struck 1 s apart in one run (fresh piano): what each sounded like."""
    evs = [e for i, (p, d) in enumerate(strikes) for e in strike(spec, p, i * 1_000_000, d, hold_until=i * 1_000_000 + 500_000)]
    heard = PianoPhysics(spec, truth, spread=False).run(evs).heard  # the formulas exactly
    out: list[HeardNote | None] = [None] * len(strikes)
    for h in heard:
        out[h.t_us // 1_000_000] = HeardNote(h.t_us % 1_000_000, h.pitch, h.velocity, h.end_us)
    return out


def expected(kt, d_eff: float) -> tuple[float, float]:
    """Latency and loudness of the documented formulas."""
    u = (d_eff - kt.threshold) / (1 - kt.threshold)
    lat = kt.latency_full_us * u ** (-kt.alpha)
    v = kt.gain * (kt.v0 + (1 - kt.v0) * (1 - math.exp(-kt.k * u)) / (1 - math.exp(-kt.k)))
    return lat, v


# -- physics ---------------------------------------------------------------------------


def test_below_threshold_is_silent_above_sounds(spec: PianoSpec, truth: Truth) -> None:
    pitches = range(21, 109, 2)
    below = sweep(spec, truth, [(p, truth.key(p).threshold - 0.005) for p in pitches])
    assert below == [None] * len(pitches)
    # just above threshold, but slow enough to stay under the 400 ms limit
    above = sweep(spec, truth, [(p, truth.key(p).threshold + 0.03 * (1 - truth.key(p).threshold)) for p in pitches])
    assert [n.pitch if n else None for n in above] == list(pitches)


def test_latency_and_loudness_follow_the_formulas(spec: PianoSpec, truth: Truth) -> None:
    kt = truth.key(60)
    for duty in (0.3, 0.5, 0.8, 1.0):
        (h,) = single(spec, truth, 60, duty)
        lat, vel = expected(kt, duty)
        assert h.t_us == pytest.approx(lat, abs=1)
        assert h.velocity == pytest.approx(vel, rel=1e-9)


def test_latency_decreases_and_loudness_increases_with_drive(spec: PianoSpec) -> None:
    for seed in range(3):
        truth = Truth.draw(spec, seed)
        for pitch in range(21, 109, 3):
            kt = truth.key(pitch)
            duties = np.linspace(kt.threshold + 0.02, 1.0, 12)
            notes = [n for n in sweep(spec, truth, [(pitch, float(d)) for d in duties]) if n]
            assert len(notes) >= 10 and all(n.pitch == pitch for n in notes)
            lats = [n.t_us for n in notes]
            vels = [n.velocity for n in notes]
            assert all(b < a for a, b in zip(lats, lats[1:], strict=False))
            assert all(b > a for a, b in zip(vels, vels[1:], strict=False))


def test_latency_range_full_drive_and_near_threshold(spec: PianoSpec) -> None:
    full, slow = [], []
    for seed in range(4):
        truth = Truth.draw(spec, seed)
        pitches = range(21, 109)
        full += [n.t_us for n in sweep(spec, truth, [(p, 1.0) for p in pitches]) if n]
        near = [(p, truth.key(p).threshold + 0.02 * (1 - truth.key(p).threshold)) for p in pitches]
        slow += [n.t_us for n in sweep(spec, truth, near) if n]  # missing ones: over 400 ms
    assert len(full) == 4 * 88
    assert 15_000 <= min(full) and max(full) <= 25_000  # 20 ms ± 25 %
    assert abs(np.mean(full) - 20_000) < 1_000
    assert len(slow) > 200 and min(slow) >= 100_000 and max(slow) <= 400_000


def test_short_pulse_is_weaker(spec: PianoSpec, truth: Truth) -> None:
    kt = truth.key(64)
    (full,) = single(spec, truth, 64, 0.8)
    (short,) = single(spec, truth, 64, 0.8, pulse_us=kt.pulse_full_us // 2 + 2000)
    assert short.velocity < full.velocity and short.t_us > full.t_us
    assert single(spec, truth, 64, 0.8, pulse_us=2000) == []


def test_early_restrike_is_weaker_or_silent(spec: PianoSpec, truth: Truth) -> None:
    pitch = 50
    kt = truth.key(pitch)
    r = kt.return_us

    def second(gap_us: int) -> list[HeardNote]:
        ph = PianoPhysics(spec, truth, spread=False)  # the return rule, not a strike's deviation
        evs = strike(spec, pitch, 0, 0.9, hold_until=200_000)
        evs += strike(spec, pitch, 200_000 + gap_us, 0.9, hold_until=600_000)
        return [h for h in ph.run(evs).heard if h.t_us > 200_000]

    (ok,) = second(r + 1000)
    (weak,) = second(int(0.75 * r))
    assert weak.velocity < ok.velocity - 1
    assert weak.velocity == pytest.approx(expected(kt, 0.9 * int(0.75 * r) / r)[1], rel=1e-6)
    assert second(int(0.4 * r)) == []


def test_dampers_and_pedal(spec: PianoSpec, truth: Truth) -> None:
    pitch, ped = 60, spec.pedal.channel
    kt = truth.key(pitch)
    lat_p = truth.pedal_latency_us
    # the formulas exactly (spread=0): with the spread a damper's fall and the pedal's
    # latency deviate too (tests/test_sim_spread.py)
    # no pedal: the damper lands R/3 after release
    (h,) = PianoPhysics(spec, truth, spread=False).run(strike(spec, pitch, 0, 0.9, hold_until=300_000)).heard
    assert h.end_us == pytest.approx(300_000 + kt.return_us / 3, abs=1)
    # pedal down before the release, up later: the note lasts until the dampers fall
    evs = [CoilEvent(0, ped, 1.0)] + strike(spec, pitch, 10_000, 0.9, hold_until=300_000)
    evs += [CoilEvent(2_000_000, ped, 0.0)]
    perf = PianoPhysics(spec, truth, spread=False).run(evs)
    (h,) = perf.heard
    assert h.end_us == 2_000_000 + lat_p
    assert perf.pedal == [(lat_p, 127), (2_000_000 + lat_p, 0)]
    # pedal pressed too late (its latency not yet over when the damper lands): no sustain
    late = 300_000 + kt.return_us // 3 - lat_p + 2_000
    evs = strike(spec, pitch, 0, 0.9, hold_until=300_000) + [CoilEvent(late, ped, 1.0)]
    (h,) = PianoPhysics(spec, truth, spread=False).run(sorted(evs, key=lambda e: e.t_us)).heard
    assert h.end_us == pytest.approx(300_000 + kt.return_us / 3, abs=1)
    # half pedal (value 40) does not lift the dampers
    evs = [CoilEvent(0, ped, 40 / 127)] + strike(spec, pitch, 10_000, 0.9, hold_until=300_000)
    (h,) = PianoPhysics(spec, truth, spread=False).run(evs).heard
    assert h.end_us == pytest.approx(300_000 + kt.return_us / 3, abs=1)


def test_note_still_sounding_has_no_end_and_restrike_cuts(spec: PianoSpec, truth: Truth) -> None:
    ph = PianoPhysics(spec, truth)
    (h,) = ph.run(strike(spec, 70, 0, 0.9)).heard
    assert h.end_us is None
    assert ph.energised() == [spec.key(70).channel]
    # a staccato strike released before contact still sounds a little
    ph = PianoPhysics(spec, truth)
    (h,) = ph.run(strike(spec, 70, 0, 0.5, hold=0.0)).heard
    assert h.end_us - h.t_us >= MIN_SOUND_US


def test_heating_rises_with_duty_and_cools(spec: PianoSpec, truth: Truth) -> None:
    a = spec.key(60).channel

    def hold(duty: float) -> float:
        ph = PianoPhysics(spec, truth)
        return ph.run([CoilEvent(0, a, duty), CoilEvent(3_000_000, a, 0.0)]).max_coil_temp_ratio

    r35, r70, r100 = hold(0.35), hold(0.7), hold(1.0)
    assert 0 < r35 < r70 < r100 < 1
    kt = truth.key(60)
    ts = spec.power.supply_v**2 / spec.power.coil_ohm / kt.heat_capacity_j_per_k * kt.tau_s
    assert r100 == pytest.approx(ts * (1 - math.exp(-3 / kt.tau_s)) / spec.thermal.coil_max_rise_k)
    # cooling: state persists across runs, and heat decays between them
    ph = PianoPhysics(spec, truth)
    first = ph.run([CoilEvent(0, a, 1.0), CoilEvent(3_000_000, a, 0.0)]).max_coil_temp_ratio
    later = ph.run([CoilEvent(60_000_000, a, 0.0)])
    assert ph.coil_temp_ratio(a) < 0.2 * first
    assert later.max_coil_temp_ratio == pytest.approx(first * math.exp(-1 / kt.tau_s), rel=1e-6)


def test_long_full_drive_hold_burns_the_coil(spec: PianoSpec, truth: Truth) -> None:
    pitch = 40
    a = spec.key(pitch).channel
    kt = truth.key(pitch)
    ph = PianoPhysics(spec, truth, spread=False)  # the damper at R/3 exactly (its fall spreads)
    perf = ph.run(strike(spec, pitch, 0, 1.0, hold=1.0, hold_until=15_000_000))
    (fail,) = perf.coil_failures
    ts = spec.power.supply_v**2 / spec.power.coil_ohm / kt.heat_capacity_j_per_k * kt.tau_s
    t_fail = -kt.tau_s * math.log(1 - spec.thermal.coil_max_rise_k / ts) * 1e6
    assert fail["actuator"] == a and fail["pitch"] == pitch
    assert fail["t_us"] == pytest.approx(t_fail, abs=2)
    assert perf.max_coil_temp_ratio == pytest.approx(1.0)
    assert ph.failed() == [a]
    # the burnt coil never sounds again, and its note was damped when it failed
    assert perf.heard[0].end_us == pytest.approx(t_fail + kt.return_us / 3, abs=2)
    assert ph.run(strike(spec, pitch, 0, 1.0, hold_until=300_000)).heard == []


def test_coil_left_on_fails_in_the_gap_and_is_reported(spec: PianoSpec, truth: Truth) -> None:
    ph = PianoPhysics(spec, truth, gap_us=20_000_000)
    perf = ph.run(strike(spec, 45, 0, 1.0, hold=1.0))
    assert [f["pitch"] for f in perf.coil_failures] == [45]


def test_over_budget_chord_is_weaker(spec: PianoSpec, truth: Truth) -> None:
    def chord(pitches: list[int]) -> dict[int, float]:
        evs = [e for p in pitches for e in strike(spec, p, 0, 1.0, hold_until=400_000)]
        perf = PianoPhysics(spec, truth).run(sorted(evs, key=lambda e: e.t_us))
        return {h.pitch: h.velocity for h in perf.heard}

    small = chord(list(range(60, 66)))  # 6 × 4.8 A: within 40 A
    big = chord(list(range(60, 72)))  # 12 × 4.8 A = 57.6 A: sags to 0.69
    for p, v in small.items():
        assert big[p] < v - 5
    # a strike overlapping others' pulses (not only the same instant) sags too
    evs = [e for i, p in enumerate(range(60, 72)) for e in strike(spec, p, i * 1000, 1.0, hold_until=400_000)]
    perf = PianoPhysics(spec, truth).run(sorted(evs, key=lambda e: e.t_us))
    assert perf.extra["min_supply_scale"] == pytest.approx(40.0 / 57.6)
    assert {h.pitch: h.velocity for h in perf.heard}[60] < small[60] - 5


def test_physics_is_deterministic(spec: PianoSpec, truth: Truth) -> None:
    evs = [e for i, p in enumerate(range(30, 90, 2)) for e in strike(spec, p, i * 40_000, 0.3 + i / 50, hold_until=i * 40_000 + 200_000)]
    evs.sort(key=lambda e: e.t_us)
    a = PianoPhysics(spec, truth).run(evs)
    b = PianoPhysics(spec, truth).run(evs)
    assert a == b and len(a.heard) > 20


# -- plan expansion --------------------------------------------------------------------


def test_expand_plan(spec: PianoSpec) -> None:
    k = spec.key(60)
    pm = k.pwm_max
    plan = Plan([
        Command(1000, Op.STRIKE, k.channel, drive=pm, pulse_us=30_000, hold=pm // 2),
        Command(500_000, Op.RELEASE, k.channel),
        Command(600_000, Op.STRIKE, k.channel, drive=pm, pulse_us=30_000, hold=pm // 2),
        Command(610_000, Op.RELEASE, k.channel),  # inside the pulse: cancels the hold
        Command(0, Op.SET, spec.pedal.channel, drive=spec.pedal.pwm_max),  # counts (plan v2)
    ])
    evs = expand_plan(plan, spec)
    assert evs == [
        CoilEvent(0, spec.pedal.channel, 1.0),
        CoilEvent(1000, k.channel, 1.0),
        CoilEvent(31_000, k.channel, (pm // 2) / pm),
        CoilEvent(500_000, k.channel, 0.0),
        CoilEvent(600_000, k.channel, 1.0),
        CoilEvent(610_000, k.channel, 0.0),
    ]


@pytest.mark.parametrize(
    "cmd, match",
    [
        (Command(0, Op.STRIKE, 200, drive=1), r"no actuator 200 in spec .* \(actuators: 0\.\.89\)"),
        (Command(0, Op.STRIKE, 0, drive=5000), "drive 5000"),
        (Command(0, Op.SET, 88, drive=4096), r"drive 4096.*allowed: drive and hold 0\.\.4095"),
        (Command(0, Op.SET, 99, drive=1), r"no actuator 99 in spec"),
        (Command(0, Op.MOVE, 3), "a move goes to a positioner"),
        (Command(-5, Op.RELEASE, 0), "negative"),
    ],
)
def test_expand_plan_rejects_bad_commands(spec: PianoSpec, cmd: Command, match: str) -> None:
    with pytest.raises(PlanError, match=match):
        expand_plan(Plan([cmd]), spec)


def test_physics_rejects_bad_events(spec: PianoSpec, truth: Truth) -> None:
    with pytest.raises(PlanError, match="actuator 500"):
        PianoPhysics(spec, truth).run([CoilEvent(0, 500, 1.0)])
    with pytest.raises(PlanError, match="duty 1.5"):
        PianoPhysics(spec, truth).run([CoilEvent(0, 3, 1.5)])


# -- sensor ----------------------------------------------------------------------------


def test_sensor_noise_has_the_documented_spread() -> None:
    notes = [HeardNote(t_us=1_000_000 * i, pitch=60, velocity=80.0, end_us=1_000_000 * i + 500_000)
             for i in range(4000)]
    heard = Microphone(seed=3).hear(notes)
    assert [round(h.t_us / 1e6) for h in heard] == list(range(4000))  # still sorted
    dt = np.array([h.t_us - n.t_us for h, n in zip(heard, notes, strict=True)])
    dv = np.array([h.velocity - n.velocity for h, n in zip(heard, notes, strict=True)])
    assert abs(dt.std() - 200) < 15 and abs(dt.mean()) < 15
    assert abs(dv.std() - 1.0) < 0.06 and abs(dv.mean()) < 0.06
    again = Microphone(seed=3).hear(notes)
    assert again == heard
    assert Microphone(seed=4).hear(notes) != heard


# -- truth -----------------------------------------------------------------------------


def test_truth_draw_ranges_and_seeds(spec: PianoSpec) -> None:
    a, b = Truth.draw(spec, 1), Truth.draw(spec, 1)
    c = Truth.draw(spec, 2)
    assert a == b and a != c
    assert [k.pitch for k in a.keys] == [k.pitch for k in spec.keys]
    thr = [k.threshold for k in a.keys]
    assert 0.15 <= min(thr) and max(thr) <= 0.30 and len(set(thr)) == len(thr)
    assert all(50_000 <= k.return_us <= 90_000 for k in a.keys)
    assert all(20_000 <= k.pulse_full_us <= 30_000 for k in a.keys)
    assert 30_000 <= a.pedal_latency_us <= 60_000


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ext=st.sampled_from([".yaml", ".json", ".yml"]))
def test_truth_file_round_trip(spec: PianoSpec, tmp_path_factory: pytest.TempPathFactory, seed: int, ext: str) -> None:
    t = Truth.draw(spec, seed)
    path = tmp_path_factory.mktemp("truth") / f"truth{ext}"
    t.save(path)
    assert Truth.load(path) == t
    assert not path.with_name(path.name + ".tmp").exists()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d["keys"][3].update(threshold=1.5), r"keys\[3\]\.threshold: 1.5 out of range"),
        (lambda d: d["keys"][0].update(colour="red"), r"keys\[0\]: unknown field 'colour'"),
        (lambda d: d["keys"][5].pop("alpha"), r"keys\[5\]: missing field 'alpha'"),
        (lambda d: d.update(version=9), "version: 9 unsupported"),
        (lambda d: d.update(pedal_latency_us="slow"), "pedal_latency_us"),
        (lambda d: d["keys"][2].update(pitch=99), r"keys\[2\]\.pitch: 99 must follow"),
    ],
)
def test_truth_file_errors_name_file_and_place(spec: PianoSpec, tmp_path, edit, match: str) -> None:
    doc = Truth.draw(spec, 0).to_dict()
    edit(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError, match=match) as err:
        Truth.load(path)
    assert str(path) in str(err.value)


def test_truth_for_another_spec_is_rejected(spec: PianoSpec, tmp_path) -> None:
    other = load_spec("piano-61-diy")
    path = tmp_path / "t.yaml"
    Truth.draw(other, 0).save(path)
    with pytest.raises(SpecError, match="do not match spec"):
        open_sim("sim://", spec, truth=str(path))


# -- device ----------------------------------------------------------------------------


def _plan(spec: PianoSpec, n: int = 20) -> Plan:
    cmds = []
    for i in range(n):
        k = spec.key(40 + 2 * i)
        t = 300_000 + 150_000 * i
        cmds.append(Command(t, Op.STRIKE, k.channel, drive=int(0.4 * k.pwm_max + 100 * i),
                            pulse_us=35_000, hold=int(0.35 * k.pwm_max), note=i))
        cmds.append(Command(t + 120_000, Op.RELEASE, k.channel, note=i))
    plan = Plan(cmds, 300_000, spec.name, spec.spec_hash)
    plan.sort()
    return plan


def test_device_plays_through_the_registry(spec: PianoSpec) -> None:
    plan = _plan(spec)
    with open_port("sim://?truth_seed=5&sensor_seed=2", spec) as dev:
        assert dev.url == "sim://?truth_seed=5&sensor_seed=2"
        seen: list[float] = []
        perf = dev.play(plan, progress=seen.append)
        assert seen[-1] == 1.0
        assert len(perf.heard) == 20
        assert all(a.t_us <= b.t_us for a, b in zip(perf.heard, perf.heard[1:], strict=False))
        exact = PianoPhysics(spec, Truth.draw(spec, 5)).run(expand_plan(plan, spec))
        dt = [h.t_us - e.t_us for h, e in zip(perf.heard, exact.heard, strict=True)]
        assert 0 < np.std(dt) < 600  # sensor noise on top of the exact physics
        assert dev._truth == Truth.draw(spec, 5)
    assert not dev.is_open
    with pytest.raises(TransportError, match="closed"):
        dev.play(plan)


def test_device_is_deterministic_and_seeds_differ(spec: PianoSpec) -> None:
    plan = _plan(spec)

    def take(**kw: object) -> list[HeardNote]:
        with open_sim("sim://", spec, **kw) as dev:
            return dev.play(plan).heard

    assert take() == take(truth_seed=0, sensor_seed=0)
    assert take(truth_seed="3") == take(truth_seed=3)
    assert take(truth_seed=3) != take(truth_seed=4)
    assert take(sensor_seed=1) != take(sensor_seed=2)


def test_device_session_keeps_state_between_plays(spec: PianoSpec) -> None:
    plan = _plan(spec)
    # spread off: with it, the second play's strikes draw their own deviations
    with open_sim("sim://", spec, timing_sd_us="0", loudness_sd="0", spread="0") as dev:
        a = dev.play(plan)
        b = dev.play(plan)
        assert b.extra["clock_us"] == a.extra["clock_us"] + plan.commands[-1].t_us + 1_000_000
        assert [h.t_us for h in a.heard] == [h.t_us for h in b.heard]  # same keys, same physics
        assert b.max_coil_temp_ratio > a.max_coil_temp_ratio  # leftover heat
        assert dev.energised() == []


@pytest.mark.parametrize(
    "url, kw, match",
    [
        ("sim://?colour=red", {}, "unknown option 'colour'"),
        ("sim://?truth_seed=abc", {}, "truth_seed='abc' must be an integer"),
        ("sim://?timing_sd_us=-1", {}, "timing_sd_us"),
        ("sim://", {"loudness_sd": "nan"}, "loudness_sd"),
        ("sim://?truth_seed=1&truth=x.yaml", {}, "either truth or truth_seed"),
    ],
)
def test_device_rejects_bad_options(spec: PianoSpec, url: str, kw: dict, match: str) -> None:
    with pytest.raises(TransportError, match=match):
        open_port(url, spec, **kw)


def test_device_rejects_plan_for_another_spec(spec: PianoSpec) -> None:
    plan = _plan(spec)
    plan.spec_hash = "0" * 16
    with open_sim("sim://", spec) as dev, pytest.raises(PlanError, match="made for spec"):
        dev.play(plan)


def test_truth_file_via_url(spec: PianoSpec, tmp_path) -> None:
    path = tmp_path / "t.yaml"
    Truth.draw(spec, 11).save(path)
    plan = _plan(spec)
    with open_port(f"sim://?truth={path}", spec) as d1, open_sim("sim://", spec, truth_seed=11) as d2:
        assert d1.play(plan) == d2.play(plan)
    with pytest.raises(SpecError, match="cannot read truth file"):
        open_port(f"sim://?truth={tmp_path / 'missing.yaml'}", spec)


@settings(max_examples=30, deadline=None)
@given(
    strikes=st.lists(
        st.tuples(st.integers(0, 3_000_000), st.integers(36, 84), st.floats(0.0, 1.0),
                  st.integers(0, 60_000), st.integers(1, 600_000), st.floats(0.0, 1.0)),
        max_size=40,
    ),
    pedal=st.lists(st.tuples(st.integers(0, 3_000_000), st.integers(0, 127)), max_size=6),
)
def test_physics_invariants(spec: PianoSpec, truth: Truth, strikes, pedal) -> None:
    cmds = []
    for t, p, d, pulse, hold_us, h in strikes:
        k = spec.key(p)
        cmds.append(Command(t, Op.STRIKE, k.channel, drive=int(d * k.pwm_max), pulse_us=pulse,
                            hold=int(h * k.pwm_max)))
        cmds.append(Command(t + hold_us, Op.RELEASE, k.channel))
    cmds += [Command(t, Op.SET, spec.pedal.channel, drive=cc_to_counts(v, spec.pedal.pwm_max))
             for t, v in pedal]
    evs = expand_plan(Plan(cmds), spec)
    assert all(a.t_us <= b.t_us for a, b in zip(evs, evs[1:], strict=False))
    ph = PianoPhysics(spec, truth)
    perf = ph.run(evs)
    assert len(perf.heard) + perf.extra["silent_strikes"] == perf.extra["strikes"]
    struck = {p for _t, p, d, *_ in strikes}
    for h in perf.heard:
        assert h.pitch in struck
        kt = truth.key(h.pitch)  # a strike's own deviation (sim/spread.py) is bounded
        assert 0 < h.velocity <= kt.gain * (1 + Z_MAX * kt.loudness_sd) + 1e-9
        assert h.end_us is None or h.end_us >= h.t_us
    assert [(h.t_us, h.pitch) for h in perf.heard] == sorted((h.t_us, h.pitch) for h in perf.heard)
    assert 0.0 <= perf.max_coil_temp_ratio <= 1.0
    assert 0.0 < perf.extra["min_supply_scale"] <= 1.0
    assert ph.energised() == []  # every strike was released

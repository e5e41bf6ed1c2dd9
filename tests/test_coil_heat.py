"""The firmware's duty limit against the simulator's hidden coil heat (issue 9: faults
never leave a coil energised past its rating), and a strike's energy read from every
level its pin went through (physics reads what the pins did)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player import rules
from robo_player.driver.ports import open_port
from robo_player.errors import SpecError
from robo_player.plan import Command, Op, Plan
from robo_player.sim.limits import apply_limits
from robo_player.sim.physics import CoilEvent, EventColumns, PianoPhysics
from robo_player.sim.truth import THERMAL_SPREAD, Truth
from robo_player.spec.loader import load_spec, resolve_spec_path, spec_from_mapping
from robo_player.spec.model import PianoSpec

PIANOS = ("piano-61-diy", "piano-88-grand")
SPECS = {name: load_spec(name) for name in PIANOS}


def hottest_truth(spec: PianoSpec, seed: int = 0) -> Truth:
    """A drawn truth whose every coil is the hottest the tolerance allows: heat capacity
    low, time constant long."""
    t = Truth.draw(spec, seed)
    th = spec.thermal
    keys = tuple(
        replace(k, heat_capacity_j_per_k=th.coil_heat_capacity_j_per_k * (1 - THERMAL_SPREAD),
                tau_s=th.coil_tau_s * (1 + THERMAL_SPREAD))
        for k in t.keys
    )  # fmt: skip
    return replace(t, keys=keys)


def test_the_truth_spread_is_the_tolerance_the_limit_covers() -> None:
    assert THERMAL_SPREAD == rules.COIL_THERMAL_TOLERANCE
    for spec in SPECS.values():
        act = spec.actuators[spec.keys[0].channel]
        truth = hottest_truth(spec)
        kt = truth.keys[0]
        p = spec.power
        assert rules.worst_full_rise_k(act) == pytest.approx(
            p.supply_v**2 / p.coil_ohm / kt.heat_capacity_j_per_k * kt.tau_s
        )
        drawn = Truth.draw(spec, 7)
        assert all(k.heat_capacity_j_per_k >= kt.heat_capacity_j_per_k for k in drawn.keys)
        assert all(k.tau_s <= kt.tau_s for k in drawn.keys)


@pytest.mark.parametrize("name", PIANOS)
@pytest.mark.parametrize("seed", range(6))
def test_full_drive_held_from_cold_never_burns_a_coil(name: str, seed: int) -> None:
    """Every key in turn held at full drive from cold (no release for 25 s) through
    ``sim://``'s firmware limits: the duty limit cuts each one before its coil's hidden
    heat reaches the rating (it used to burn at 7-8 s on the grand, 17-19 s on the diy)."""
    spec = SPECS[name]
    step = 6_000_000
    cmds = []
    for i, k in enumerate(spec.keys):
        act = spec.actuators[k.channel]
        cmds += [Command(i * step, Op.SET, k.channel, drive=act.pwm_max),
                 Command(i * step + 25_000_000, Op.RELEASE, k.channel)]  # fmt: skip
    dev = open_port("sim://?sensor=notes", spec, truth_seed=seed)
    try:
        perf = dev.play(Plan(sorted(cmds, key=Command.sort_key), 0, spec.name, spec.spec_hash))
    finally:
        dev.close()
    assert perf.coil_failures == []
    assert 0.1 < perf.max_coil_temp_ratio < 1.0
    # the firmware's duty limit did the cutting, before the on-time limit would have
    res = apply_limits(cmds, spec.actuators)
    assert len(res.cuts) == len(spec.keys)


@pytest.mark.parametrize("name", PIANOS)
def test_the_bound_s_worst_pattern_stays_within_the_rating(name: str) -> None:
    """The drive the bound says is the hottest the bucket allows: the highest level the
    bucket drains at, kept up until the coil is settled, then full drive until the cut,
    on coils at the hot end of the tolerance. It comes close to the rating (the bound is
    tight) and stays within it."""
    spec = SPECS[name]
    ch = spec.key(60).channel
    act = spec.actuators[ch]
    drain = rules.duty_drain_k(rules.duty_permille(act))
    level = max(lv for lv in range(act.pwm_max + 1) if rules.duty_weight(act.pwm_max, lv) * 64 <= drain)
    settle = int(8 * rules.worst_tau_s(act) * 1e6)
    on = act.max_on_us - 1_000_000  # re-set before the on-time limit cuts it
    cmds = []
    for t in range(0, settle, on + 1000):
        cmds += [Command(t, Op.SET, ch, drive=level), Command(t + on, Op.RELEASE, ch)]
    cmds += [Command(settle, Op.SET, ch, drive=act.pwm_max), Command(settle + 30_000_000, Op.RELEASE, ch)]
    res = apply_limits(cmds, spec.actuators, screen=False)
    assert len(res.cuts) == 1  # only the full drive is cut
    perf, _ = PianoPhysics(spec, hottest_truth(spec)).run_columns(EventColumns.from_outputs(res.outputs))
    assert perf.coil_failures == []
    assert 0.9 < perf.max_coil_temp_ratio < 1.0


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(PIANOS),
    steps=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1_000, 3_000_000)), min_size=1, max_size=40),
)
def test_no_drive_pattern_overheats_the_hottest_coil(name: str, steps: list[tuple[float, int]]) -> None:
    spec = SPECS[name]
    ch = spec.key(60).channel
    act = spec.actuators[ch]
    cmds, t = [], 0
    for share, dur in steps:
        level = round(math.sqrt(share) * act.pwm_max)
        cmds.append(Command(t, Op.SET, ch, drive=level) if level else Command(t, Op.RELEASE, ch))
        t += dur
    cmds.append(Command(t, Op.RELEASE, ch))
    res = apply_limits(cmds, spec.actuators, screen=False)
    perf, _ = PianoPhysics(spec, hottest_truth(spec)).run_columns(EventColumns.from_outputs(res.outputs))
    assert perf.coil_failures == [] and perf.max_coil_temp_ratio < 1.0


def test_the_firmware_is_configured_with_the_bounded_limits() -> None:
    from robo_player.driver.stream import configure_messages

    for spec in SPECS.values():
        msgs = configure_messages(spec, watchdog_ms=500, time_shift=0, level_shift=0)
        assert msgs[0].as_dict()["duty_window_ms"] == rules.map_duty_window_ms(spec.actuators)
        act = spec.actuators[spec.keys[0].channel]
        assert rules.duty_window_ms(act) <= rules.duty_window_limit_ms(act)
        # the sustained limit leaves DUTY_HEADROOM below the hottest coil's
        share = act.max_rise_k / rules.worst_full_rise_k(act)
        assert rules.duty_permille(act) == int(1000 * (1 - rules.DUTY_HEADROOM) * share)
        # the held key's hold still drains the bucket (a held note is never cut for duty)
        assert rules.duty_weight(act.pwm_max, act.hold_counts) * 64 < rules.duty_drain_k(rules.duty_permille(act))


def test_a_spec_whose_coils_the_duty_limit_cannot_protect_is_refused() -> None:
    path = resolve_spec_path("piano-88-grand")
    doc = yaml.safe_load(path.read_text())
    doc["thermal"]["coil_heat_capacity_j_per_k"] = 2.0
    with pytest.raises(SpecError) as err:
        spec_from_mapping(doc, "grand.yaml")
    msg = str(err.value)
    assert msg.startswith("grand.yaml: thermal.coil_heat_capacity_j_per_k: 2: ")
    assert "'key:21'" in msg and "(allowed 100..600000 ms)" in msg
    need = float(msg.split("allowed >= ")[1].split()[0])
    assert 20.0 < need < 25.0
    # a little hotter than the grand: protected, but the limit would cut its keys' holds
    doc["thermal"]["coil_heat_capacity_j_per_k"] = 20.0
    with pytest.raises(SpecError, match=r"coil_heat_capacity_j_per_k: 20: .*'key:21' .*below its "
                       r"hold's weight \(0.35 of full drive: 30/256\).*cut every long hold"):  # fmt: skip
        spec_from_mapping(doc, "grand.yaml")
    doc["thermal"]["coil_heat_capacity_j_per_k"] = need
    spec = spec_from_mapping(doc, "grand.yaml")
    assert rules.duty_limit_problem(spec.actuators[0]) is None
    # the shipped specs all pass
    for name in PIANOS:
        assert all(rules.duty_limit_problem(a) is None for a in SPECS[name].actuators)


# -- a strike's energy over its whole pulse, as the pins delivered it -----------------


@pytest.mark.parametrize("name", PIANOS)
def test_a_strike_pin_left_on_longer_is_heard_louder_not_silent(name: str) -> None:
    """fw-avr, BWV 856 note 889: the strike's pin full on for 4.97 ms, then at the strike's
    level (113/255) until the hold. The physics reads the pulse's energy over every level
    above hold: the note sounds as a single-level strike of the same energy, louder
    than the planned one; it used to read 5 ms at full drive and stay silent."""
    spec = SPECS[name]
    truth = Truth.draw(spec, 2)
    pitch = spec.keys[len(spec.keys) // 2].pitch
    a = spec.key(pitch).channel
    pm = spec.actuators[a].pwm_max
    p_full = truth.key(pitch).pulse_full_us
    hold = spec.actuators[a].hold_counts / pm
    d = round(0.443 * pm) / pm

    def heard(events: list[tuple[int, float]]):
        ph = PianoPhysics(spec, truth)
        (note,) = ph.run([CoilEvent(t, a, v) for t, v in events] + [CoilEvent(500_000, a, 0.0)]).heard
        return note

    glitch = heard([(0, 1.0), (4_970, d), (40_000, hold)])
    planned = heard([(0, d), (40_000, hold)])
    energy = (4_970 * 1.0 + (p_full - 4_970) * d) / p_full
    same = heard([(0, energy), (40_000, hold)])
    assert glitch.velocity == pytest.approx(same.velocity, rel=1e-9)
    assert glitch.t_us == same.t_us
    assert glitch.velocity > planned.velocity
    # the window is P_full: levels after it add nothing; a drop to hold ends the pulse
    assert heard([(0, 1.0), (4_970, d), (p_full, 1.0), (40_000, hold)]).velocity == pytest.approx(
        same.velocity, rel=1e-9)  # fmt: skip
    short = heard([(0, 1.0), (p_full // 2, hold), (p_full, 1.0)])  # full after the hold: no pulse
    assert short.velocity == pytest.approx(heard([(0, (p_full // 2) / p_full)]).velocity, rel=1e-9)


def test_a_silent_first_level_that_steps_up_sounds() -> None:
    """A pulse that starts too weak to sound and steps up before the hold carries the
    later level's energy too (each level counts within the key's P_full)."""
    spec = SPECS["piano-88-grand"]
    truth = Truth.draw(spec, 0)
    pitch = 60
    a = spec.key(pitch).channel
    kt = truth.key(pitch)
    weak = kt.threshold * 0.9
    ph = PianoPhysics(spec, truth)
    assert ph.run([CoilEvent(0, a, weak), CoilEvent(40_000, a, 0.35), CoilEvent(400_000, a, 0.0)]).heard == []
    ph = PianoPhysics(spec, truth)
    evs = [CoilEvent(0, a, weak), CoilEvent(kt.pulse_full_us // 4, a, 1.0), CoilEvent(40_000, a, 0.35),
           CoilEvent(400_000, a, 0.0)]  # fmt: skip
    assert len(ph.run(evs).heard) == 1

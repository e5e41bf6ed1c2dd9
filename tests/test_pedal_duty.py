"""The sustain pedal under the coil rules, and sim:// under the firmware's limits.

- The planner plans each press as pull-in then hold and checks it by the shared rules,
  so that no firmware limit ever cuts or refuses the pedal (issue 9: Chopin's étude op.
  25/8 had 34 duty cuts of the pedal on every firmware port and none on sim://).
- sim:// applies the firmware's max on-time and duty limits (robo_player/sim/limits.py),
  so a plan the firmware would cut is cut on sim:// too, and counted the same.
- The simulated pedal solenoid holds at its hold level only once pulled in.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml
from driver_helpers import duty_steps
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robo_player import rules
from robo_player.driver import open_port
from robo_player.errors import SpecError
from robo_player.plan import Command, Op, Plan
from robo_player.planner import plan_piano
from robo_player.planner.constraints import spec_hash_of
from robo_player.planner.pedal import pull_in_us
from robo_player.score import Note, PedalEvent, Score
from robo_player.sim.limits import apply_limits
from robo_player.spec import load_spec
from robo_player.spec.loader import spec_from_mapping

GRAND = load_spec("piano-88-grand")
assert GRAND.pedal is not None
PCH = GRAND.pedal.channel
FULL = GRAND.pedal.pwm_max
HOLD = GRAND.actuators[PCH].hold_counts
MS = 1000
S = 1_000_000


def _plan(cmds: list[Command]) -> Plan:
    return Plan(
        commands=sorted(cmds, key=Command.sort_key),
        pipeline_delay_us=GRAND.timing.pipeline_delay_us,
        spec_name=GRAND.name,
        spec_hash=spec_hash_of(GRAND),
    )


def _play(url: str, plan: Plan) -> tuple[dict[str, int], list[tuple[int, int]]]:
    with open_port(url, GRAND) as dev:
        perf = dev.play(plan)
    return dict(perf.extra["commands"]), sorted(perf.pedal)


def _overrun_plan() -> Plan:
    """The pedal at full drive for 12 s (its bucket overflows after ~1.3 s: cut), up,
    down again at 13 s (the bucket has drained below the cap: played, and cut again), and held at the hold level for 25 s (it drains the bucket, but the
    on-time limit cuts it at 20 s); a key struck meanwhile is untouched."""
    key = GRAND.key(60).channel
    return _plan([
        Command(100 * MS, Op.SET, PCH, FULL),
        Command(12 * S, Op.SET, PCH, 0),
        Command(13 * S, Op.SET, PCH, FULL),
        Command(17 * S, Op.SET, PCH, 0),
        Command(40 * S, Op.SET, PCH, HOLD),
        Command(66 * S, Op.SET, PCH, 0),
        Command(5 * S, Op.PULSE_HOLD, key, 3000, 35 * MS, HOLD, 0),
        Command(6 * S, Op.RELEASE, key, note=0),
    ])  # fmt: skip


def test_sim_cuts_a_pedal_overrun_as_the_firmware_model_does() -> None:
    plan = _overrun_plan()
    sim_counts, sim_pedal = _play("sim://?timing_sd_us=0", plan)
    vm_counts, vm_pedal = _play("vmcu://?timing_sd_us=0", plan)
    # three cuts (two duty, one on-time), counted by the command that turned it on
    assert sim_counts == vm_counts == {"played": 5, "played_cut_off": 3}
    lim = apply_limits(plan.commands, GRAND.actuators)
    assert [why for _, _, why in lim.cuts] == ["duty", "duty", "max_on"]
    assert lim.cuts[2][0] == 40 * S + GRAND.thermal.max_on_us
    # what the pedal sensor heard: the same changes; a cut within the duty poll's 8 ms
    # (the poll's phase is the board's loop's), and a later one within twice that (the
    # bucket keeps what the coil took until the earlier cut)
    assert [v for _, v in sim_pedal] == [v for _, v in vm_pedal]
    for (ts, _), (tv, _) in zip(sim_pedal, vm_pedal, strict=True):
        assert abs(ts - tv) <= 2 * (rules.DUTY_POLL_US + rules.DUTY_UNIT_US)
    assert abs(sim_pedal[1][0] - vm_pedal[1][0]) <= rules.DUTY_POLL_US + rules.DUTY_UNIT_US


def test_a_press_on_a_full_bucket_is_refused_alike() -> None:
    # a command that drives the pedal once its bucket was found past the cap (by the
    # duty poll that cuts it: after the poll, whatever its phase) is refused
    bucket = rules.DutyBucket.of(GRAND.actuators, PCH)
    bucket.set_level(100 * MS, FULL)
    over = bucket.over_at_us()
    # cap / (weight − drain): the full-drive weight is 255/256, the drain drain_k/16384
    fill = bucket.cap / (255 / 256 - bucket.drain_k / (256 * rules.DUTY_UNIT_US))
    assert over is not None and abs(over - (100 * MS + fill)) <= 2 * rules.DUTY_UNIT_US
    # sched.c reads the flag its last integration left: past the cap but before the
    # poll, not yet hot (the poll then cuts the coil); from the poll on, hot
    poll = -(-over // rules.DUTY_POLL_US) * rules.DUTY_POLL_US
    assert over < poll and not bucket.copy().hot(over + (poll - over) // 2) and bucket.copy().hot(poll)
    plan = _plan([
        Command(100 * MS, Op.SET, PCH, FULL),
        Command(over + rules.DUTY_POLL_US + 200, Op.SET, PCH, FULL),
        Command(over + 3 * S, Op.SET, PCH, 0),
    ])  # fmt: skip
    lim = apply_limits(plan.commands, GRAND.actuators)
    assert lim.refused == {1} and lim.cut_off == {0}
    sim_counts, _ = _play("sim://", plan)
    vm_counts, _ = _play("vmcu://", plan)
    assert sim_counts == vm_counts == {"played": 1, "played_cut_off": 1, "refused_duty": 1}


def _etude_like(seconds: int, period_us: int, gap_us: int) -> Score:
    """Notes every 100 ms and the pedal changed every ``period_us`` with ``gap_us`` up
    between presses (Chopin's op. 25/8 changes it every 0.87 s, 0.9 ms up)."""
    notes = [Note(48 + (k * 7) % 36, k * 100 * MS, 400 * MS, 70) for k in range(seconds * 10)]
    pedal: list[PedalEvent] = []
    for t in range(0, seconds * S, period_us):
        pedal += [PedalEvent(t, 127), PedalEvent(t + period_us - gap_us, 0)]
    return Score(notes=notes, pedal=pedal)


def test_the_planned_pedal_is_never_cut_where_full_drive_would_be() -> None:
    score = _etude_like(60, 870 * MS, 906)
    plan, report = plan_piano(score, GRAND)
    # the pedal's bucket is sized for the hottest coil the tolerance allows (rules.py,
    # docs/hardware.md "Coil heat"): a 60 s press every 0.87 s is more than its drain,
    # so a few presses are left out, and said so
    assert 0 < len(report.pedal_changes) <= 6  # of 69 presses (4 now)
    assert all(c["change"] == "not pressed" and "duty limit" in str(c["reason"])
               for c in report.pedal_changes)  # fmt: skip
    sets = [c for c in plan.commands if c.actuator == PCH]
    assert {c.drive for c in sets} == {FULL, HOLD, 0}
    assert not apply_limits(plan.commands, GRAND.actuators).cuts
    # the same presses held at full drive, as plans did before: cut, no sooner than
    # continuous full drive from cold would be
    old = _plan(
        [c for c in plan.commands if c.actuator != PCH]
        + [dataclasses.replace(c, drive=FULL) for c in sets if c.drive != HOLD]
    )
    cut = apply_limits(old.commands, GRAND.actuators).cuts
    assert len(cut) > 10 and all(why == "duty" and a == PCH for _, a, why in cut)
    cold = rules.DutyBucket.of(GRAND.actuators, PCH)
    cold.set_level(0, FULL)
    first = cold.over_at_us()
    assert first is not None and cut[0][0] > first


def test_pedal_changes_too_fast_for_the_coil_are_left_out_and_reported() -> None:
    # a press every 60 ms: 40 ms of pull-in each, far over what the coil sustains
    score = _etude_like(40, 60 * MS, 5 * MS)
    plan, report = plan_piano(score, GRAND)
    skipped = [c for c in report.pedal_changes if c["change"] == "not pressed"]
    assert skipped and all(("heat" in str(c["reason"]) or "duty" in str(c["reason"]))
                           for c in skipped)  # fmt: skip
    assert report.to_json()["pedal_changes"] == report.pedal_changes
    presses = sum(1 for c in plan.commands if c.actuator == PCH and c.drive == FULL)
    assert presses + len(skipped) == len(score.pedal) // 2
    lim = apply_limits(plan.commands, GRAND.actuators)
    assert not lim.cuts and not lim.refused
    counts, _ = _play("sim://", plan)
    assert counts == {"played": len(plan.commands)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.tuples(st.integers(0, 90 * S), st.sampled_from([0, 30, 64, 127])),
                    max_size=300),  # fmt: skip
    fast=st.booleans(),
)
def test_no_plan_leaves_the_pedal_to_the_firmware_limits(
    events: list[tuple[int, int]], fast: bool
) -> None:
    if fast:  # dense changes, where the coil's limits bind
        events = events + [(t, 127 if k % 2 == 0 else 0) for k, t in
                           enumerate(range(10 * S, 50 * S, 45 * MS))]  # fmt: skip
    score = Score(notes=[Note(60, 0, 100 * MS, 80)],
                  pedal=[PedalEvent(t, v) for t, v in sorted(events)])  # fmt: skip
    plan, report = plan_piano(score, GRAND)
    lim = apply_limits(plan.commands, GRAND.actuators)
    assert not lim.cuts and not lim.refused
    report.check()


def test_a_pulled_in_pedal_holds_and_a_short_pull_in_does_not() -> None:
    key = GRAND.key(60).channel
    strike = [Command(1 * S, Op.PULSE_HOLD, key, 3000, 35 * MS, HOLD, 0),
              Command(1 * S + 100 * MS, Op.RELEASE, key, note=0)]  # fmt: skip

    def heard(pull_us: int) -> tuple[list[tuple[int, int]], float]:
        plan = _plan(strike + [
            Command(500 * MS, Op.SET, PCH, FULL),
            Command(500 * MS + pull_us, Op.SET, PCH, HOLD),
            Command(3 * S, Op.SET, PCH, 0),
        ])  # fmt: skip
        with open_port("sim://?timing_sd_us=0", GRAND) as dev:
            perf = dev.play(plan)
        (note,) = perf.heard
        assert note.end_us is not None
        return sorted(perf.pedal), note.end_us - note.t_us

    pedal, dur = heard(pull_in_us(GRAND))
    assert [v for _, v in pedal] == [127, 0]  # down through the hold, then up
    assert dur > 1.5 * S  # the note rings on until the pedal comes up at 3 s
    pedal, dur = heard(5 * MS)  # not pulled in: the hold level lets it drop
    assert [v for _, v in pedal] == [127, round(HOLD / FULL * 127), 0]
    assert dur < 500 * MS


def test_pull_in_longer_than_a_full_drive_pulse_is_refused(tmp_path: Path) -> None:
    doc = yaml.safe_load((Path(__file__).parents[1] / "hardware_specs/piano-88-grand.yaml").read_text())
    doc["pedal"]["pull_in_us"] = GRAND.strike.max_pulse_us + 1
    with pytest.raises(SpecError, match=r"pedal\.pull_in_us: 40001 is longer than strike\.max_pulse_us"):
        spec_from_mapping(doc, "grand.yaml")
    doc["pedal"]["pull_in_us"] = 30_000
    spec = spec_from_mapping(doc, "grand.yaml")
    assert spec.spec_hash != GRAND.spec_hash and pull_in_us(spec) == 30_000


def test_a_note_the_lifted_pedal_no_longer_carries_is_reported_shortened() -> None:
    # Coils 25x hotter (a spec the loader refuses: the firmware's duty limit cannot keep
    # such coils within their rise; built past it here so that limits bind in seconds):
    # a key's hold reaches the heat limit in seconds. The score's pedal would carry the
    # note past its key's heat cut, but the pedal coil's own duty bucket refuses the
    # press: the note is shortened, and says why.
    hot = dataclasses.replace(
        GRAND, thermal=dataclasses.replace(GRAND.thermal, coil_heat_capacity_j_per_k=1.0)
    )
    score = Score(notes=[Note(60, 1 * S, 12 * S, 80)],
                  pedal=[PedalEvent(0, 127), PedalEvent(14 * S, 0)])  # fmt: skip
    plan, report = plan_piano(score, hot)
    (o,) = report.outcomes
    assert report.pedal_carried == 0
    assert "not carried by pedal: it was lifted early" in (o.reason or "")
    assert "shortened by" in (o.reason or "")
    (lift,) = report.pedal_changes
    assert lift["change"] == "not pressed" and "duty limit" in str(lift["reason"])
    assert all(a != PCH for _, a, _ in apply_limits(plan.commands, hot.actuators).cuts)
    assert rules.duty_limit_problem(hot.actuators[PCH]) is not None
    # the same on the grand: the pedal carries it (its key lets go at the 20 s limit)
    score2 = Score(notes=[Note(60, 1 * S, 25 * S, 80)],
                   pedal=[PedalEvent(15 * S, 127), PedalEvent(27 * S, 0)])  # fmt: skip
    _, report2 = plan_piano(score2, GRAND)
    assert report2.pedal_carried == 1 and report2.outcomes[0].reason == "carried by pedal"


_KEY = GRAND.key(60).channel


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(st.integers(1, 3 * S), st.sampled_from([PCH, _KEY]),
                  st.sampled_from(["off", "full", "hold", "strike"])),  # fmt: skip
        max_size=60,
    )
)
def test_the_screen_never_misses_a_coil_the_full_run_cuts(
    steps: list[tuple[int, int, str]],
) -> None:
    cmds = duty_steps(steps, FULL, HOLD)
    t = sum(dt for dt, _, _ in steps)
    cmds.append(Command(t + 1, Op.RELEASE, PCH))
    cmds.append(Command(t + 1, Op.RELEASE, _KEY))
    cmds.sort(key=Command.sort_key)
    full = apply_limits(cmds, GRAND.actuators, screen=False)
    quick = apply_limits(cmds, GRAND.actuators)
    assert (quick.cuts, quick.refused, quick.cut_off) == (full.cuts, full.refused, full.cut_off)
    assert quick.commands == full.commands


def test_duty_weights_of_arrays_equal_the_scalar_rule() -> None:
    """The vectorised weight (sim/limits.py's screen) is the firmware's weight_of()."""
    pm = np.array([255] * 256 + [4095] * 4096 + [1000] * 1001, dtype=np.int64)
    lv = np.concatenate([np.arange(256), np.arange(4096), np.arange(1001)]).astype(np.int64)
    got = rules.duty_weights(pm, lv)
    want = [rules.duty_weight(int(p), int(v)) for p, v in zip(pm, lv, strict=True)]
    assert got.tolist() == want

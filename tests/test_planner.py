"""The piano planner: invariants on random scores, and focused behaviour."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from robo_player.errors import CalibrationError, PlanError, UsageError
from robo_player.plan import Command, Op, Plan
from robo_player.planner import (
    Fate,
    PlanOptions,
    PlanReport,
    Playability,
    plan,
    plan_piano,
    playability,
)
from robo_player.planner.constraints import Limits
from robo_player.planner.pedal import REPRESS_GAP_US, pull_in_us
from robo_player.score import Note, PedalEvent, Score
from robo_player.spec import load_spec
from robo_player.spec.calibration import Calibration, KeyCurve
from robo_player.spec.model import PianoSpec

GRAND = load_spec("piano-88-grand")
DIY = load_spec("piano-61-diy")
assert GRAND.pedal is not None
PEDAL_CH = GRAND.pedal.channel  # the pedal's commands: SET full, SET hold, RELEASE
SPECS = {"grand": GRAND, "diy": DIY}

MS = 1000
S = 1_000_000


# ---------------------------------------------------------------- helpers


def score_of(
    *notes: tuple[int, int, int, int], pedal: list[tuple[int, int]] | None = None
) -> Score:
    """Notes as (pitch, onset_us, duration_us, velocity)."""
    return Score(
        notes=[Note(p, o, d, v) for p, o, d, v in notes],
        pedal=[PedalEvent(t, v) for t, v in (pedal or [])],
    )


def strikes_of(plan: Plan) -> dict[int, Command]:
    return {c.note: c for c in plan if c.op is Op.STRIKE}


def releases_of(plan: Plan) -> dict[int, Command]:
    return {c.note: c for c in plan if c.op is Op.RELEASE and c.note >= 0}


def nominal_latency(spec: PianoSpec, pitch: int, counts: float) -> int:
    curve = Calibration.nominal(spec).curve(pitch)
    return round(curve.latency_at(counts / spec.key(pitch).pwm_max))


def _heat(spec: PianoSpec, t0: float, dt: float, duty: float) -> float:
    """Nominal coil temperature rise after dt µs at duty, from t0 (exact solution)."""
    p, th = spec.power, spec.thermal
    tau = th.coil_tau_s * 1e6
    steady = duty**2 * p.supply_v**2 / p.coil_ohm / th.coil_heat_capacity_j_per_k * th.coil_tau_s
    return steady + (t0 - steady) * math.exp(-dt / tau)


def check_supply_current(spec: PianoSpec, plan: Plan) -> None:
    coil_a = spec.power.supply_v / spec.power.coil_ohm
    rel = releases_of(plan)
    spans = []  # (start, end, amps, is_pulse)
    for c in plan:
        if c.op is Op.STRIKE:
            pwm = spec.key(next(k.pitch for k in spec.keys if k.channel == c.actuator)).pwm_max
            spans.append((c.t_us, c.t_us + c.pulse_us, c.drive / pwm * coil_a, True))
            spans.append((c.t_us + c.pulse_us, rel[c.note].t_us, c.hold / pwm * coil_a, False))
    for x in {a for a, _, _, p in spans if p} | {b for _, b, _, p in spans if p}:
        active = [(amps, p) for a, b, amps, p in spans if a <= x < b]
        if any(p for _, p in active):
            assert sum(amps for amps, _ in active) <= spec.power.supply_a + 1e-6, x


def check_invariants(score: Score, spec: PianoSpec, plan: Plan, report: PlanReport) -> None:
    """Everything a plan must satisfy, whatever the score."""
    lim = Limits.from_spec(spec, PlanOptions())
    cmds = plan.commands
    # time-ordered, in Plan.sort() order
    assert [c.sort_key() for c in cmds] == sorted(c.sort_key() for c in cmds)
    assert all(c.t_us >= 0 for c in cmds)
    key_channels = {k.channel: k for k in spec.keys}
    # per key actuator: strike, release, strike, release ... of the same note
    per_act: dict[int, list[Command]] = defaultdict(list)
    for c in cmds:
        if spec.pedal is not None and c.actuator == spec.pedal.channel:
            # the pedal: SET its level in its PWM counts (plan v2), RELEASE when it comes up
            assert c.op in (Op.SET, Op.RELEASE) and c.note == -1
            assert 0 <= c.drive <= spec.pedal.pwm_max
            continue
        assert c.op in (Op.PULSE_HOLD, Op.RELEASE)
        assert c.actuator in key_channels
        per_act[c.actuator].append(c)
    for ch, seq in per_act.items():
        key = key_channels[ch]
        assert len(seq) % 2 == 0
        for a, b in zip(seq[0::2], seq[1::2], strict=True):
            assert a.op is Op.STRIKE and b.op is Op.RELEASE and a.note == b.note
            assert 0 < a.drive <= key.pwm_max
            assert a.drive >= math.ceil(spec.strike.min_drive * key.pwm_max - 1e-9)
            # the spec's pulse, or (a note released early for a re-strike) cut at its release
            # to no less than the pulse of full effect
            assert a.pulse_us == spec.strike.default_pulse_us or (
                spec.strike.full_pulse_us <= a.pulse_us < spec.strike.default_pulse_us
                and b.t_us == a.t_us + a.pulse_us
            )
            assert a.hold == round(spec.strike.hold_duty * key.pwm_max)
            # never on past max_on; never cutting the strike pulse short
            assert a.t_us + a.pulse_us <= b.t_us <= a.t_us + spec.thermal.max_on_us
        # the key is back up before it is struck again, or (a re-strike) at least
        # restrike_ratio of the way up, and then repeats only as fast as that allows
        ret = spec.timing.key_return_us
        for b, a2 in zip(seq[1::2], seq[2::2], strict=False):
            assert a2.t_us - b.t_us >= math.ceil(lim.restrike_ratio * ret) - 1
        strikes = seq[0::2]
        for a, a2 in zip(strikes, strikes[1:], strict=False):
            assert a2.t_us - a.t_us >= min(
                spec.timing.min_repeat_us, lim.restrike_floor_us(0) + math.ceil(lim.restrike_ratio * ret)
            )
        # nominal coil heat never past the margin (independent recomputation)
        temp, t_last = 0.0, 0
        for a, b in zip(seq[0::2], seq[1::2], strict=True):
            temp = _heat(spec, temp, a.t_us - t_last, 0.0)
            temp = _heat(spec, temp, a.pulse_us, a.drive / key.pwm_max)
            temp = _heat(spec, temp, b.t_us - a.t_us - a.pulse_us, a.hold / key.pwm_max)
            assert temp <= lim.heat_limit_k + 1e-6
            t_last = b.t_us
    # power budget: strike pulses [t, t + pulse) overlapping at once
    edges = sorted(
        [(c.t_us, 1) for c in cmds if c.op is Op.STRIKE]
        + [(c.t_us + c.pulse_us, -1) for c in cmds if c.op is Op.STRIKE]
    )
    active = 0
    for _, d in edges:  # ends (-1) sort before starts (+1) at the same instant
        active += d
        assert active <= spec.power.max_simultaneous_strikes
    # supply current while any pulse runs (unless the report owns up to overloads)
    if report.supply_overloads == 0:
        check_supply_current(spec, plan)
    # every note accounted for exactly once
    report.check()
    assert report.notes_in == len(score.notes)
    assert report.notes_in == report.notes_played + report.notes_altered + report.notes_dropped
    assert all(d["reason"] for d in report.drops)
    strikes = [c for c in cmds if c.op is Op.STRIKE]
    assert len({c.note for c in strikes}) == len(strikes)
    struck, released = strikes_of(plan), releases_of(plan)
    pipe = spec.timing.pipeline_delay_us
    for o in report.outcomes:
        note = score.notes[o.index]
        assert o.pitch_in == note.pitch and o.velocity_in == note.velocity
        assert o.intended_t_us == note.onset_us + pipe
        if o.fate is Fate.DROPPED:
            assert o.index not in struck
            continue
        c = struck[o.index]
        assert spec.key(o.pitch_out).channel == c.actuator
        assert (o.pitch_out - o.pitch_in) % 12 == 0
        # the strike leads the target by the curve's latency at the planned drive, or
        # for a re-strike e < R after the key's release, at the effective drive c·e/R
        # (raised to at least the wanted drive: within one count of it)
        before = [r.t_us for r in released.values() if r.actuator == c.actuator and r.t_us <= c.t_us]
        scale = min(1.0, (c.t_us - max(before)) / spec.timing.key_return_us) if before else 1.0
        if scale < 1.0:
            lead = o.target_t_us - c.t_us
            assert nominal_latency(spec, o.pitch_out, c.drive * scale) - 1 <= lead
            assert lead <= nominal_latency(spec, o.pitch_out, (c.drive - 1) * scale) + 1
        else:
            assert o.target_t_us == c.t_us + nominal_latency(spec, o.pitch_out, c.drive)
        assert o.target_t_us - o.intended_t_us == o.changes.get("onset_us", 0)
        # the key is held at least until its hammer reaches the string
        assert released[o.index].t_us >= o.target_t_us
        if o.fate is Fate.PLAYED:
            assert o.pitch_out == o.pitch_in and o.target_t_us == o.intended_t_us
    assert report.pedal_events_ignored == (len(score.pedal) if spec.pedal is None else 0)
    js = report.to_json()
    assert js["notes_in"] == report.notes_in and len(js["drops"]) == report.notes_dropped


notes_st = st.lists(
    st.tuples(
        st.integers(0, 127),  # pitch (some out of range)
        st.integers(0, 3 * S),  # onset
        st.one_of(st.integers(0, 2 * S), st.integers(0, 30 * S)),  # duration
        st.integers(1, 127),  # velocity
    ),
    max_size=40,
)
pedal_st = st.lists(st.tuples(st.integers(0, 4 * S), st.integers(0, 127)), max_size=6)


@settings(max_examples=80, deadline=None)
@given(notes=notes_st, pedal=pedal_st, spec_name=st.sampled_from(sorted(SPECS)))
@example(  # a softer re-strike of 107 -> 95 was released 6.6 ms before it sounded
    notes=[(0, 0, 0, 1), (13, 0, 0, 52), (31, 0, 0, 53), (60, 691, 0, 48), (30, 0, 0, 100),
           (95, 130928, 0, 86), (107, 21790, 0, 68), (2, 0, 0, 98)],
    pedal=[], spec_name="diy",
)  # fmt: skip
def test_random_scores_keep_every_limit(
    notes: list[tuple[int, int, int, int]], pedal: list[tuple[int, int]], spec_name: str
) -> None:
    spec = SPECS[spec_name]
    score = score_of(*notes, pedal=pedal)
    plan, report = plan_piano(score, spec)
    check_invariants(score, spec, plan, report)


@settings(max_examples=40, deadline=None)
@given(
    pitch=st.integers(40, 80),
    onsets=st.lists(st.integers(0, 400 * MS), min_size=1, max_size=12),
    velocity=st.integers(1, 127),
)
def test_dense_repeats_and_chords_keep_every_limit(
    pitch: int, onsets: list[int], velocity: int
) -> None:
    """Same key hammered and crowded chords: merges, shortening and stagger together."""
    notes = [(pitch, o, 150 * MS, velocity) for o in onsets]
    notes += [(pitch + 1 + k, o, 50 * MS, 127 - velocity // 2) for k, o in enumerate(onsets)]
    for spec in (GRAND, DIY):
        score = score_of(*notes)
        plan, report = plan_piano(score, spec)
        check_invariants(score, spec, plan, report)


# ---------------------------------------------------------------- focused


def test_plan_header_and_empty_score() -> None:
    plan, report = plan_piano(Score(), GRAND)
    assert len(plan) == 0 and report.notes_in == 0
    assert plan.pipeline_delay_us == GRAND.timing.pipeline_delay_us
    assert plan.spec_name == GRAND.name and plan.spec_hash == GRAND.spec_hash


def test_soft_note_is_struck_earlier_by_its_extra_latency() -> None:
    score = score_of((60, 1 * S, 500 * MS, 30), (72, 1 * S, 500 * MS, 120))
    plan, report = plan_piano(score, GRAND)
    assert [o.fate for o in report.outcomes] == [Fate.PLAYED, Fate.PLAYED]
    st_ = strikes_of(plan)
    soft, loud = st_[0], st_[1]
    assert soft.drive < loud.drive
    lat_soft = nominal_latency(GRAND, 60, soft.drive)
    lat_loud = nominal_latency(GRAND, 72, loud.drive)
    assert lat_soft > lat_loud + 30 * MS  # the curve makes soft notes much slower
    assert loud.t_us - soft.t_us == lat_soft - lat_loud
    target = 1 * S + GRAND.timing.pipeline_delay_us
    assert soft.t_us + lat_soft == target == loud.t_us + lat_loud
    # the planned loudness is what was asked, within one PWM step
    for o in report.outcomes:
        assert o.velocity_target == pytest.approx(o.velocity_in, abs=0.3)
    # releases land at the written end
    rel = releases_of(plan)
    assert rel[0].t_us == rel[1].t_us == target + 500 * MS


def test_velocity_outside_the_curve_is_clamped_and_reported() -> None:
    curve = Calibration.nominal(GRAND).curve(60)
    score = score_of((60, 0, 300 * MS, 3))
    plan, report = plan_piano(score, GRAND)
    o = report.outcomes[0]
    assert o.fate is Fate.ALTERED
    assert o.velocity_target == pytest.approx(curve.min_velocity, abs=0.3)
    assert o.changes["velocity"] == pytest.approx(curve.min_velocity - 3, abs=0.3)
    assert "velocity 3" in (o.reason or "")


@pytest.mark.parametrize(
    ("pitch", "shift"), [(120, -12), (109, -12), (10, 12), (0, 24), (127, -24)]
)
def test_out_of_range_is_transposed_by_octaves(pitch: int, shift: int) -> None:
    plan, report = plan_piano(score_of((pitch, 0, 200 * MS, 80)), GRAND)
    o = report.outcomes[0]
    assert o.fate is Fate.ALTERED and o.pitch_out == pitch + shift
    assert o.changes == {"pitch": shift}
    assert f"transposed {shift:+d}" in (o.reason or "")
    assert strikes_of(plan)[0].actuator == GRAND.key(pitch + shift).channel


def test_out_of_range_drop_policy_names_the_note() -> None:
    score = score_of((120, 0, 200 * MS, 80), (15, 0, 200 * MS, 80), (60, 0, 200 * MS, 80))
    plan, report = plan_piano(score, GRAND, options=PlanOptions(out_of_range="drop"))
    assert report.notes_dropped == 2 and report.notes_played == 1
    assert {d["reason"] for d in report.drops} == {
        "out of range: C9 (108 is the highest key)",
        "out of range: D#0 (21 is the lowest key)",
    }
    assert len([c for c in plan if c.op is Op.STRIKE]) == 1


def test_repeats_too_fast_are_merged_and_reported() -> None:
    # Four strikes 30 ms apart on one key: all within the 110 ms repeat gap of the first
    # (the rule without re-strikes on a partly returned key: tests/test_repetition.py).
    score = score_of(*[(60, k * 30 * MS, 40 * MS, 80) for k in range(4)])
    old = PlanOptions(restrike=False)
    plan, report = plan_piano(score, GRAND, options=old)
    fates = [o.fate for o in report.outcomes]
    assert fates == [Fate.ALTERED, Fate.DROPPED, Fate.DROPPED, Fate.DROPPED]
    lim = Limits.from_spec(GRAND, old)
    lat = nominal_latency(GRAND, 60, strikes_of(plan)[0].drive)
    need = lim.repeat_need_us(lat, 40 * MS)
    assert need == max(GRAND.timing.min_repeat_us, lat + 30 * MS + 75 * MS)
    assert [d["reason"] for d in report.drops] == [
        f"merged: repeat too fast ({gap:.1f} ms < {need / 1000:.1f} ms)" for gap in (30, 60, 90)
    ]
    # the first note is held through the merged ones: to the last note's end
    first = report.outcomes[0]
    assert first.changes == {"duration_us": 3 * 30 * MS}
    rel = releases_of(plan)[0]
    assert rel.t_us == GRAND.timing.pipeline_delay_us + 3 * 30 * MS + 40 * MS
    # slower than the repeat gap: both play
    score2 = score_of((60, 0, 40 * MS, 80), (60, need, 40 * MS, 80))
    _, report2 = plan_piano(score2, GRAND, options=old)
    assert [o.fate for o in report2.outcomes] == [Fate.ALTERED, Fate.PLAYED]
    assert report2.outcomes[0].changes == {"duration_us": -10 * MS}  # keeps 30 ms of sound
    assert len(plan) == 2


def test_legato_repeat_shortens_the_previous_note() -> None:
    # Two notes 300 ms apart, the first written 300 ms long (legato): its release must
    # come key_return + margin before the second strike.
    score = score_of((60, 0, 300 * MS, 80), (60, 300 * MS, 200 * MS, 80))
    plan, report = plan_piano(score, GRAND)
    a, b = report.outcomes
    assert b.fate is Fate.PLAYED
    assert a.fate is Fate.ALTERED and set(a.changes) == {"duration_us"}
    st_, rel = strikes_of(plan), releases_of(plan)
    lim = Limits.from_spec(GRAND, PlanOptions())
    assert rel[0].t_us == st_[1].t_us - GRAND.timing.key_return_us - lim.release_margin_us
    assert a.changes["duration_us"] == rel[0].t_us - (GRAND.timing.pipeline_delay_us + 300 * MS)
    assert "shortened for the repeat" in (a.reason or "")


def test_measured_return_time_of_a_key_sets_its_repeat_release() -> None:
    # A calibration that measured a slow key (88 ms return) makes the planner release
    # that key earlier before a repeat than the spec's nominal 70 ms would.
    score = score_of((60, 0, 300 * MS, 80), (60, 300 * MS, 200 * MS, 80))
    cal = Calibration.nominal(GRAND)
    cal.measured = True
    cal.keys[60] = dataclasses.replace(cal.keys[60], return_us=88_000.0)
    plan, report = plan_piano(score, GRAND, cal)
    st_, rel = strikes_of(plan), releases_of(plan)
    lim = Limits.from_spec(GRAND, PlanOptions())
    assert rel[0].t_us == st_[1].t_us - 88_000 - lim.release_margin_us
    plan_nom, _ = plan_piano(score, GRAND)
    assert releases_of(plan_nom)[0].t_us - rel[0].t_us == 88_000 - GRAND.timing.key_return_us


def test_collisions_after_transposition_use_the_repeat_rules() -> None:
    # 120 -> 108 collides with a written 108 at the same time: one merges.
    score = score_of((108, 0, 200 * MS, 80), (120, 0, 200 * MS, 80))
    plan, report = plan_piano(score, GRAND)
    assert report.notes_dropped == 1
    assert report.drops[0]["reason"].startswith("merged: unison with note")
    check_invariants(score, GRAND, plan, report)


def test_twelve_note_chord_on_a_budget_of_eight_is_minimally_staggered() -> None:
    pitches = [48 + 2 * k for k in range(12)]
    score = score_of(*[(p, 1 * S, 500 * MS, 90) for p in pitches])
    plan, report = plan_piano(score, GRAND)
    assert GRAND.power.max_simultaneous_strikes == 8
    pulse = GRAND.strike.default_pulse_us
    shifts = sorted(o.changes.get("onset_us", 0) for o in report.outcomes)
    # same velocity -> same latency -> 8 strike together, 4 wait exactly one pulse
    assert shifts == [0] * 8 + [pulse] * 4
    assert report.staggered_chords == 1 and report.max_stagger_us == pulse
    for o in report.outcomes:
        if o.changes:
            assert o.fate is Fate.ALTERED and set(o.changes) == {"onset_us"}
            assert "staggered" in (o.reason or "")
    check_invariants(score, GRAND, plan, report)


def test_stagger_waits_only_for_the_first_free_slot() -> None:
    # Mixed velocities: strikes spread out, so a waiting strike takes the earliest slot.
    pitches = [40 + 3 * k for k in range(12)]
    vels = [20 + 9 * k for k in range(12)]
    score = score_of(*[(p, 1 * S, 500 * MS, v) for p, v in zip(pitches, vels, strict=True)])
    plan, report = plan_piano(score, GRAND)
    pulse = GRAND.strike.default_pulse_us
    starts = sorted(c.t_us for c in plan if c.op is Op.STRIKE)
    by_note = strikes_of(plan)
    for o in report.outcomes:
        shift = o.changes.get("onset_us", 0)
        if not shift:
            continue
        t = by_note[o.index].t_us
        # minimal: one µs earlier, the budget was full
        busy = sum(1 for s in starts if s != t and s <= t - 1 < s + pulse)
        assert busy >= GRAND.power.max_simultaneous_strikes
    check_invariants(score, GRAND, plan, report)


def test_strike_waits_for_supply_current_held_keys_use() -> None:
    # DIY: 15 A supply, 3 A per coil at full drive, ~1.05 A per held key.
    held = [(40 + k, 0, 5 * S, 100) for k in range(6)]
    chord = [(60 + 2 * k, 1 * S, 300 * MS, 127) for k in range(4)]
    score = score_of(*held, *chord)
    plan, report = plan_piano(score, DIY)
    shifts = sorted(report.outcomes[i].changes.get("onset_us", 0) for i in range(6, 10))
    # 6 holds (6.3 A) + 3 loud pulses (7.5 A) fit, the 4th waits for the first pulses to end
    assert shifts == [0, 0, 0, DIY.strike.default_pulse_us]
    assert report.supply_overloads == 0
    check_invariants(score, DIY, plan, report)
    # the same chord alone strikes at once (4 strikes are the DIY count budget)
    plan2, report2 = plan_piano(score_of(*chord), DIY)
    assert report2.notes_played == 4


def test_supply_overload_is_reported_when_waiting_cannot_help() -> None:
    # Keys held for a long time: from the 13th on, holds alone leave no room for a pulse.
    score = score_of(*[(40 + k, k * 200 * MS, 10 * S, 127) for k in range(15)])
    plan, report = plan_piano(score, DIY)
    assert report.supply_overloads == 3
    assert report.to_json()["supply_overloads"] == 3
    over = [o for o in report.outcomes if "supply overload" in (o.reason or "")]
    assert [o.index for o in over] == [12, 13, 14]
    check_invariants(score, DIY, plan, report)


def test_long_note_under_score_pedal_is_carried() -> None:
    score = score_of((60, 0, 15 * S, 80), pedal=[(9 * S, 127), (16 * S, 0)])
    short = dataclasses.replace(GRAND, thermal=dataclasses.replace(GRAND.thermal, max_on_us=10 * S))
    plan, report = plan_piano(score, short)
    o = report.outcomes[0]
    assert o.fate is Fate.PLAYED and o.reason == "carried by pedal"
    st_, rel = strikes_of(plan)[0], releases_of(plan)[0]
    assert rel.t_us - st_.t_us == short.thermal.max_on_us
    # only the score's press: pull-in, hold, off
    assert len([c for c in plan if c.actuator == PEDAL_CH]) == 3 and not report.pedal_changes
    assert report.pedal_carried == 1


def test_score_pedal_longer_than_the_on_time_is_changed_at_a_new_note() -> None:
    # The score holds the pedal 31 s, past the coil's 20 s: it is lifted where the
    # dampers land as the note at 15 s sounds (the latest onset in the second half of
    # the allowed 20 s) and pressed again 100 ms later. The 30 s note's key is still
    # down at the lift (it lets go at its own 20 s limit), so it rings through it and the
    # second press carries it to its end.
    score = score_of((60, 0, 30 * S, 80), (64, 15 * S, 1 * S, 80), (67, 4 * S, 1 * S, 80),
                     pedal=[(0, 127), (31 * S, 0)])  # fmt: skip
    plan, report = plan_piano(score, GRAND)
    assert GRAND.pedal is not None
    lat, ch = GRAND.pedal.latency_us, GRAND.pedal.channel
    sets = [c for c in plan if c.actuator == PEDAL_CH]
    offs = [c.t_us for c in sets if c.drive == 0]
    fulls = [c.t_us for c in sets if c.drive == GRAND.pedal.pwm_max]
    assert len(fulls) == len(offs) == 2
    sounded = {o.pitch_in: o.target_t_us for o in report.outcomes}
    assert offs[0] + lat == sounded[64]  # the dampers land as the note at 15 s sounds
    assert fulls[1] - offs[0] == REPRESS_GAP_US
    assert all(b - a <= GRAND.actuators[ch].max_on_us for a, b in zip(fulls, offs, strict=True))
    assert [c["change"] for c in report.pedal_changes] == ["lifted early", "pressed again"]
    assert all("on-time" in str(c["reason"]) for c in report.pedal_changes)
    o = next(o for o in report.outcomes if o.pitch_in == 60)
    assert o.fate is Fate.PLAYED and o.reason == "carried by pedal"
    rel = releases_of(plan)[o.index]
    assert fulls[1] + lat < rel.t_us < offs[1] + lat  # let go under the second press
    check_invariants(score, GRAND, plan, report)


def test_long_note_without_score_pedal_is_carried_by_an_added_press() -> None:
    score = score_of((60, 0, 30 * S, 80))
    plan, report = plan_piano(score, GRAND)
    o = report.outcomes[0]
    assert o.fate is Fate.PLAYED and o.reason == "carried by pedal"
    pedals = [c for c in plan if c.actuator == PEDAL_CH]
    assert GRAND.pedal is not None
    hold = GRAND.actuators[GRAND.pedal.channel].hold_counts
    assert [c.drive for c in pedals] == [GRAND.pedal.pwm_max, hold, 0]  # pull-in, hold, off
    assert pedals[1].t_us - pedals[0].t_us == pull_in_us(GRAND)
    rel = releases_of(plan)[0]
    lat = GRAND.pedal.latency_us if GRAND.pedal else 0
    assert pedals[0].t_us + lat < rel.t_us  # dampers up before the key lets go
    assert pedals[2].t_us + lat == GRAND.timing.pipeline_delay_us + 30 * S
    check_invariants(score, GRAND, plan, report)


def test_long_note_is_shortened_when_the_pedal_would_change_other_notes() -> None:
    # A short note released while the carrying pedal would be down: no carry.
    score = score_of((60, 0, 30 * S, 80), (64, 20 * S, 1 * S, 80))
    plan, report = plan_piano(score, GRAND)
    o = report.outcomes[0]
    assert o.fate is Fate.ALTERED
    pipe = GRAND.timing.pipeline_delay_us
    rel = releases_of(plan)[0]
    assert o.changes == {"duration_us": rel.t_us - (pipe + 30 * S)}
    assert o.changes["duration_us"] < -9 * S
    assert "coil on-time limit" in (o.reason or "")
    assert not [c for c in plan if c.actuator == PEDAL_CH]
    assert report.outcomes[1].fate is Fate.PLAYED


@pytest.mark.parametrize("spec_name", ["grand-no-carry", "diy"])
def test_long_note_is_shortened_without_pedal_carry(spec_name: str) -> None:
    spec = DIY if spec_name == "diy" else GRAND
    opts = PlanOptions(pedal_carry=spec_name != "grand-no-carry")
    score = score_of((60, 0, 30 * S, 80))
    plan, report = plan_piano(score, spec, options=opts)
    o = report.outcomes[0]
    assert o.fate is Fate.ALTERED
    st_, rel = strikes_of(plan)[0], releases_of(plan)[0]
    assert rel.t_us - st_.t_us == spec.thermal.max_on_us
    assert o.changes["duration_us"] == rel.t_us - (spec.timing.pipeline_delay_us + 30 * S)
    assert not [c for c in plan if c.actuator == PEDAL_CH]


def test_pedal_events_become_commands_ahead_by_the_pedal_latency() -> None:
    # CC64 >= 64 is down (a press: pull-in at full, then the hold), below is up; a
    # second "down" value while down changes nothing (the solenoid has no half pedal)
    score = score_of((60, 0, 1 * S, 80), pedal=[(100 * MS, 127), (900 * MS, 64), (2 * S, 30)])
    plan, report = plan_piano(score, GRAND)
    pedals = [c for c in plan if c.actuator == PEDAL_CH]
    assert GRAND.pedal is not None
    pipe, lat = GRAND.timing.pipeline_delay_us, GRAND.pedal.latency_us
    pm = GRAND.pedal.pwm_max
    hold = round(GRAND.pedal.hold_duty * pm)
    assert pull_in_us(GRAND) == min(GRAND.pedal.latency_us, GRAND.strike.max_pulse_us) == 40 * MS
    assert [(c.t_us, c.drive) for c in pedals] == [
        (100 * MS + pipe - lat, pm),
        (100 * MS + pipe - lat + 40 * MS, hold),
        (2 * S + pipe - lat, 0),
    ]
    assert all(c.actuator == GRAND.pedal.channel for c in pedals)
    # a calibrated pedal latency wins over the spec's
    cal = Calibration.nominal(GRAND)
    cal.pedal_latency_us = 31_000
    plan2, _ = plan_piano(score, GRAND, cal)
    assert [c.t_us for c in plan2 if c.actuator == PEDAL_CH][0] == 100 * MS + pipe - 31_000
    # the spec's pull_in_us, where given
    longer = dataclasses.replace(GRAND, pedal=dataclasses.replace(GRAND.pedal, pull_in_us=25 * MS))
    plan3, _ = plan_piano(score, longer)
    ts = [c.t_us for c in plan3 if c.actuator == PEDAL_CH]
    assert ts[1] - ts[0] == 25 * MS


def test_pedal_events_on_a_spec_without_pedal_are_counted_and_ignored() -> None:
    score = score_of((60, 0, 1 * S, 80), pedal=[(0, 127), (500 * MS, 0), (600 * MS, 127)])
    plan, report = plan_piano(score, DIY)
    assert report.pedal_events_ignored == 3
    assert report.to_json()["pedal_events_ignored"] == 3
    assert not [c for c in plan if c.actuator == PEDAL_CH]
    assert report.outcomes[0].fate is Fate.PLAYED  # written duration kept
    rel = releases_of(plan)[0]
    assert rel.t_us == DIY.timing.pipeline_delay_us + 1 * S


def _scaled_calibration(spec: PianoSpec, pitch: int, gain: float, lat_scale: float) -> Calibration:
    cal = Calibration.nominal(spec)
    c = cal.keys[pitch]
    cal.keys[pitch] = KeyCurve(
        pitch,
        c.threshold,
        c.drive,
        tuple(v * gain for v in c.velocity),
        tuple(x * lat_scale for x in c.latency_us),
        strikes=10,
    )
    cal.measured = True
    return cal


def test_calibration_curves_change_drive_and_timing_as_they_say() -> None:
    score = score_of((60, 0, 500 * MS, 70), (62, 0, 500 * MS, 70))
    plan_n, rep_n = plan_piano(score, GRAND)
    cal = _scaled_calibration(GRAND, 60, gain=0.8, lat_scale=1.5)  # key 60: weaker, slower
    plan_c, rep_c = plan_piano(score, GRAND, cal)
    sn, sc = strikes_of(plan_n), strikes_of(plan_c)
    # the untouched key plans identically
    assert sn[1] == sc[1]
    # the weaker key needs more drive for the same loudness ...
    curve = cal.curve(60)
    pwm = GRAND.key(60).pwm_max
    assert sc[0].drive > sn[0].drive
    assert sc[0].drive == round(curve.drive_for_velocity(70) * pwm)
    # ... and is struck earlier by its own (slower) latency at that drive
    lat_c = round(curve.latency_at(sc[0].drive / pwm))
    assert sc[0].t_us == GRAND.timing.pipeline_delay_us - lat_c
    assert sc[0].t_us != sn[0].t_us
    assert rep_c.calibrated and not rep_n.calibrated
    assert rep_c.outcomes[0].fate is Fate.PLAYED


def test_too_soft_for_the_pipeline_raises_the_drive() -> None:
    # A key so slow that its softest strikes would land after the pipeline delay.
    cal = _scaled_calibration(GRAND, 60, gain=1.0, lat_scale=2.0)
    pipe = GRAND.timing.pipeline_delay_us
    score = score_of((60, 0, 500 * MS, 20))
    plan, report = plan_piano(score, GRAND, cal)
    o = report.outcomes[0]
    assert o.fate is Fate.ALTERED and o.changes["velocity"] > 0
    c = strikes_of(plan)[0]
    lat = cal.curve(60).latency_at(c.drive / GRAND.key(60).pwm_max)
    assert lat <= pipe
    assert cal.curve(60).latency_at((c.drive - 1) / GRAND.key(60).pwm_max) > pipe  # just enough
    assert c.t_us == pipe - round(lat) >= 0


def test_calibration_for_another_spec_is_refused() -> None:
    cal = Calibration.nominal(DIY)
    with pytest.raises(CalibrationError, match="piano-61-diy"):
        plan_piano(score_of((60, 0, 100 * MS, 80)), GRAND, cal)


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="out_of_range"):
        PlanOptions(out_of_range="wrap")
    with pytest.raises(UsageError, match="thermal_margin"):
        PlanOptions(thermal_margin=1.5)


def _hot_spec() -> PianoSpec:
    """The grand with coils that heat 20x faster: the heat limit binds within seconds."""
    th = dataclasses.replace(GRAND.thermal, coil_heat_capacity_j_per_k=1.25)
    return dataclasses.replace(GRAND, thermal=th)


def test_heat_limit_shortens_holds_and_drops_strikes() -> None:
    spec = _hot_spec()
    # loud notes on one key, 150 ms apart, each held to the next: heat builds up
    score = score_of(*[(60, k * 150 * MS, 150 * MS, 127) for k in range(80)])
    plan, report = plan_piano(score, spec)
    reasons = [o.reason or "" for o in report.outcomes]
    assert any(r.startswith("coil heat") for r in reasons)
    assert report.notes_dropped > 0
    check_invariants(score, spec, plan, report)


def test_heat_limit_cuts_a_long_hold() -> None:
    th = dataclasses.replace(GRAND.thermal, coil_heat_capacity_j_per_k=0.5)
    spec = dataclasses.replace(GRAND, thermal=th)
    plan, report = plan_piano(score_of((60, 0, 10 * S, 127)), spec)
    o = report.outcomes[0]
    assert o.fate in (Fate.ALTERED, Fate.PLAYED)
    rel, st_ = releases_of(plan)[0], strikes_of(plan)[0]
    assert rel.t_us - st_.t_us < 10 * S
    assert "coil heat limit" in (o.reason or "") or o.reason == "carried by pedal"
    check_invariants(score_of((60, 0, 10 * S, 127)), spec, plan, report)


def test_plan_is_deterministic_and_sorted_like_plan_sort() -> None:
    score = score_of(
        *[(40 + (k * 7) % 50, (k // 3) * 90 * MS, 400 * MS, 10 + k % 110) for k in range(90)]
    )
    plan1, rep1 = plan_piano(score, GRAND)
    plan2, rep2 = plan_piano(score, GRAND)
    assert plan1.commands == plan2.commands
    assert rep1.to_json(outcomes=True) == rep2.to_json(outcomes=True)
    resorted = Plan(commands=list(plan1.commands))
    resorted.sort()
    assert resorted.commands == plan1.commands


# ---------------------------------------------------------------- Playability


def test_playability_basic_rules() -> None:
    pb = Playability(GRAND)
    assert pb.in_range(21) and pb.in_range(108) and not pb.in_range(109)
    assert pb.can_strike(60, 0, 80)
    pb.strike(60, 0, 80)
    assert pb.is_held(60)
    assert not pb.can_strike(60, 500 * MS, 80)  # never released
    assert pb.min_hold_end(60) < pb.max_hold_end(60)
    assert pb.max_hold_end(60) <= pb.strike_time_us(60, 0, 80) + GRAND.thermal.max_on_us
    pb.release(60, 100 * MS)
    assert not pb.can_strike(60, 150 * MS, 80)  # key still returning
    assert "released too late" in (pb.why_not(60, 150 * MS, 80) or "")
    assert pb.can_strike(60, 300 * MS, 80)
    with pytest.raises(PlanError):
        pb.strike(60, 150 * MS, 80)
    with pytest.raises(PlanError):
        pb.release(61, 0)
    # power budget: 8 strikes at one instant, the 9th is refused
    for k in range(8):
        pb.strike(30 + k, 2 * S, 90)
    assert not pb.can_strike(50, 2 * S, 90)
    assert "power budget" in (pb.why_not(50, 2 * S, 90) or "")
    assert not pb.can_strike(62, 1 * S, 80)  # onsets come in time order
    pb.reset()
    assert pb.can_strike(60, 0, 80)  # reset forgets the time order too
    assert pb.can_strike(50, 2 * S, 90)
    # velocities the key cannot play as written are refused
    lo, hi = pb.velocity_range(60)
    assert not pb.can_strike(60, 0, int(lo) - 1) and not pb.can_strike(61, 0, int(hi) + 1)
    assert pb.why_not(200, 0) == "out of range: G#15 (21..108)"


def test_playability_counts_supply_current() -> None:
    pb = Playability(DIY)
    for k in range(6):  # six held keys, ~1.05 A each (DIY strikes 4 at a time)
        pb.strike(40 + k, k * 100 * MS, 100)
    for k in range(3):  # three loud strikes, ~2.5 A each
        pb.strike(60 + 2 * k, 1 * S, 127)
    assert "supply current" in (pb.why_not(70, 1 * S, 127) or "")
    assert pb.can_strike(70, 1 * S, 30)  # a soft strike draws less


@st.composite
def playable_sequences(draw: st.DrawFn, spec: PianoSpec) -> list[tuple[int, int, int, int]]:
    """Candidate notes in onset order, kept only when Playability accepts them."""
    pb = Playability(spec)
    out: list[tuple[int, int, int, int]] = []
    t = 0
    held: dict[int, tuple[int, int, int, int]] = {}
    n = draw(st.integers(0, 40))
    for _ in range(n):
        t += draw(st.sampled_from([0, 0, 10 * MS, 60 * MS, 150 * MS]))
        pitch = draw(st.integers(spec.lowest - 3, spec.highest + 3))
        vel = draw(st.integers(1, 127))
        # finish notes whose key would be needed, as a decoder emits note-offs
        if pitch in held:
            p, o, _, v = held.pop(pitch)
            end = min(max(t - 80 * MS, pb.min_hold_end(p)), pb.max_hold_end(p))
            pb.release(p, end)
            out.append((p, o, end - o, v))
        if pb.can_strike(pitch, t, vel):
            pb.strike(pitch, t, vel)
            held[pitch] = (pitch, t, 0, vel)
    for p, o, _, v in held.values():
        want = o + draw(st.integers(0, 25 * S))
        end = min(max(want, pb.min_hold_end(p)), pb.max_hold_end(p))
        pb.release(p, end)
        out.append((p, o, end - o, v))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), spec_name=st.sampled_from(sorted(SPECS)))
def test_sequences_accepted_by_playability_plan_unaltered(
    data: st.DataObject, spec_name: str
) -> None:
    spec = SPECS[spec_name]
    notes = data.draw(playable_sequences(spec))
    score = score_of(*notes)
    plan, report = plan_piano(score, spec)
    assert report.notes_altered == 0 and report.notes_dropped == 0, report.to_json()
    assert report.notes_played == len(notes)
    check_invariants(score, spec, plan, report)


def test_report_json_is_serialisable_and_complete() -> None:
    import json

    score = score_of((60, 0, 100 * MS, 80), (60, 10 * MS, 100 * MS, 80), (120, 0, 100 * MS, 3))
    _, report = plan_piano(score, GRAND)
    js = json.loads(json.dumps(report.to_json(outcomes=True)))
    for key in (
        "notes_in", "notes_played", "notes_altered", "notes_dropped", "drops", "alterations",
        "staggered_chords", "max_stagger_us", "pedal_events_ignored", "supply_overloads",
    ):  # fmt: skip
        assert key in js
    assert js["notes_in"] == 3 and len(js["outcomes"]) == 3
    # by (onset, pitch); the merged repeat extends note 0
    assert [o["fate"] for o in js["outcomes"]] == [
        "altered",
        "altered",
        "dropped",
    ]  # by (onset, pitch)
    assert js["alterations"][-1]["changes"]["pitch"] == -12
    assert "outcomes" not in report.to_json()


# -- one entry point, chosen by family ---------------------------------------------------


def test_the_entry_point_picks_the_piano_planner_by_family() -> None:
    score = score_of((60, 0, 1 * S, 80), (64, 100 * MS, 1 * S, 50), pedal=[(0, 127), (S, 0)])
    for spec in (GRAND, DIY):
        assert spec.family == "piano"
        p1, r1 = plan(score, spec)
        p2, r2 = plan_piano(score, spec)
        assert p1.commands == p2.commands and r1.to_json() == r2.to_json()
    opts = PlanOptions(out_of_range="drop")
    assert plan(score_of((10, 0, S, 80)), GRAND, None, opts)[1].notes_dropped == 1
    assert isinstance(playability(GRAND), Playability)


class _Guitar:
    """A spec of a family without a planner yet."""

    name = "harp-47"
    family = "harp"


def test_a_family_without_a_planner_is_refused() -> None:
    with pytest.raises(PlanError, match=r"spec 'harp-47': no planner for instrument family "
                                        r"'harp' \(allowed: piano \| guitar \| bass\)"):
        plan(score_of((60, 0, S, 80)), _Guitar())  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="no playability oracle for instrument family 'harp'"):
        playability(_Guitar())  # type: ignore[arg-type]


# -- the shared rules, as functions of the actuator map ----------------------------------


def test_rules_read_the_actuator_map_and_agree_with_the_limits() -> None:
    from robo_player.driver.stream import duty_permille as stream_duty
    from robo_player.planner import rules

    for spec in (GRAND, DIY):
        amap = spec.actuators
        key = amap[spec.key(60).channel]
        p, th = spec.power, spec.thermal
        assert rules.amps(key, key.pwm_max) == pytest.approx(p.supply_v / p.coil_ohm)
        assert rules.amps(key, 0) == 0.0
        assert rules.duty_permille(key) == stream_duty(spec)
        assert rules.duty_window_ms(key) == math.floor(rules.duty_window_limit_ms(key))
        assert rules.duty_window_ms(key) < th.coil_tau_s * 1000
        assert rules.fits_concurrency(amap, p.max_simultaneous_strikes)
        assert not rules.fits_concurrency(amap, p.max_simultaneous_strikes + 1)
        assert rules.fits_supply(amap, p.supply_a) and not rules.fits_supply(amap, p.supply_a + 0.01)
        assert rules.supply_limit_a(amap, 0.1) == pytest.approx(0.9 * p.supply_a)
        assert rules.fits_supply(amap, 0.9 * p.supply_a, margin=0.1)
        assert not rules.fits_supply(amap, 0.9 * p.supply_a + 0.01, margin=0.1)
        assert rules.on_time_ok(key, th.max_on_us) and not rules.on_time_ok(key, th.max_on_us + 1)
        assert rules.pulse_ok(key, spec.strike.max_pulse_us)
        assert not rules.pulse_ok(key, spec.strike.max_pulse_us + 1)
        lim = Limits.from_spec(spec, PlanOptions(thermal_margin=0.2))
        assert lim.heat_limit_k == rules.heat_limit_k(key, 0.2) == 0.8 * th.coil_max_rise_k
        assert lim.rate(0.35) == rules.heat_rate(key, 0.35)
        assert lim.coil_a == key.full_a and lim.supply_a == amap.supply_a
        assert rules.steady_rise_k(key, 1.0) == pytest.approx(
            p.supply_v**2 / p.coil_ohm / th.coil_heat_capacity_j_per_k * th.coil_tau_s
        )
    # the pedal has its own supply; unknown indices count nothing
    assert GRAND.pedal is not None
    ped = GRAND.pedal.channel
    k0, k1 = GRAND.key(60).channel, GRAND.key(61).channel
    full = GRAND.power.supply_v / GRAND.power.coil_ohm
    got = rules.supply_amps(GRAND.actuators, {k0: 4095, k1: 1433, ped: 4095, 500: 4095})
    assert got == pytest.approx(full + 1433 / 4095 * full)


def test_coil_heat_state_follows_the_exact_solution() -> None:
    from robo_player.planner import rules

    amap = GRAND.actuators
    ch = GRAND.key(60).channel
    act = amap[ch]
    tau_us = act.tau_s * 1e6
    heat = rules.CoilHeat(amap, margin=0.1)
    assert heat.temp_at(ch, 5_000) == 0.0
    t1 = heat.run(ch, 0, 35_000, act.pwm_max)
    assert t1 == pytest.approx(rules.heat_after(0.0, 35_000, act.heat_k_per_s, tau_us))
    t2 = heat.run(ch, 35_000, 2_035_000, act.hold_counts)
    rate = rules.heat_rate(act, act.hold_counts / act.pwm_max)
    assert t2 == pytest.approx(rules.heat_after(t1, 2_000_000, rate, tau_us))
    assert heat.temp_at(ch, 3_035_000) == pytest.approx(rules.heat_after(t2, 1e6, 0.0, tau_us))
    assert heat.limit_k(ch) == pytest.approx(0.9 * act.max_rise_k)
    assert heat.time_to_limit_us(ch, 2_035_000, act.hold_counts) is None  # hold is sustainable
    left = heat.time_to_limit_us(ch, 2_035_000, act.pwm_max)
    assert left is not None and left > 0
    heat.run(ch, 2_035_000, 2_035_000 + left + 1, act.pwm_max)
    assert heat.over(ch, 2_035_000 + left + 1)
    with pytest.raises(KeyError):
        heat.run(999, 0, 1, 1)


def test_firmware_configuration_carries_the_actuator_maps_numbers() -> None:
    """The driver configures the firmware's limits from the same numbers as the rules."""
    from robo_player.driver.stream import configure_messages
    from robo_player.planner import rules

    for spec in (GRAND, DIY):
        amap = spec.actuators
        msgs = configure_messages(spec, watchdog_ms=500, time_shift=0, level_shift=0)
        begin = msgs[0].as_dict()
        assert begin["actuator_count"] == amap.count
        assert begin["max_concurrent"] == min(amap.max_concurrent, amap.count)
        first = amap.entries[0]
        assert begin["duty_window_ms"] == rules.duty_window_ms(first)
        for m in msgs[1:]:
            d = m.as_dict()
            act = amap.get(d["actuator"])
            if act is None:  # a slot no actuator uses
                continue
            assert d["out_channel"] == act.output
            assert d["pwm_max"] == d["max_drive"] == act.pwm_max
            assert d["max_on_us"] == act.max_on_us
            assert d["max_pulse_us"] == act.max_pulse_us
            assert d["duty_permille"] == rules.duty_permille(act)


def test_a_curve_with_a_flat_top_gives_the_least_drive_for_its_top_velocity() -> None:
    # a fitted curve's velocity is non-decreasing: an isotonic fit can end flat (a fixed
    # take's fit, truth seed 2); before session 26 `drive_for_velocity` at the top divided by zero
    c = KeyCurve(pitch=60, threshold=0.2, drive=(0.3, 0.6, 0.8, 1.0), velocity=(20.0, 70.0, 95.0, 95.0),
                 latency_us=(30_000.0, 20_000.0, 16_000.0, 15_000.0))  # fmt: skip
    assert c.drive_for_velocity(95.0) == 0.8 and c.drive_for_velocity(120.0) == 0.8
    assert c.drive_for_velocity(82.5) == pytest.approx(0.7)
    flat = KeyCurve(pitch=60, threshold=0.2, drive=(0.3, 0.6, 1.0), velocity=(20.0, 20.0, 90.0),
                    latency_us=(30_000.0, 20_000.0, 15_000.0))  # fmt: skip
    assert flat.drive_for_velocity(20.0) == 0.3 and flat.drive_for_velocity(5.0) == 0.3

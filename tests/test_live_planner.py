"""The live planner, message by message in virtual time (no device, no wall clock)."""

from __future__ import annotations

import pytest

from robo_player.errors import UsageError
from robo_player.live import LatencyMode, LiveOptions, LivePlanner
from robo_player.plan import Command, Op
from robo_player.planner import Playability
from robo_player.spec import load_spec
from robo_player.spec.model import PianoSpec

MS = 1000


@pytest.fixture(scope="module")
def spec() -> PianoSpec:
    return load_spec("piano-61-diy")


@pytest.fixture(scope="module")
def grand() -> PianoSpec:
    return load_spec("piano-88-grand")  # it has a pedal


def planner(spec: PianoSpec, **kw: object) -> LivePlanner:
    return LivePlanner(spec, None, LiveOptions(**kw))  # type: ignore[arg-type]


def strikes(cmds: list[Command]) -> list[Command]:
    return [c for c in cmds if c.op is Op.PULSE_HOLD]


def test_fixed_d_is_the_slowest_latency_in_use_plus_lead_and_margin(spec: PianoSpec) -> None:
    oracle = Playability(spec)
    slowest = max(oracle.drive(k.pitch, 64).latency_us for k in spec.keys)
    p = planner(spec, min_velocity=64, lead_us=3 * MS, margin_us=2 * MS)
    assert p.slowest_us >= slowest
    assert p.latency_us == p.slowest_us + 5 * MS
    # softer velocities in use: a longer D
    assert planner(spec, min_velocity=20).latency_us > p.latency_us
    assert planner(spec, latency_us=80 * MS).latency_us == 80 * MS


def test_fixed_mode_strikes_so_every_velocity_sounds_d_after_its_message(spec: PianoSpec) -> None:
    p = planner(spec, min_velocity=30)
    oracle = Playability(spec)
    t = 0
    for i, v in enumerate((30, 50, 70, 90, 110, 127)):
        t = i * 300 * MS
        pitch = 48 + 2 * i
        assert p.note_on(t, pitch, v) == "on_time"
        (s,) = strikes(p.due(t + p.latency_us))
        assert s.t_us + oracle.drive(pitch, v).latency_us == t + p.latency_us
    assert p.stats.outcomes == {"on_time": 6}


def test_fixed_mode_a_note_that_cannot_make_d_plays_at_once_and_is_late(spec: PianoSpec) -> None:
    p = planner(spec, latency_us=40 * MS, lead_us=3 * MS)
    assert p.note_on(10 * MS, 60, 20) == "late"  # a soft note is slower than 40 ms
    (s,) = strikes(p.due(10 * MS))
    assert s.t_us == 13 * MS  # as early as possible: the lead
    assert p.stats.outcomes == {"late": 1}


def test_lowest_mode_loud_notes_sound_sooner(spec: PianoSpec) -> None:
    p = planner(spec, mode=LatencyMode.LOWEST)
    p.note_on(0, 60, 30)
    p.note_on(0, 64, 120)
    soft, loud = p.stats.delays_us
    assert loud < soft - 20 * MS
    cmds = strikes(p.due(0))
    assert [c.t_us for c in cmds] == [3 * MS, 3 * MS]  # both struck at once: lead only


def test_note_off_while_the_strike_is_in_flight_keeps_the_pulse(spec: PianoSpec) -> None:
    p = planner(spec, min_velocity=30)
    p.note_on(0, 60, 100)
    p.note_off(1 * MS, 60)  # before the strike was even sent
    cmds = p.due(10**7)
    (s,) = strikes(cmds)
    (r,) = [c for c in cmds if c.op is Op.RELEASE]
    assert p.stats.offs_in_flight == 1
    assert r.t_us >= s.t_us + s.pulse_us  # the pulse is never cut (it would play softer)
    lat = Playability(spec).drive(60, 100).latency_us
    assert r.t_us >= s.t_us + lat  # and the hammer reaches the string


def test_note_off_keeps_the_duration_at_the_notes_delay(spec: PianoSpec) -> None:
    p = planner(spec, min_velocity=30)
    p.note_on(0, 60, 100)
    p.note_off(500 * MS, 60)
    (r,) = [c for c in p.due(10**7) if c.op is Op.RELEASE]
    assert r.t_us == 500 * MS + p.latency_us


def test_repeats_faster_than_the_key_are_merged_and_counted(spec: PianoSpec) -> None:
    p = planner(spec, mode=LatencyMode.LOWEST)
    gap = p.oracle.limits_for(60).repeat_gap_us
    p.note_on(0, 60, 100)
    p.note_off(20 * MS, 60)
    assert p.note_on(40 * MS, 60, 100) == "merged"  # < repeat gap after the first strike
    p.note_off(300 * MS, 60)
    assert p.note_on(300 * MS + gap + 50 * MS, 60, 100) == "on_time"
    p.note_off(900 * MS, 60)
    cmds = p.due(10**7)
    ss = strikes(cmds)
    rels = [c for c in cmds if c.op is Op.RELEASE]
    assert len(ss) == 2 and len(rels) == 2
    assert p.stats.outcomes == {"on_time": 2, "merged": 1}
    # the merged note held the key on: the first release follows the second note-off
    assert rels[0].t_us >= 300 * MS
    # and the key returned before it was struck again
    assert ss[1].t_us - rels[0].t_us >= p.limits.key_return_us


def test_panic_cancels_what_waits_and_turns_everything_off_now(grand: PianoSpec) -> None:
    spec = grand
    p = planner(spec, latency_us=40 * MS)
    p.note_on(0, 60, 127)  # a loud note waits for its strike time (fixed mode)
    p.note_on(0, 62, 20)  # a soft one cannot make D: struck at once
    p.pedal(0, 127)
    sent = p.due(0)
    assert len(strikes(sent)) == 1
    p.control(5 * MS, 123, 0)
    off = p.due(5 * MS)  # due at once: the next frame
    assert {c.actuator for c in off if c.op is Op.RELEASE} == {a.index for a in spec.actuators}
    assert all(c.t_us == 8 * MS for c in off)
    assert p.due(10**7) == []  # nothing left waiting: no strike comes later
    assert p.stats.outcomes == {"late": 1, "cancelled": 1}
    assert p.stats.accounted()


def test_pedal_is_converted_to_counts_and_delayed_like_the_notes(grand: PianoSpec) -> None:
    spec = grand
    p = planner(spec, min_velocity=30)
    p.control(0, 64, 127)
    (c,) = p.due(10**7)
    assert spec.pedal is not None
    assert c.op is Op.SET and c.actuator == spec.pedal.channel
    assert c.drive == spec.actuators[spec.pedal.channel].pwm_max
    assert c.t_us == p.latency_us - spec.pedal.latency_us


def test_every_note_is_accounted_for_and_commands_come_in_time_order(spec: PianoSpec) -> None:
    import random

    rng = random.Random(3)
    p = planner(spec, min_velocity=40)
    out: list[Command] = []
    held: set[int] = set()
    t = 0
    for _ in range(2000):
        t += rng.choice((0, 0, 1, 5, 20, 80)) * MS
        pitch = rng.randrange(20, 110)  # out of range too
        if pitch in held and rng.random() < 0.6:
            p.note_off(t, pitch)
            held.discard(pitch)
        elif rng.random() < 0.02:
            p.control(t, rng.choice((64, 120, 123, 7)), rng.randrange(128))
        else:
            p.note_on(t, pitch, rng.randrange(1, 128))
            held.add(pitch)
        out += p.due(t)
    out += p.finish(t)
    assert p.stats.accounted()
    assert p.stats.notes_in == sum(p.stats.outcomes.values()) > 1000
    assert [c.t_us for c in out] == sorted(c.t_us for c in out)
    # every key struck is released, and ends released
    last: dict[int, Op] = {}
    for c in out:
        last[c.actuator] = c.op
    assert all(op in (Op.RELEASE, Op.SET) for op in last.values())
    # never two strikes on a key closer than it can repeat
    prev: dict[int, int] = {}
    for c in strikes(out):
        if c.actuator in prev:
            assert c.t_us - prev[c.actuator] >= p.limits.repeat_gap_us - 1
        prev[c.actuator] = c.t_us


def test_bad_options_name_the_value_and_range(spec: PianoSpec) -> None:
    with pytest.raises(UsageError, match=r"--min-velocity: 0 .*1\.\.127"):
        planner(spec, min_velocity=0)
    with pytest.raises(UsageError, match="--latency-ms"):
        planner(spec, latency_us=-5)


def test_50_notes_per_s_and_20_note_chords_pass_the_rate_limit_a_flood_does_not(
    spec: PianoSpec,
) -> None:
    p = planner(spec, mode=LatencyMode.LOWEST)
    t = 0
    for i in range(500):  # 10 s at 50 notes/s
        t = i * 20 * MS
        p.note_on(t, 40 + (i * 7) % 50, 90)
        p.note_off(t + 10 * MS, 40 + (i * 7) % 50)
    for _ in range(5):  # 20-note chords
        t += 500 * MS
        for k in range(20):
            p.note_on(t, 40 + 2 * k, 100)
        for k in range(20):
            p.note_off(t + 200 * MS, 40 + 2 * k)
    assert "dropped_rate" not in p.stats.outcomes
    t += 1_000 * MS
    for i in range(1000):  # 1000 note-ons in 100 ms: ten times a MIDI cable's rate
        p.note_on(t + i * 100, 40 + i % 50, 90)
    dropped = p.stats.outcomes["dropped_rate"]
    assert 1000 - 64 - 101 <= dropped <= 1000 - 64
    assert p.stats.accounted()


def test_drive_and_pulse_are_the_file_planners_for_each_velocity(spec: PianoSpec) -> None:
    from robo_player.planner import plan
    from robo_player.score import Note, Score

    notes = [Note(60 + i % 12, i * 400_000, 200_000, 10 + 9 * (i % 13)) for i in range(26)]
    file_plan, _ = plan(Score(notes=notes), spec)
    p = planner(spec, mode=LatencyMode.LOWEST)
    for n in notes:
        p.note_on(n.onset_us, n.pitch, n.velocity)
        p.note_off(n.onset_us + n.duration_us, n.pitch)
    live = strikes(p.due(10**9))
    filed = strikes(file_plan.commands)
    assert len(live) == len(filed) == 26
    for a, b in zip(live, filed, strict=True):
        assert (a.actuator, a.drive, a.pulse_us, a.hold) == (
            b.actuator,
            b.drive,
            b.pulse_us,
            b.hold,
        )


def test_a_family_without_a_live_planner_is_refused_by_name() -> None:
    with pytest.raises(
        UsageError, match=r"'guitar-slider' is of family 'guitar' \(allowed: piano\)"
    ):
        LivePlanner(load_spec("guitar-slider"))  # type: ignore[arg-type]

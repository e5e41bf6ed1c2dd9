"""Plan JSON Lines files (docs/plan-format.md): round trips and malformed files."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player.errors import PlanError
from robo_player.plan import PLAN_FORMAT, PLAN_VERSION, Command, Op, Plan
from robo_player.planner import plan_piano
from robo_player.score import Note, PedalEvent, Score
from robo_player.spec import load_spec

commands_st = st.lists(
    st.builds(
        Command,
        t_us=st.integers(0, 2**40),
        op=st.sampled_from(list(Op)),
        actuator=st.integers(0, 127),
        drive=st.integers(0, 4095),
        pulse_us=st.integers(0, 40_000),
        hold=st.integers(0, 4095),
        note=st.integers(-1, 10**6),
        position=st.integers(0, 4095),
    ).map(lambda c: c if c.op is Op.MOVE else dataclasses.replace(c, position=0)),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(
    cmds=commands_st,
    delay=st.integers(0, 10**6),
    name=st.text(max_size=20),
    digest=st.text("0123456789abcdef", max_size=16),
)
def test_round_trip(cmds: list[Command], delay: int, name: str, digest: str) -> None:
    plan = Plan(commands=cmds, pipeline_delay_us=delay, spec_name=name, spec_hash=digest)
    plan.sort()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "plan.jsonl"
        plan.write_jsonl(path)
        back = Plan.read_jsonl(path)
        assert [p.name for p in Path(d).iterdir()] == ["plan.jsonl"]  # no temp file left
    assert back.commands == plan.commands
    assert (back.pipeline_delay_us, back.spec_name, back.spec_hash) == (delay, name, digest)


def _planned(tmp_path: Path) -> tuple[Plan, Path]:
    spec = load_spec("piano-88-grand")
    score = Score(
        notes=[Note(48 + k % 24, k * 120_000, 200_000, 30 + 7 * k % 90) for k in range(20)],
        pedal=[PedalEvent(0, 127), PedalEvent(1_000_000, 0)],
    )
    plan, _ = plan_piano(score, spec)
    path = tmp_path / "plan.jsonl"
    plan.write_jsonl(path)
    return plan, path


def test_planner_output_round_trips_and_header_is_documented(tmp_path: Path) -> None:
    plan, path = _planned(tmp_path)
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    assert head == {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "spec": "piano-88-grand",
        "spec_hash": plan.spec_hash,
        "pipeline_delay_us": plan.pipeline_delay_us,
        "commands": len(plan),
    }
    first = json.loads(lines[1])
    assert set(first) == {"t_us", "op", "actuator", "drive", "pulse_us", "hold", "note"}
    assert Plan.read_jsonl(path).commands == plan.commands


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    _, path = _planned(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(PlanError, match=r"header says \d+ commands, file has \d+ \(truncated\?\)"):
        Plan.read_jsonl(path)
    # cut in the middle of a line: that line is named
    text = "\n".join(lines)
    path.write_text(text[: len(text) - 10])
    with pytest.raises(PlanError, match=rf"plan.jsonl:{len(lines)}: bad command"):
        Plan.read_jsonl(path)


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ('{"t_us": 5, "op": "pulse_hold"}', "actuator"),  # missing field
        ('{"t_us": 5, "op": "strike", "actuator": 1}', "'strike'"),  # a version-1 op in v2
        ('{"t_us": 5, "op": "kick", "actuator": 1}', "kick"),  # unknown op
        ('{"t_us": "soon", "op": "release", "actuator": 1}', "soon"),  # not a number
        ("not json at all", "bad command"),
    ],
)
def test_bad_line_is_named_with_its_line_number(tmp_path: Path, bad: str, what: str) -> None:
    _, path = _planned(tmp_path)
    lines = path.read_text().splitlines()
    lines[3] = bad
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PlanError, match=r"plan\.jsonl:4: bad command") as err:
        Plan.read_jsonl(path)
    assert what in str(err.value)


@pytest.mark.parametrize(
    ("head", "match"),
    [
        ("", "empty plan file"),
        ("{oops", r":1: header is not JSON"),
        ('{"format": "something.else", "version": 1}', r":1: not a robo_player plan"),
        ('{"format": "robo_player.plan", "version": 99}', r":1: plan version 99 unsupported"),
        ('{"format": "robo_player.plan", "version": 0}', r"version 0 unsupported \(allowed: 1 \| 2"),
        ('{"format": "robo_player.plan", "version": true}', r"version True unsupported"),
        ('{"format": "robo_player.plan", "version": "2"}', r"version '2' unsupported"),
        ('{"format": "robo_player.plan"}', r"version None unsupported"),
    ],
)
def test_bad_header_is_refused(tmp_path: Path, head: str, match: str) -> None:
    path = tmp_path / "plan.jsonl"
    path.write_text(head + ("\n" if head else ""))
    with pytest.raises(PlanError, match=match):
        Plan.read_jsonl(path)


def test_missing_file_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read plan"):
        Plan.read_jsonl(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------------------------
# Version 2 and the reader of version 1 (docs/plan-format.md)

GRAND = load_spec("piano-88-grand")


def test_written_plans_are_version_2_with_levels_in_counts(tmp_path: Path) -> None:
    plan, path = _planned(tmp_path)
    assert PLAN_VERSION == 2 and json.loads(path.read_text().splitlines()[0])["version"] == 2
    ops = {json.loads(line)["op"] for line in path.read_text().splitlines()[1:]}
    assert ops == {"pulse_hold", "release", "set"}
    assert Op.STRIKE is Op.PULSE_HOLD  # the alias while callers move over
    assert GRAND.pedal is not None
    pedal = [c for c in plan if c.actuator == GRAND.pedal.channel]
    # CC64 127 then 0 -> a press: pull-in at full, the hold level (counts), release
    hold = GRAND.actuators[GRAND.pedal.channel].hold_counts
    assert [(c.op, c.drive) for c in pedal] == [
        (Op.SET, GRAND.pedal.pwm_max), (Op.SET, hold), (Op.RELEASE, 0)
    ]


def test_move_round_trips_with_its_position(tmp_path: Path) -> None:
    plan = Plan([Command(10, Op.MOVE, 3, position=1234, note=7), Command(20, Op.SET, 3, drive=9)])
    path = tmp_path / "plan.jsonl"
    plan.write_jsonl(path)
    lines = path.read_text().splitlines()
    assert json.loads(lines[1])["position"] == 1234 and "position" not in json.loads(lines[2])
    assert Plan.read_jsonl(path).commands == plan.commands


def _v1_file(tmp_path: Path, cmds: list[str], spec_hash: str = GRAND.spec_hash) -> Path:
    head = {
        "format": PLAN_FORMAT, "version": 1, "spec": "piano-88-grand", "spec_hash": spec_hash,
        "pipeline_delay_us": 300000, "commands": len(cmds),
    }  # fmt: skip
    path = tmp_path / "old.jsonl"
    path.write_text("\n".join([json.dumps(head), *cmds]) + "\n")
    return path


V1_LINES = [
    '{"t_us":0,"op":"pedal","actuator":88,"drive":64,"pulse_us":0,"hold":0,"note":-1}',
    '{"t_us":245213,"op":"strike","actuator":39,"drive":1406,"pulse_us":35000,"hold":1433,"note":0}',
    '{"t_us":780000,"op":"release","actuator":39,"drive":0,"pulse_us":0,"hold":0,"note":0}',
    '{"t_us":900000,"op":"pedal","actuator":88,"drive":127,"pulse_us":0,"hold":0,"note":-1}',
]


def test_version_1_is_read_with_its_spec(tmp_path: Path) -> None:
    plan = Plan.read_jsonl(_v1_file(tmp_path, V1_LINES), spec=GRAND)
    assert plan.commands == [
        Command(0, Op.SET, 88, drive=2064),  # CC64 64 -> round(64 * 4095 / 127)
        Command(245213, Op.PULSE_HOLD, 39, 1406, 35000, 1433, 0),
        Command(780000, Op.RELEASE, 39, note=0),
        Command(900000, Op.SET, 88, drive=4095),
    ]
    assert (plan.spec_name, plan.spec_hash, plan.pipeline_delay_us) == (
        "piano-88-grand", GRAND.spec_hash, 300000,
    )  # fmt: skip


def test_version_1_without_pedal_commands_needs_no_spec(tmp_path: Path) -> None:
    plan = Plan.read_jsonl(_v1_file(tmp_path, V1_LINES[1:3]))
    assert [c.op for c in plan] == [Op.PULSE_HOLD, Op.RELEASE]


def test_version_1_pedal_commands_without_the_spec_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as err:
        Plan.read_jsonl(_v1_file(tmp_path, V1_LINES))
    msg = str(err.value)
    assert "old.jsonl:2: version-1 plan" in msg and "CC64" in msg
    assert "Plan.read_jsonl(path, spec=load_spec(NAME))" in msg


def test_version_1_with_another_spec_or_bad_pedal_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"old\.jsonl:1: version-1 plan was made for spec"):
        Plan.read_jsonl(_v1_file(tmp_path, V1_LINES, spec_hash="0" * 16), spec=GRAND)
    bad = V1_LINES[:1] + ['{"t_us":1,"op":"pedal","actuator":88,"drive":128}']
    with pytest.raises(PlanError, match=r"old\.jsonl:3: bad command: pedal value 128 out of range"):
        Plan.read_jsonl(_v1_file(tmp_path, bad), spec=GRAND)
    diy = load_spec("piano-61-diy")
    with pytest.raises(PlanError, match=r"old\.jsonl:2: version-1 pedal command on actuator 88"):
        Plan.read_jsonl(_v1_file(tmp_path, V1_LINES, spec_hash=diy.spec_hash), spec=diy)
    with pytest.raises(PlanError, match=r"old\.jsonl:2: bad command: 'pulse_hold' is not a version-1"):
        Plan.read_jsonl(_v1_file(tmp_path, ['{"t_us":1,"op":"pulse_hold","actuator":3}']))


@settings(max_examples=40, deadline=None)
@given(
    strikes=st.lists(
        st.tuples(st.integers(0, 10**9), st.integers(0, 87), st.integers(0, 4095),
                  st.integers(0, 40_000), st.integers(0, 4095), st.integers(-1, 10**5)),
        max_size=20,
    ),
    pedal=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 127)), max_size=8),
)
def test_version_1_reads_as_the_plan_version_2_would_be(
    strikes: list[tuple[int, int, int, int, int, int]], pedal: list[tuple[int, int]]
) -> None:
    """A version-1 file (as the old writer wrote it) reads as the same plan made today:
    strike -> pulse_hold, pedal CC64 -> SET in the pedal's counts."""
    assert GRAND.pedal is not None
    ped = GRAND.pedal.channel
    v1: list[str] = []
    want: list[Command] = []
    for t, a, d, p, h, n in strikes:
        v1.append(json.dumps({"t_us": t, "op": "strike", "actuator": a, "drive": d,
                              "pulse_us": p, "hold": h, "note": n}))
        want.append(Command(t, Op.PULSE_HOLD, a, d, p, h, n))
        v1.append(json.dumps({"t_us": t + p, "op": "release", "actuator": a, "drive": 0,
                              "pulse_us": 0, "hold": 0, "note": n}))
        want.append(Command(t + p, Op.RELEASE, a, note=n))
    for t, v in pedal:
        v1.append(json.dumps({"t_us": t, "op": "pedal", "actuator": ped, "drive": v,
                              "pulse_us": 0, "hold": 0, "note": -1}))
        want.append(Command(t, Op.SET, ped, drive=round(v * GRAND.pedal.pwm_max / 127)))
    with tempfile.TemporaryDirectory() as d:
        got = Plan.read_jsonl(_v1_file(Path(d), v1), spec=GRAND)
    assert got.commands == want
    assert all(0 <= c.drive <= GRAND.actuators[c.actuator].pwm_max for c in got if c.op is Op.SET)


def test_note_lines_round_trip_and_are_checked(tmp_path: Path) -> None:
    from robo_player.planner.report import NoteOutcome

    spec = load_spec("piano-61-diy")
    notes = [Note(60 + k % 5, k * 150_000, 100_000, 40 + 9 * k) for k in range(8)]
    p, rep = plan_piano(Score(notes=notes), spec)
    p.notes = [o.to_json() for o in rep.outcomes]
    path = tmp_path / "p.jsonl"
    p.write_jsonl(path)
    again = Plan.read_jsonl(path)
    assert again.commands == p.commands and again.notes == p.notes
    assert json.loads(path.read_text().splitlines()[0])["notes"] == len(notes)
    back = [NoteOutcome.from_json(d) for d in again.notes]
    assert [o.to_json() for o in back] == [o.to_json() for o in rep.outcomes]
    # a plan without note lines reads as before (notes None)
    p.notes = None
    p.write_jsonl(path)
    assert Plan.read_jsonl(path).notes is None
    # truncated note lines, a bad one, a bad outcome: named
    p.notes = [o.to_json() for o in rep.outcomes]
    p.write_jsonl(path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(PlanError, match="header says 8 notes, file has 7"):
        Plan.read_jsonl(path)
    path.write_text("\n".join(lines[:-1] + ['{"t_us": 1}']) + "\n")
    with pytest.raises(PlanError, match=rf":{len(lines)}: bad note line"):
        Plan.read_jsonl(path)
    with pytest.raises(ValueError, match="fate: 'loud'"):
        NoteOutcome.from_json({**p.notes[0], "fate": "loud"}, "x")
    with pytest.raises(ValueError, match="x: target_t_us: '5'"):
        NoteOutcome.from_json({**p.notes[0], "target_t_us": "5"}, "x")

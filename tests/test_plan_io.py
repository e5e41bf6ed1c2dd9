"""Plan JSON Lines files (docs/plan-format.md): round trips and malformed files."""

from __future__ import annotations

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
    ),
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
        ('{"t_us": 5, "op": "strike"}', "actuator"),  # missing field
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

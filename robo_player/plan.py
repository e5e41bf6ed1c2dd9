"""The plan: time-ordered actuator commands in integer µs of performance time.

A plan is what the planner makes and what the driver streams; it knows nothing of
notes except, for reports, the index of the score note each command serves.

Commands (one :class:`Op` each):

- ``STRIKE``: at ``t_us`` drive ``actuator`` at PWM level ``drive`` (0..``2**pwm_bits-1``)
  for ``pulse_us``, then drop to the hold duty ``hold`` (same PWM scale; 0 = let go).
- ``RELEASE``: at ``t_us`` switch ``actuator`` off.
- ``PEDAL``: at ``t_us`` set the sustain-pedal actuator to ``drive`` (0..127 as CC64).

Performance time 0 is the moment the device starts; a note that the score has at
``onset_us`` is meant to sound at ``onset_us + plan.pipeline_delay_us``.

JSON Lines export (``robo-player plan``): the first line is a header object
``{"format": "robo_player.plan", "version": 1, "spec": NAME, "spec_hash": HEX,
"pipeline_delay_us": INT, "commands": N}``; then one object per command
``{"t_us": INT, "op": "strike"|"release"|"pedal", "actuator": INT, "drive": INT,
"pulse_us": INT, "hold": INT, "note": INT}`` (``note`` is -1 for commands that serve
no single score note).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from .errors import PlanError
from .fileio import atomic_open

PLAN_FORMAT = "robo_player.plan"
PLAN_VERSION = 1


class Op(Enum):
    STRIKE = "strike"
    RELEASE = "release"
    PEDAL = "pedal"


# Commands at the same t_us run in this order: releases free coils and power first.
_OP_ORDER = {Op.RELEASE: 0, Op.PEDAL: 1, Op.STRIKE: 2}


@dataclass(frozen=True, slots=True)
class Command:
    t_us: int
    op: Op
    actuator: int
    drive: int = 0
    pulse_us: int = 0
    hold: int = 0
    note: int = -1

    def sort_key(self) -> tuple[int, int, int]:
        return (self.t_us, _OP_ORDER[self.op], self.actuator)

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["op"] = self.op.value
        return d


@dataclass(slots=True)
class Plan:
    commands: list[Command] = field(default_factory=list)
    pipeline_delay_us: int = 0
    spec_name: str = ""
    spec_hash: str = ""

    def sort(self) -> None:
        self.commands.sort(key=Command.sort_key)

    def __iter__(self) -> Iterator[Command]:
        return iter(self.commands)

    def __len__(self) -> int:
        return len(self.commands)

    @property
    def end_us(self) -> int:
        return max((c.t_us + c.pulse_us for c in self.commands), default=0)

    def header(self) -> dict[str, object]:
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "spec": self.spec_name,
            "spec_hash": self.spec_hash,
            "pipeline_delay_us": self.pipeline_delay_us,
            "commands": len(self.commands),
        }

    def to_jsonl_lines(self) -> Iterable[str]:
        yield json.dumps(self.header())
        for c in self.commands:
            yield json.dumps(c.to_json(), separators=(",", ":"))

    def write_jsonl(self, path: str | Path) -> None:
        """Write atomically: a temp file renamed into place, so no partial output."""
        with atomic_open(path, "w") as fh:
            for line in self.to_jsonl_lines():
                fh.write(line + "\n")

    @classmethod
    def read_jsonl(cls, path: str | Path) -> Plan:
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise PlanError(f"{path}: cannot read plan: {err.strerror}") from err
        if not lines:
            raise PlanError(f"{path}: empty plan file")
        try:
            head = json.loads(lines[0])
        except json.JSONDecodeError as err:
            raise PlanError(f"{path}:1: header is not JSON: {err.msg}") from err
        if not isinstance(head, dict) or head.get("format") != PLAN_FORMAT:
            raise PlanError(f"{path}:1: not a robo_player plan (format must be {PLAN_FORMAT!r})")
        if head.get("version") != PLAN_VERSION:
            raise PlanError(
                f"{path}:1: plan version {head.get('version')!r} unsupported (allowed: {PLAN_VERSION})"
            )
        cmds: list[Command] = []
        for lineno, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                cmds.append(
                    Command(
                        t_us=int(d["t_us"]),
                        op=Op(d["op"]),
                        actuator=int(d["actuator"]),
                        drive=int(d.get("drive", 0)),
                        pulse_us=int(d.get("pulse_us", 0)),
                        hold=int(d.get("hold", 0)),
                        note=int(d.get("note", -1)),
                    )
                )
            except (json.JSONDecodeError, KeyError, ValueError, TypeError) as err:
                raise PlanError(f"{path}:{lineno}: bad command: {err}") from err
        if len(cmds) != head.get("commands"):
            raise PlanError(
                f"{path}: header says {head.get('commands')} commands, file has {len(cmds)} (truncated?)"
            )
        return cls(
            commands=cmds,
            pipeline_delay_us=int(head.get("pipeline_delay_us", 0)),
            spec_name=str(head.get("spec", "")),
            spec_hash=str(head.get("spec_hash", "")),
        )

"""The plan: time-ordered actuator commands in integer µs of performance time.

A plan is what a planner makes and what the driver streams; it knows nothing of notes
or instruments except, for reports, the index of the score note each command serves.
Every level is in **counts** of the actuator's own PWM resolution, ``0..2**pwm_bits-1``
(``spec.actuators[a].pwm_max``), for every op.

Commands (one :class:`Op` each, format version 2):

- ``PULSE_HOLD`` (``"pulse_hold"``; ``Op.STRIKE`` is the same member): at ``t_us``
  drive ``actuator`` at level ``drive`` for ``pulse_us``, then drop to level ``hold``
  (0 = let go) until the next command on that actuator.
- ``SET`` (``"set"``): at ``t_us`` set ``actuator`` to level ``drive`` until the next
  command on it (the piano's sustain pedal; the planner converts CC64 to counts).
- ``RELEASE`` (``"release"``): at ``t_us`` switch ``actuator`` off.
- ``MOVE`` (``"move"``): at ``t_us`` send a positioner to ``position`` (counts of its
  travel, ``0..2**pwm_bits-1``); for the next families, no piano plan has it.

Performance time 0 is the moment the device starts; a note that the score has at
``onset_us`` is meant to sound at ``onset_us + plan.pipeline_delay_us``.

JSON Lines export (``robo-player plan``; the full description with the reader of
version 1 files is ``docs/plan-format.md``): the first line is a header object
``{"format": "robo_player.plan", "version": 2, "spec": NAME, "spec_hash": HEX,
"pipeline_delay_us": INT, "commands": N}``; then one object per command
``{"t_us": INT, "op": "pulse_hold"|"set"|"release"|"move", "actuator": INT,
"drive": INT, "pulse_us": INT, "hold": INT, "note": INT}`` (a ``move`` adds
``"position": INT``; ``note`` is -1 for commands that serve no single score note).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PlanError
from .fileio import write_text

if TYPE_CHECKING:
    from .spec.model import InstrumentSpec

PLAN_FORMAT = "robo_player.plan"
PLAN_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: read_jsonl converts it (docs/plan-format.md)
CC_MAX = 127  # MIDI controller values are 0..127


class Op(Enum):
    PULSE_HOLD = "pulse_hold"
    SET = "set"
    RELEASE = "release"
    MOVE = "move"
    STRIKE = "pulse_hold"  # alias of PULSE_HOLD while callers move over


# Commands at the same t_us run in this order: releases free coils and power first,
# then levels and moves, then strikes.
_OP_ORDER = {Op.RELEASE: 0, Op.SET: 1, Op.MOVE: 1, Op.PULSE_HOLD: 2}


def cc_to_counts(value: int, pwm_max: int) -> int:
    """A MIDI controller value (0..127, e.g. the sustain pedal's CC64) as a level in
    counts of an actuator with ``pwm_max``: 0 -> 0, 127 -> pwm_max, linear between
    (rounded). The one conversion: the piano planner and the version-1 reader use it."""
    return round(value * pwm_max / CC_MAX)


@dataclass(frozen=True, slots=True)
class Command:
    t_us: int
    op: Op
    actuator: int
    drive: int = 0  # level, counts (PULSE_HOLD: during the pulse; SET: the level)
    pulse_us: int = 0
    hold: int = 0  # level after the pulse, counts (PULSE_HOLD)
    note: int = -1
    position: int = 0  # MOVE: target, counts of the positioner's travel

    def sort_key(self) -> tuple[int, int, int]:
        return (self.t_us, _OP_ORDER[self.op], self.actuator)

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {
            "t_us": self.t_us,
            "op": self.op.value,
            "actuator": self.actuator,
            "drive": self.drive,
            "pulse_us": self.pulse_us,
            "hold": self.hold,
            "note": self.note,
        }
        if self.op is Op.MOVE:
            d["position"] = self.position
        return d


def _lines(commands: Iterable[Command]) -> list[str]:
    """One JSON text per command, as ``json.dumps(c.to_json(), separators=(",", ":"))``
    gives for integer fields, about 2.5x faster (the plan writer is on the planning-speed
    path, bench/bench_planner.py)."""
    out: list[str] = []
    add = out.append
    move = Op.MOVE
    for c in commands:
        op = c.op
        if op is move:
            add(json.dumps(c.to_json(), separators=(",", ":")))
            continue
        add(
            f'{{"t_us":{c.t_us},"op":"{op._value_}","actuator":{c.actuator},"drive":{c.drive},'
            f'"pulse_us":{c.pulse_us},"hold":{c.hold},"note":{c.note}}}'
        )
    return out


@dataclass(slots=True)
class Plan:
    commands: list[Command] = field(default_factory=list)
    pipeline_delay_us: int = 0
    spec_name: str = ""
    spec_hash: str = ""
    # the plan report's note outcomes (``NoteOutcome.to_json`` dicts: each note's fate,
    # output pitch, target time and loudness), where the file carries them (``robo-player
    # plan --out`` writes them after the commands), so that ``verify`` can judge a
    # recording from the plan file alone; None otherwise
    notes: list[dict[str, Any]] | None = None

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
            **({"notes": len(self.notes)} if self.notes is not None else {}),
        }

    def to_jsonl_lines(self) -> Iterable[str]:
        yield json.dumps(self.header())
        yield from _lines(self.commands)

    def write_jsonl(self, path: str | Path) -> None:
        """Write atomically: a temp file renamed into place, so no partial output."""
        lines = _lines(self.commands)
        lines.insert(0, json.dumps(self.header()))
        if self.notes is not None:
            lines += [json.dumps(n, separators=(",", ":")) for n in self.notes]
        write_text(path, "\n".join(lines) + "\n")

    @classmethod
    def read_jsonl(cls, path: str | Path, spec: InstrumentSpec | None = None) -> Plan:
        """Read a plan file of version 2, or of version 1 converted (docs/plan-format.md).

        A version-1 file's ``strike`` becomes PULSE_HOLD; its ``pedal`` commands carry
        CC64 values, which become SET levels in counts of the pedal's resolution: that
        needs ``spec`` (the one the plan was made for; its hash must match). A
        version-1 file with pedal commands and no ``spec`` is refused with the fix.
        """
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
        version = head.get("version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise PlanError(
                f"{path}:1: plan version {version!r} unsupported (allowed: "
                f"{' | '.join(map(str, READABLE_VERSIONS))}; this version writes {PLAN_VERSION})"
            )
        spec_name = str(head.get("spec", ""))
        spec_hash = str(head.get("spec_hash", ""))
        if version == 1 and spec is not None and spec_hash and spec.spec_hash != spec_hash:
            raise PlanError(
                f"{path}:1: version-1 plan was made for spec {spec_name!r} (hash {spec_hash}), "
                f"not for {spec.name!r} (hash {spec.spec_hash}); pass the spec it was made for"
            )
        parse = _v1_command if version == 1 else _v2_command
        cmds: list[Command] = []
        n_notes = head.get("notes")
        if n_notes is not None and (not isinstance(n_notes, int) or isinstance(n_notes, bool) or n_notes < 0):
            raise PlanError(f"{path}:1: notes: {n_notes!r} (allowed: a count >= 0)")
        n_cmds = head.get("commands")
        notes: list[dict[str, Any]] | None = None if n_notes is None else []
        for lineno, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            if notes is not None and len(cmds) == n_cmds:  # the note outcomes follow
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as err:
                    raise PlanError(f"{path}:{lineno}: bad note line: {err.msg}") from err
                if not isinstance(d, dict) or not isinstance(d.get("note"), int):
                    raise PlanError(f"{path}:{lineno}: bad note line: an object with an integer 'note' expected")
                notes.append(d)
                continue
            try:
                d = json.loads(line)
                cmds.append(parse(d, spec, path, lineno))
            except (json.JSONDecodeError, KeyError, ValueError, TypeError) as err:
                if isinstance(err, PlanError):
                    raise
                raise PlanError(f"{path}:{lineno}: bad command: {err}") from err
        if len(cmds) != n_cmds:
            raise PlanError(
                f"{path}: header says {n_cmds} commands, file has {len(cmds)} (truncated?)"
            )
        if notes is not None and len(notes) != n_notes:
            raise PlanError(f"{path}: header says {n_notes} notes, file has {len(notes)} (truncated?)")
        return cls(
            commands=cmds,
            pipeline_delay_us=int(head.get("pipeline_delay_us", 0)),
            spec_name=spec_name,
            spec_hash=spec_hash,
            notes=notes,
        )


def _v2_command(d: dict[str, object], spec: object, path: Path, lineno: int) -> Command:
    op = Op(d["op"])
    return Command(
        t_us=_int(d["t_us"]),
        op=op,
        actuator=_int(d["actuator"]),
        drive=_int(d.get("drive", 0)),
        pulse_us=_int(d.get("pulse_us", 0)),
        hold=_int(d.get("hold", 0)),
        note=_int(d.get("note", -1)),
        position=_int(d.get("position", 0)) if op is Op.MOVE else 0,
    )


_V1_OPS = {"strike": Op.PULSE_HOLD, "release": Op.RELEASE, "pedal": Op.SET}


def _v1_command(
    d: dict[str, object], spec: InstrumentSpec | None, path: Path, lineno: int
) -> Command:
    name = d["op"]
    if name not in _V1_OPS:
        raise ValueError(f"{name!r} is not a version-1 op (allowed: strike | release | pedal)")
    op = _V1_OPS[str(name)]
    actuator = _int(d["actuator"])
    drive = _int(d.get("drive", 0))
    if op is Op.SET:
        if spec is None:
            raise PlanError(
                f"{path}:{lineno}: version-1 plan: its pedal commands are CC64 values and "
                "version 2 levels are PWM counts of the pedal; read it with its spec, "
                "Plan.read_jsonl(path, spec=load_spec(NAME)), or plan the piece again "
                "(robo-player plan SONG.mid -o plan.jsonl)"
            )
        act = spec.actuators.get(actuator)
        if act is None:
            raise PlanError(
                f"{path}:{lineno}: version-1 pedal command on actuator {actuator}, which spec "
                f"{spec.name!r} does not have (allowed: {', '.join(str(a.index) for a in spec.actuators if a.role == 'pedal') or 'none'})"
            )
        if not 0 <= drive <= CC_MAX:
            raise ValueError(f"pedal value {drive} out of range (allowed 0..{CC_MAX})")
        drive = cc_to_counts(drive, act.pwm_max)
    return Command(
        t_us=_int(d["t_us"]),
        op=op,
        actuator=actuator,
        drive=drive,
        pulse_us=_int(d.get("pulse_us", 0)),
        hold=_int(d.get("hold", 0)),
        note=_int(d.get("note", -1)),
    )


def _int(v: object) -> int:
    """An integer field, taken with int() as version 1's reader did."""
    return int(v)  # type: ignore[call-overload]

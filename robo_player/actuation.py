"""What a plan command does to its actuator's output: the one pulse/hold expansion.

A command becomes one or two *output steps* ``(offset_us, level)`` in its actuator's PWM
counts (``firmware/core/sched.c`` is the reference, ``docs/protocol.md`` the text):

- pulse-then-hold (``PULSE_HOLD``, alias ``STRIKE``): ``drive`` at ``t_us``, then
  ``hold`` at ``t_us + pulse_us``; with ``pulse_us`` 0 straight to ``hold``; with
  ``drive`` 0 off (no pulse starts, so no hold follows);
- set (``SET``): its level at ``t_us``;
- release: 0 at ``t_us``.

A later command on the same actuator at or before the end of a pulse cancels that
pulse's drop to hold (every command replaces the firmware's pulse state), so a release
inside a pulse is never undone.

Used by the firmware's Python model (:mod:`robo_player.sim.vmcu`), the simulator's
physics (:func:`robo_player.sim.physics.expand_plan`) and the driver, which checks
commands with :func:`check_command` before it sends them and rebuilds on/off pins'
levels from them. Only this module says what a pulse/hold does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from .errors import PlanError
from .plan import Command, Op, Plan
from .spec.actuators import ActuatorKind


def actuator_pwm_max(spec: Any) -> dict[int, int]:
    """actuator index -> its full PWM level (counts), for every coil of ``spec``'s
    actuator map (positioners take no pulse/hold)."""
    return {a.index: a.pwm_max for a in spec.actuators if a.kind is ActuatorKind.COIL}


def positioner_max(spec: Any) -> dict[int, int]:
    """actuator index -> its travel (position counts), for every positioner of ``spec``."""
    return {a.index: a.pwm_max for a in spec.actuators if a.kind is ActuatorKind.POSITIONER}


def check_stream_commands(
    cmds: list[Command], pwm_max: Mapping[int, int], positioners: Mapping[int, int],
    spec_name: str, first_index: int = 0,
) -> None:  # fmt: skip
    """:func:`check_commands` for the coils' commands, and moves against the positioners'
    travel (``positioners``: :func:`positioner_max`); PlanError names the first bad one."""
    if not positioners or not any(c.actuator in positioners for c in cmds):
        check_commands(cmds, pwm_max, spec_name, first_index)
        return
    for k, c in enumerate(cmds):
        top = positioners.get(c.actuator)
        at = f"plan command {first_index + k} ({c.op.value} at t_us={c.t_us}, actuator {c.actuator})"
        if top is not None and _kind(c.op) != MOVE:
            raise PlanError(f"{at}: actuator {c.actuator} is a positioner (allowed op: move)")
        if top is None:  # a coil's command, or a move sent to a coil
            check_commands([c], pwm_max, spec_name, first_index + k)
            continue
        if c.t_us < 0:
            raise PlanError(f"{at}: t_us {c.t_us} is negative (allowed: >= 0)")
        if not 0 <= c.position <= top:
            raise PlanError(f"{at}: position {c.position} is past the travel limit "
                            f"(allowed: 0..{top})")  # fmt: skip


# what an op does, by kind (plan ops and wire ops alike; see _kind)
RELEASE, SET, PULSE_HOLD, MOVE = 0, 1, 2, 3
_KINDS: dict[int, int] = {}  # id(op member) -> kind (members are singletons)


def _kind(op: Enum) -> int:
    """The kind of a plan op or a wire op (:class:`robo_player.protocol.messages.Op`),
    from its name, cached per member (the hot loops compare ints, not names)."""
    k = _KINDS.get(id(op))
    if k is None:
        name = op.name
        k = {"RELEASE": RELEASE, "SET": SET, "STRIKE": PULSE_HOLD, "PULSE_HOLD": PULSE_HOLD}.get(
            name, MOVE
        )
        _KINDS[id(op)] = k
    return k


def is_pulse_hold(op: Enum) -> bool:
    return _kind(op) == PULSE_HOLD


def output_steps(op: Enum, level: int, pulse_us: int, hold: int) -> tuple[tuple[int, int], ...]:
    """``(offset_us, level)`` output changes of one command after its time, in counts.

    ``op`` is a plan op or a wire op (:class:`robo_player.protocol.messages.Op`).
    """
    return _steps(_kind(op), level, pulse_us, hold)


def _steps(kind: int, level: int, pulse_us: int, hold: int) -> tuple[tuple[int, int], ...]:
    if kind == RELEASE:
        return ((0, 0),)
    if kind == PULSE_HOLD:
        if not pulse_us:
            return ((0, hold),)  # no pulse: straight to hold (sched.c first_level)
        if not level:
            return ((0, 0),)  # a first level of 0 is off: no pulse starts (sched.c account)
        return ((0, level), (pulse_us, hold))
    return ((0, level),)


def _kinds_of(cmds: list[Command]) -> list[int]:
    get = _KINDS.get
    out = [get(id(c.op)) for c in cmds]
    if None in out:  # an op not seen yet: _kind caches it
        return [_kind(c.op) for c in cmds]
    return out  # type: ignore[return-value]


def command_level(c: Command, pwm_max: int) -> int:
    """The level a command drives first, in counts (plan v2: levels are counts)."""
    return c.drive


def where(c: Command, index: int | None = None) -> str:
    at = f"plan command {index} " if index is not None else "plan command "
    return f"{at}({c.op.value} at t_us={c.t_us}, actuator {c.actuator}, note {c.note})"


def check_command(
    c: Command, pwm_max: Mapping[int, int], spec_name: str, index: int | None = None
) -> None:
    """PlanError unless ``c`` can be played on an actuator map with these levels."""
    if c.t_us < 0:
        raise PlanError(f"{where(c, index)}: t_us {c.t_us} is negative (allowed: >= 0)")
    pm = pwm_max.get(c.actuator)
    if pm is None:
        lo, hi = (min(pwm_max), max(pwm_max)) if pwm_max else (0, -1)
        raise PlanError(
            f"{where(c, index)}: no actuator {c.actuator} in spec {spec_name!r} "
            f"(actuators: {lo}..{hi})"
        )
    kind = _kind(c.op)
    if kind == MOVE:
        raise PlanError(
            f"{where(c, index)}: actuator {c.actuator} is a coil; a move goes to a positioner "
            "(allowed ops: pulse_hold, set, release)"
        )
    if kind != RELEASE and not (
        0 <= c.drive <= pm and 0 <= c.hold <= pm and c.pulse_us >= 0
    ):
        raise PlanError(
            f"{where(c, index)}: drive {c.drive}, hold {c.hold}, pulse_us {c.pulse_us} "
            f"out of range (allowed: drive and hold 0..{pm}, pulse_us >= 0)"
        )


def check_order(cmds: list[Command], last_t_us: int, where: str, first_index: int = 0) -> int:
    """PlanError unless ``cmds`` come in time order, none before ``last_t_us`` (the last
    command a stream took); returns the new last time."""
    ts = [c.t_us for c in cmds]
    if ts and (ts[0] < last_t_us or any(b < a for a, b in zip(ts, ts[1:], strict=False))):
        k = next(k for k, t in enumerate(ts) if t < (ts[k - 1] if k else last_t_us))
        raise PlanError(
            f"{where}: command {first_index + k} at t_us={ts[k]} comes before the one "
            f"submitted before it (t_us={ts[k - 1] if k else last_t_us}): a stream takes "
            "commands in time order"
        )
    return ts[-1] if ts else last_t_us


@dataclass(slots=True)
class OutputColumns:
    """Output changes as columns, sorted by time (stable): ``level`` in counts of
    ``pwm_max`` (both per change)."""

    t_us: np.ndarray  # (N,) int64
    actuator: np.ndarray  # (N,) int64
    level: np.ndarray  # (N,) int64
    pwm_max: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.t_us)

    def duty(self) -> np.ndarray:
        """Each change's level as a fraction of full drive, (N,) float64."""
        return self.level / np.maximum(self.pwm_max, 1)


# same instant: releases first, then levels and moves, then pulses (Command.sort_key)
_RANK = {RELEASE: 0, SET: 1, MOVE: 1, PULSE_HOLD: 2}


def _fine(c: Command, pm: int | None, kind: int) -> bool:
    """The quick form of :func:`check_command` (which says what is wrong)."""
    if pm is None or c.t_us < 0 or kind == MOVE:
        return False
    return kind == RELEASE or (0 <= c.drive <= pm and 0 <= c.hold <= pm and c.pulse_us >= 0)


def check_commands(
    cmds: Iterable[Command], pwm_max: Mapping[int, int], spec_name: str, first_index: int = 0
) -> None:
    """:func:`check_command` on each (the first bad one raises); ``first_index``: the
    index of the first in the stream, for the message."""
    cmds = list(cmds)
    get = pwm_max.get
    for k, (c, kind) in enumerate(zip(cmds, _kinds_of(cmds), strict=True)):
        if not _fine(c, get(c.actuator), kind):
            check_command(c, pwm_max, spec_name, first_index + k)


def expand_commands(
    cmds: Plan | Iterable[Command],
    pwm_max: Mapping[int, int],
    spec_name: str = "",
    *,
    checked: bool = False,
) -> OutputColumns:
    """The output changes of ``cmds`` (any order; run in :meth:`Command.sort_key` order).

    Every command is checked (:func:`check_command`) against ``pwm_max`` (actuator ->
    full level, :func:`actuator_pwm_max`), unless ``checked`` says that was done.
    """
    cmds = list(cmds.commands if isinstance(cmds, Plan) else cmds)
    n = len(cmds)
    ct = np.fromiter((c.t_us for c in cmds), dtype=np.int64, count=n)
    kinds = _kinds_of(cmds)
    co = np.fromiter((_RANK[k] for k in kinds), dtype=np.int64, count=n)
    ca = np.fromiter((c.actuator for c in cmds), dtype=np.int64, count=n)
    order = np.lexsort((ca, co, ct)).tolist()  # Command.sort_key order
    ot: list[int] = []
    oa: list[int] = []
    ol: list[int] = []
    pending: dict[int, int] = {}  # actuator -> index in the output of its pulse-end step
    cancelled: list[int] = []
    get = pwm_max.get
    for i in order:
        c = cmds[i]
        if not checked and not _fine(c, get(c.actuator), kinds[i]):
            check_command(c, pwm_max, spec_name)
        t, a = c.t_us, c.actuator
        p = pending.pop(a, None)
        if p is not None and ot[p] >= t:
            cancelled.append(p)
        for k, (dt, lv) in enumerate(_steps(kinds[i], c.drive, c.pulse_us, c.hold)):
            if k:
                pending[a] = len(ot)
            ot.append(t + dt)
            oa.append(a)
            ol.append(lv)
    t_arr = np.asarray(ot, dtype=np.int64)
    a_arr = np.asarray(oa, dtype=np.int64)
    l_arr = np.asarray(ol, dtype=np.int64)
    if cancelled:
        keep = np.ones(len(t_arr), dtype=bool)
        keep[cancelled] = False
        t_arr, a_arr, l_arr = t_arr[keep], a_arr[keep], l_arr[keep]
    o = np.argsort(t_arr, kind="stable")
    t_arr, a_arr, l_arr = t_arr[o], a_arr[o], l_arr[o]
    pm_lookup = np.zeros(max(pwm_max, default=-1) + 1, dtype=np.int64)
    for act, pm in pwm_max.items():
        pm_lookup[act] = pm
    return OutputColumns(t_arr, a_arr, l_arr, pm_lookup[a_arr] if len(a_arr) else a_arr.copy())


__all__ = [
    "OutputColumns",
    "actuator_pwm_max",
    "check_command",
    "check_commands",
    "check_order",
    "command_level",
    "expand_commands",
    "is_pulse_hold",
    "output_steps",
]


for _op in Op:  # plan ops are known from the start
    _kind(_op)

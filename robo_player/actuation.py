"""What a plan command does to its actuator's output: the one pulse/hold expansion.

A command becomes one or two *output steps* ``(offset_us, level)`` in its actuator's PWM
counts (``firmware/core/sched.c`` is the reference, ``docs/protocol.md`` the text):

- pulse-then-hold (``STRIKE``): ``drive`` at ``t_us``, then ``hold`` at
  ``t_us + pulse_us``; with ``pulse_us`` 0 straight to ``hold``;
- set (``SET``): its level at ``t_us``;
- release: 0 at ``t_us``.

A later command on the same actuator at or before the end of a pulse cancels that
pulse's drop to hold (the firmware's pulse timer is replaced), so a release inside a
pulse is never undone.

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
from .plan import Command, Plan
from .spec.actuators import ActuatorKind


def actuator_pwm_max(spec: Any) -> dict[int, int]:
    """actuator index -> its full PWM level (counts), for every coil of ``spec``'s
    actuator map (positioners take no pulse/hold)."""
    return {a.index: a.pwm_max for a in spec.actuators if a.kind is ActuatorKind.COIL}


def is_pulse_hold(op: Enum) -> bool:
    return op.name in ("STRIKE", "PULSE_HOLD")


def output_steps(op: Enum, level: int, pulse_us: int, hold: int) -> tuple[tuple[int, int], ...]:
    """``(offset_us, level)`` output changes of one command after its time, in counts.

    ``op`` is a plan op or a wire op (:class:`robo_player.protocol.messages.Op`): only
    its name is read (RELEASE, STRIKE/PULSE_HOLD, SET).
    """
    name = op.name
    if name == "RELEASE":
        return ((0, 0),)
    if name in ("STRIKE", "PULSE_HOLD"):
        if pulse_us:
            return ((0, level), (pulse_us, hold))
        return ((0, hold),)  # no pulse: straight to hold (sched.c)
    return ((0, level),)


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
    name = c.op.name
    if name == "MOVE":
        raise PlanError(
            f"{where(c, index)}: actuator {c.actuator} is a coil; a move goes to a positioner "
            "(allowed ops: pulse_hold, set, release)"
        )
    if name != "RELEASE" and not (
        0 <= c.drive <= pm and 0 <= c.hold <= pm and c.pulse_us >= 0
    ):
        raise PlanError(
            f"{where(c, index)}: drive {c.drive}, hold {c.hold}, pulse_us {c.pulse_us} "
            f"out of range (allowed: drive and hold 0..{pm}, pulse_us >= 0)"
        )


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


_RANK = {"RELEASE": 0, "SET": 1, "MOVE": 1}  # same instant: releases first (Command.sort_key)


def expand_commands(
    cmds: Plan | Iterable[Command],
    pwm_max: Mapping[int, int],
    spec_name: str = "",
) -> OutputColumns:
    """The output changes of ``cmds`` (any order; run in :meth:`Command.sort_key` order).

    Every command is checked (:func:`check_command`) against ``pwm_max`` (actuator ->
    full level, :func:`actuator_pwm_max`).
    """
    cmds = list(cmds.commands if isinstance(cmds, Plan) else cmds)
    n = len(cmds)
    ct = np.fromiter((c.t_us for c in cmds), dtype=np.int64, count=n)
    co = np.fromiter((_RANK.get(c.op.name, 2) for c in cmds), dtype=np.int64, count=n)
    ca = np.fromiter((c.actuator for c in cmds), dtype=np.int64, count=n)
    order = np.lexsort((ca, co, ct)).tolist()  # Command.sort_key order
    ot: list[int] = []
    oa: list[int] = []
    ol: list[int] = []
    pending: dict[int, int] = {}  # actuator -> index in the output of its pulse-end step
    cancelled: list[int] = []
    for i in order:
        c = cmds[i]
        check_command(c, pwm_max, spec_name)
        t, a = c.t_us, c.actuator
        p = pending.pop(a, None)
        if p is not None and ot[p] >= t:
            cancelled.append(p)
        steps = output_steps(c.op, command_level(c, pwm_max[a]), c.pulse_us, c.hold)
        for k, (dt, lv) in enumerate(steps):
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
    "command_level",
    "expand_commands",
    "is_pulse_hold",
    "output_steps",
]

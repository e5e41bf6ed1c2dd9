"""The firmware's actuation trace: what its outputs did, and when.

The host build writes ``clock actuator level`` lines; the simavr harness writes
``clock kind addr channel level`` lines (an output, not an actuator: :func:`read_trace`
maps it back through ``out_map``) and ``#`` lines with its clock, cycle counts, resets
and exit. A device's backend hands its trace to the driver, which measures actuation
errors against it (:mod:`.accuracy`) and turns it into output changes in performance
time (:func:`outputs_from_trace`) for an instrument that listens to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

from ..actuation import OutputColumns, command_level, output_steps
from ..errors import TransportError
from ..plan import Command


@dataclass(slots=True)
class Trace:
    """Output changes of one firmware run: ``(clock, actuator, level)``."""

    clock_hz: int = 0
    boot_id: int = 0
    changes: list[tuple[int, int, int]] = field(default_factory=list)
    cycles: int = 0  # simavr: total cycles
    busy: int = 0  # simavr: cycles awake
    wall_s: float = 0.0  # simavr: wall seconds it ran (cycles / clock_hz / wall_s = its speed)
    # simavr: (cycles, busy) at each simulated second
    samples: list[tuple[int, int]] = field(default_factory=list)
    # simavr: trace clocks of the MCU's resets (the harness's RESET pin; the boards stay)
    resets: list[int] = field(default_factory=list)
    exited: bool = False

    def busy_between(self, start: int, end: int) -> list[float]:
        """The CPU's awake share in each simulated second that lies wholly within
        cycles ``start..end`` (simavr traces only; empty when none does). The trace's
        clocks count from Timer1's start, a few hundred cycles after the CPU's."""
        return [
            (b1 - b0) / (c1 - c0)
            for (c0, b0), (c1, b1) in pairwise(self.samples)
            if c0 >= start and c1 <= end and c1 > c0
        ]


def read_trace(path: Path, out_map: dict[tuple[int, int, int], int] | None = None) -> Trace:
    """Parse a host (``clock actuator level``) or simavr (``clock kind addr channel level``)
    trace; ``out_map`` maps (kind, addr, channel) to the actuator for the latter."""
    t = Trace()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise TransportError(f"{path}: cannot read the firmware trace: {err.strerror}") from err
    for n, line in enumerate(lines, 1):
        if line.startswith("#"):
            words = line[1:].split()
            for w in words:
                k, _, v = w.partition("=")
                if k == "clock_hz":
                    t.clock_hz = int(v)
                elif k == "boot_id":
                    t.boot_id = int(v, 0)
            if len(words) >= 4 and words[0] == "cycles" and words[2] == "busy":
                t.cycles, t.busy = int(words[1]), int(words[3])
                t.samples.append((t.cycles, t.busy))
                if len(words) >= 6 and words[4] == "wall":
                    t.wall_s = float(words[5])
            if words[:3] == ["mcu", "reset", "at"] and len(words) >= 7:
                t.resets.append(int(words[6]))
            if words[:1] == ["exit"]:
                t.exited = True
            continue
        f = line.split()
        try:
            if len(f) == 3:
                t.changes.append((int(f[0]), int(f[1]), int(f[2])))
            elif len(f) == 5:
                key = (int(f[1]), int(f[2]), int(f[3]))
                a = (out_map or {}).get(key)
                if a is not None:
                    t.changes.append((int(f[0]), a, int(f[4])))
            elif f:
                raise ValueError(f"{len(f)} fields")
        except ValueError as err:
            raise TransportError(f"{path}:{n}: bad trace line {line!r}: {err}") from err
    return t



def outputs_from_trace(
    trace: Trace,
    t_us_for: Callable[[int], float],
    pwm_max: Mapping[int, int],
    binary: set[int],
    played: list[Command],
) -> OutputColumns:
    """The trace's output changes in performance time, as levels in counts.

    ``binary``: actuators whose trace says only on/off (direct AVR pins): their levels
    come from the commands that ``played`` on them, through the one pulse/hold
    expansion (:func:`robo_player.actuation.output_steps`), each at the time the trace
    shows the output going on.
    """
    ot: list[int] = []
    oa: list[int] = []
    ol: list[int] = []

    def put(t: int, a: int, level: int) -> None:
        if t >= 0:
            ot.append(t)
            oa.append(a)
            ol.append(level)

    for clock, a, level in trace.changes:
        if a in pwm_max and a not in binary:
            put(round(t_us_for(clock)), a, min(level, pwm_max[a]))
    by_act: dict[int, list[Command]] = {}
    for c in played:
        if c.actuator in binary and c.op.name != "RELEASE":
            by_act.setdefault(c.actuator, []).append(c)
    cancelled: set[int] = set()
    for a, cmds in by_act.items():
        k = 0
        pending = -1  # index in the output of the last pulse's drop to hold
        for clock, act, lv in trace.changes:
            if act != a:
                continue
            t = round(t_us_for(clock))
            if pending >= 0 and ot[pending] >= t:
                cancelled.add(pending)  # the pin went off (or again on) inside the pulse
            pending = -1
            if lv == 0:
                put(t, a, 0)
                continue
            if k >= len(cmds):
                break
            c = cmds[k]
            k += 1
            steps = output_steps(c.op, command_level(c, pwm_max[a]), c.pulse_us, c.hold)
            for j, (dt, level) in enumerate(steps):
                if j and t + dt >= 0:
                    pending = len(ot)
                put(t + dt, a, level)
    keep = [i for i in range(len(ot)) if i not in cancelled]
    t_arr = np.asarray([ot[i] for i in keep], dtype=np.int64)
    a_arr = np.asarray([oa[i] for i in keep], dtype=np.int64)
    l_arr = np.asarray([ol[i] for i in keep], dtype=np.int64)
    o = np.lexsort((a_arr, t_arr))
    pm = np.asarray([pwm_max[a] for a in a_arr.tolist()], dtype=np.int64)
    return OutputColumns(t_arr[o], a_arr[o], l_arr[o], pm[o])


__all__ = ["Trace", "outputs_from_trace", "read_trace"]

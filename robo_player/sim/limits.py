"""The firmware's per-coil limits, applied to a command stream on performance time.

``sim://`` has no firmware, so without this it would play what the firmware refuses or
cuts: a coil held past its maximum on-time, or one whose duty bucket overflows (on
Chopin's étude op. 25/8 the sustain pedal was cut 34 times by ``vmcu://``,
``fw-host://`` and ``fw-avr://`` and played whole on ``sim://``). :func:`apply_limits`
runs each coil's commands through the rules the C core runs (``firmware/core/sched.c``;
docs/protocol.md "Safety" and "Duty"), with the one copy of each rule:
:func:`robo_player.rules.on_time_ok`'s ``max_on_us`` and the integer duty bucket
(:class:`robo_player.rules.DutyBucket`, the arithmetic :mod:`robo_player.sim.vmcu` runs
too), and the one pulse/hold expansion (:func:`robo_player.actuation.output_steps`):

- **max on-time**: a coil on (any level) for ``max_on_us`` since it went on is switched
  off then (``CUTOFF_MAX_ON``); a command on that tick runs first (a release on the
  cutoff's tick is no cutoff).
- **duty**: a coil whose bucket passes the cap while on is switched off at the next duty
  poll (``CUTOFF_DUTY``; polls every 8 ms on the performance-time grid: the firmware's
  phase is its loop's, so a cut may come up to 8 ms apart from a board's); a command
  that would turn a coil on while its bucket is at or past the cap is refused
  (``REFUSED_DUTY``) and does nothing.

A cut is a release inserted at the cut's time (it also cancels a pending drop to hold);
the command that had turned the coil on is counted ``played_cut_off``, as the driver
counts a firmware's cutoff event. Not modelled here: the concurrency cap (the planner
keeps it; ``vmcu://`` and the firmware refuse past it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import rules
from ..actuation import is_pulse_hold, output_steps
from ..plan import Command, Op
from ..spec.actuators import ActuatorKind, ActuatorMap

__all__ = ["LimitResult", "apply_limits"]

_INF = math.inf


@dataclass(slots=True)
class LimitResult:
    """The commands as the firmware would run them, and what its limits did."""

    commands: list[Command]  # played commands plus a release per cut, in time order
    cut_off: set[int] = field(default_factory=set)  # indices (input) of commands cut off
    refused: set[int] = field(default_factory=set)  # ... refused for duty
    cuts: list[tuple[int, int, str]] = field(default_factory=list)  # (t_us, actuator, why)


def apply_limits(cmds: Sequence[Command], amap: ActuatorMap) -> LimitResult:
    """Run ``cmds`` (a time-ordered stream) through each coil's max on-time and duty
    limit; indices in the result are positions in ``cmds``."""
    window_ms = rules.map_duty_window_ms(amap)
    by_act: dict[int, list[int]] = {}
    for i, c in enumerate(cmds):
        by_act.setdefault(c.actuator, []).append(i)
    for idx in by_act.values():
        idx.sort(key=lambda i: cmds[i].sort_key())  # ties: the expansion's order
    res = LimitResult([])
    drop: set[int] = set()
    extra: list[Command] = []
    for a, idx in by_act.items():
        act = amap.get(a)
        if act is None or act.kind is not ActuatorKind.COIL:
            continue
        _Coil(a, act.pwm_max, act.max_on_us, rules.duty_permille(act), window_ms).run(
            cmds, idx, res, drop, extra
        )
    if not drop and not extra:
        res.commands = list(cmds)
        return res
    kept = [c for i, c in enumerate(cmds) if i not in drop]
    res.commands = sorted(kept + extra, key=Command.sort_key)
    res.cuts.sort()
    return res


class _Coil:
    """One coil's state while its commands run (sched.c's per-actuator record)."""

    __slots__ = ("a", "pwm_max", "max_on", "bucket", "level", "on_since", "pulse_end",
                 "hold", "last")  # fmt: skip

    def __init__(self, a: int, pwm_max: int, max_on_us: int, permille: int, window_ms: int) -> None:
        self.a = a
        self.pwm_max = pwm_max
        self.max_on = max_on_us
        self.bucket = rules.DutyBucket(pwm_max, permille, window_ms)
        self.level = 0
        self.on_since: float = _INF  # when the coil went on (off: inf)
        self.pulse_end: float = _INF  # the pending drop to hold
        self.hold = 0
        self.last = -1  # input index of the command that last turned it on / changed it

    def _set(self, t: int, level: int) -> None:
        if level == self.level:
            return
        self.bucket.set_level(t, level)
        if level and not self.level:
            self.on_since = t
        if not level:
            self.on_since = self.pulse_end = _INF
        self.level = level

    def _duty_cut_at(self) -> float:
        if not self.level:
            return _INF
        over = self.bucket.over_at_us()
        if over is None:
            return _INF
        return -(-over // rules.DUTY_POLL_US) * rules.DUTY_POLL_US  # the next poll

    def _until(self, t_end: float, res: LimitResult, extra: list[Command]) -> None:
        """The coil's own events (pulse end, cutoffs) strictly before ``t_end``."""
        while self.level:
            pe, mo, du = self.pulse_end, self.on_since + self.max_on, self._duty_cut_at()
            t = min(pe, mo, du)
            if t >= t_end:
                return
            ti = int(t)
            if mo <= t or du <= t:
                why = "max_on" if mo <= t else "duty"
                self._set(ti, 0)
                extra.append(Command(ti, Op.RELEASE, self.a))
                res.cuts.append((ti, self.a, why))
                if self.last >= 0:
                    res.cut_off.add(self.last)
            else:
                self.pulse_end = _INF
                self._set(ti, self.hold)

    def run(self, cmds: Sequence[Command], idx: list[int], res: LimitResult, drop: set[int],
            extra: list[Command]) -> None:  # fmt: skip
        for i in idx:
            c = cmds[i]
            t = c.t_us
            self._until(t, res, extra)
            if c.op is Op.RELEASE:
                self._set(t, 0)
                continue
            if c.op is Op.MOVE:
                continue
            if c.drive and self.bucket.full(t):  # sched.c decide: hot && level
                res.refused.add(i)
                drop.add(i)
                continue
            steps = output_steps(c.op, c.drive, c.pulse_us, c.hold)
            self.pulse_end = _INF  # every command replaces the pulse
            if len(steps) > 1 and is_pulse_hold(c.op):
                self.pulse_end = t + steps[1][0]
                self.hold = steps[1][1]
            self.last = i
            self._set(t, steps[0][1])
        self._until(_INF, res, extra)

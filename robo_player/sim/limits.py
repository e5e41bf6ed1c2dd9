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
  that would turn a coil on while its bucket was at or past the cap when last
  integrated (its last level change or duty poll: ``DutyBucket.hot``, as sched.c reads
  its ``hot`` flag) is refused (``REFUSED_DUTY``) and does nothing.

A cut is a release inserted at the cut's time (it also cancels a pending drop to hold);
the command that had turned the coil on is counted ``played_cut_off``, as the driver
counts a firmware's cutoff event. Not modelled here: the concurrency cap (the planner
keeps it; ``vmcu://`` and the firmware refuse past it).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import rules
from ..actuation import OutputColumns, expand_commands, is_pulse_hold, output_steps
from ..plan import Command, Op
from ..spec.actuators import Actuator, ActuatorKind, ActuatorMap

__all__ = ["LimitResult", "LiveLimits", "apply_limits"]

_INF = math.inf


@dataclass(slots=True)
class LimitResult:
    """The commands as the firmware would run them, and what its limits did."""

    commands: list[Command]  # played commands plus a release per cut, in time order
    outputs: OutputColumns  # their expansion
    cut_off: set[int] = field(default_factory=set)  # indices (input) of commands cut off
    refused: set[int] = field(default_factory=set)  # ... refused for duty
    cuts: list[tuple[int, int, str]] = field(default_factory=list)  # (t_us, actuator, why)


def apply_limits(
    cmds: Sequence[Command],
    amap: ActuatorMap,
    pwm_max: Mapping[int, int] | None = None,
    screen: bool = True,
) -> LimitResult:
    """Run ``cmds`` (a time-ordered stream, checked) through each coil's max on-time and
    duty limit; indices in the result are positions in ``cmds``; ``result.outputs`` is
    the expansion of ``result.commands``.

    A vectorised screen (:func:`_may_bind`) first picks the coils a limit could bind on
    (a conservative bound: each coil's longest on-stretch, and its bucket in exact
    arithmetic with a 5 % margin); only those run command by command (every coil with
    ``screen=False``: the tests hold the screen to the full run).
    """
    pm = pwm_max if pwm_max is not None else actuator_pwm_max_of(amap)
    outputs = expand_commands(cmds, pm, checked=True)
    window_ms = rules.map_duty_window_ms(amap)
    if screen:
        flagged = _may_bind(outputs, amap, window_ms)
    else:
        flagged = sorted({c.actuator for c in cmds} & set(pm))
    res = LimitResult(list(cmds), outputs)
    if not flagged:
        return res
    by_act: dict[int, list[int]] = {a: [] for a in flagged}
    for i, c in enumerate(cmds):
        lst = by_act.get(c.actuator)
        if lst is not None:
            lst.append(i)
    for idx in by_act.values():
        idx.sort(key=lambda i: cmds[i].sort_key())  # ties: the expansion's order
    drop: set[int] = set()
    extra: list[Command] = []
    for a, idx in sorted(by_act.items()):
        _Coil.of(amap[a], window_ms).run(cmds, idx, res, drop, extra)
    if not drop and not extra:
        return res
    kept = [c for i, c in enumerate(cmds) if i not in drop]
    res.commands = sorted(kept + extra, key=Command.sort_key)
    res.outputs = expand_commands(res.commands, pm, checked=True)
    res.cuts.sort()
    return res


def actuator_pwm_max_of(amap: ActuatorMap) -> dict[int, int]:
    return {a.index: a.pwm_max for a in amap if a.kind is ActuatorKind.COIL}


def _may_bind(out: OutputColumns, amap: ActuatorMap, window_ms: int) -> list[int]:
    """Coils on which a limit may bind, all at once (numpy, no loop per coil): an
    on-stretch of at least ``max_on_us`` (or one still on at the end), or a bucket that
    may pass 95 % of its cap (the leaky bucket in real numbers at the firmware's
    integer weights: ``max_t S(t) - min_{s<=t} min(S(s), 0)``, ``S`` the integral of
    ``w/256 - permille/1000`` from the coil's first change)."""
    if not len(out):
        return []
    n_act = int(out.actuator.max()) + 1
    coil = np.zeros(n_act, dtype=bool)
    max_on = np.zeros(n_act, dtype=np.int64)
    drain = np.zeros(n_act)
    cap = np.zeros(n_act)
    for act in amap:
        if act.kind is ActuatorKind.COIL and act.index < n_act:
            pm = rules.duty_permille(act)
            coil[act.index], max_on[act.index] = True, act.max_on_us
            drain[act.index], cap[act.index] = pm / 1000.0, rules.duty_cap_us(window_ms, pm)
    o = np.argsort(out.actuator, kind="stable")  # by actuator, in time order within
    a, t, lv, pmax = out.actuator[o], out.t_us[o], out.level[o], out.pwm_max[o]
    same = a[1:] == a[:-1]  # the next change is the same coil's
    first = np.r_[True, ~same]
    last = np.r_[~same, True]
    on = lv > 0
    flagged = set(a[on & last & coil[a]].tolist())  # left on: their on-time runs out
    prev_on = np.r_[False, on[:-1] & same]
    keep = ~np.isin(a, list(flagged))
    starts = np.flatnonzero(on & ~prev_on & keep)
    ends = np.flatnonzero(~on & prev_on & keep)  # pair with starts (each coil ends off)
    long = t[ends] - t[starts] >= max_on[a[starts]]
    flagged.update(a[starts[long]].tolist())
    w = rules.duty_weights(pmax, lv)
    dt = np.r_[np.where(same, np.diff(t), 0), 0]
    inc = (w / 256.0 - drain[a]) * dt  # bucket µs over each change's stretch
    ex = np.r_[0.0, np.cumsum(inc)[:-1]]  # exclusive prefix sums
    gid = np.cumsum(first) - 1
    s = ex - ex[np.flatnonzero(first)][gid]  # S at each change, from its coil's first
    s_end = s + inc  # ... and after its stretch
    # a running minimum that restarts per coil: later coils sit lower by more than
    # any S can span, so no earlier coil's values reach them
    big = 4.0 * (float(np.abs(inc).sum()) + 1.0)
    low = np.minimum.accumulate(np.minimum(s, 0.0) - gid * big) + gid * big
    over = (s_end - np.minimum(low, s_end)) > 0.95 * cap[a]
    flagged.update(a[over & coil[a]].tolist())
    return sorted(x for x in flagged if coil[x])


class _Coil:
    """One coil's state while its commands run (sched.c's per-actuator record)."""

    __slots__ = ("a", "pwm_max", "max_on", "bucket", "level", "on_since", "pulse_end",
                 "hold", "last", "_cut_key", "_cut_at")  # fmt: skip

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
        self._cut_key: tuple[int, int, int] = (-1, -1, -1)  # the bucket _cut_at was for
        self._cut_at: float = _INF

    @classmethod
    def of(cls, act: Actuator, window_ms: int) -> _Coil:
        """The coil of ``act`` under the firmware's limits (duty window ``window_ms``)."""
        return cls(act.index, act.pwm_max, act.max_on_us, rules.duty_permille(act), window_ms)

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
        b = self.bucket
        key = (b.bucket, b.unit, b.weight)
        if key != self._cut_key:  # the bucket changed since the last search (the live
            over = b.over_at_us()  # limits ask at every call, most often of the same)
            self._cut_key = key
            self._cut_at = _INF if over is None else -(-over // rules.DUTY_POLL_US) * rules.DUTY_POLL_US
        return self._cut_at  # the next poll after the bucket passes the cap

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

    def step(self, cmds: Sequence[Command], i: int, res: LimitResult, drop: set[int],
             extra: list[Command]) -> None:  # fmt: skip
        """Command ``cmds[i]`` (the coil's next, in :meth:`Command.sort_key` order),
        after the coil's own events before it."""
        c = cmds[i]
        t = c.t_us
        self._until(t, res, extra)
        if c.op is Op.RELEASE:
            self._set(t, 0)
            return
        if c.op is Op.MOVE:
            return
        if c.drive and self.bucket.hot(t):  # sched.c decide: hot && level
            res.refused.add(i)
            drop.add(i)
            return
        steps = output_steps(c.op, c.drive, c.pulse_us, c.hold)
        self.pulse_end = _INF  # every command replaces the pulse
        if len(steps) > 1 and is_pulse_hold(c.op):
            self.pulse_end = t + steps[1][0]
            self.hold = steps[1][1]
        self.last = i
        self._set(t, steps[0][1])

    def run(self, cmds: Sequence[Command], idx: list[int], res: LimitResult, drop: set[int],
            extra: list[Command]) -> None:  # fmt: skip
        for i in idx:
            self.step(cmds, i, res, drop, extra)
        self._until(_INF, res, extra)


class LiveLimits:
    """:func:`apply_limits` on a stream while it runs, incrementally: what the firmware
    has done by now, for the live ear (:mod:`.live`; ``sim://``'s ``heard_so_far``).

    :meth:`advance` takes the stream's commands (time order, growing) and its time now;
    it runs the commands before ``now`` and every cutoff before ``now`` through the same
    per-coil rules (:class:`_Coil`, the firmware's order: a command on a cutoff's tick
    first) and returns the stream as the firmware plays it up to ``now - 1``: final,
    since nothing after can change it (a command at ``now`` may still arrive, so that
    tick waits for the next call). The cost is the new commands plus one look at each
    coil per call, not the stream's length; every coil runs (no screen), which gives
    what :func:`apply_limits` gives (the screen only skips coils no limit binds on):
    ``tests/test_sim_limits_live.py`` holds them equal on random streams cut at random
    times.
    """

    def __init__(self, amap: ActuatorMap, pwm_max: Mapping[int, int] | None = None) -> None:
        pm = pwm_max if pwm_max is not None else actuator_pwm_max_of(amap)
        window_ms = rules.map_duty_window_ms(amap)
        self._coils = {
            a.index: _Coil.of(a, window_ms)
            for a in amap
            if a.kind is ActuatorKind.COIL and a.index in pm
        }
        self._taken = 0  # the stream's first commands already run
        self._res = LimitResult([], expand_commands([], pm, checked=True))
        self.commands: list[Command] = []  # the stream as played up to the last now - 1

    @property
    def result(self) -> LimitResult:
        """What the limits did so far (indices: positions in the stream); ``commands`` and
        ``outputs`` are not kept here (see :attr:`commands`)."""
        return self._res

    def advance(self, cmds: Sequence[Command], now_us: int) -> list[Command]:
        """Run the commands of ``cmds`` (the whole stream so far) before ``now_us`` and the
        cutoffs before it; :attr:`commands` (returned): played commands plus a release
        per cut, every one before ``now_us``, in :meth:`Command.sort_key` order."""
        hi = bisect.bisect_left(cmds, now_us, lo=self._taken, key=lambda c: c.t_us)
        new = sorted(range(self._taken, hi), key=lambda i: cmds[i].sort_key())
        self._taken = max(self._taken, hi)
        drop: set[int] = set()
        extra: list[Command] = []
        n_cuts = len(self._res.cuts)
        for i in new:
            coil = self._coils.get(cmds[i].actuator)
            if coil is not None:
                coil.step(cmds, i, self._res, drop, extra)
        for coil in self._coils.values():
            if coil.level:  # an off coil has no event of its own
                coil._until(now_us, self._res, extra)
        self._res.cuts[n_cuts:] = sorted(self._res.cuts[n_cuts:])  # all after the last call's
        self.commands += sorted([cmds[i] for i in new if i not in drop] + extra, key=Command.sort_key)
        return self.commands

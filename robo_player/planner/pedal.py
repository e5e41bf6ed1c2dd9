"""The piano's sustain pedal in the plan (stage 6 of :mod:`robo_player.planner.piano`).

The pedal is a solenoid like a key's, with the same coil limits: each press is a
pull-in at full drive for :func:`pull_in_us` then ``pedal.hold_duty`` until it comes up
(SET full, SET hold, RELEASE: SETs, not a pulse, because the firmware counts every
strike pulse against the shared supply's ``max_simultaneous_strikes`` and the pedal has
its own supply; the release is a packed wire record, a SET an explicit one). Presses come from the score (CC64 >= 64 down, below up; partial values are
up: a solenoid has no half pedal) and from notes cut short by a coil limit that the
pedal carries (:func:`carry`). :class:`PedalBudget` checks every press in time order by
the shared rules (:mod:`robo_player.rules`): the coil's heat (:class:`~robo_player.rules.CoilHeat`
with the plan's ``thermal_margin``), the firmware's duty bucket
(:class:`~robo_player.rules.DutyBucket`, kept ``thermal_margin`` below its cap) and the
maximum on-time. A score's press longer than the on-time limit is changed as a pianist
changes the pedal (:func:`split_long`, before the carry decisions see the pedal); a
press that would pass the heat or duty limit is lifted early or not pressed. Each change
is reported in ``PlanReport.pedal_changes``, so the firmware never has to cut the pedal.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..plan import Op
from ..score import PedalEvent
from ..spec.calibration import Calibration
from ..spec.model import PianoSpec
from . import rules
from .commands import CommandBuffer
from .constraints import Limits, PlanOptions

if TYPE_CHECKING:
    from .piano_notes import _Rec

__all__ = [
    "PEDAL_DOWN",
    "REPRESS_GAP_US",
    "PedalBudget",
    "PedalTrack",
    "Press",
    "carry",
    "lim_ms",
    "plan_pedal",
    "presses_track",
    "pull_in_us",
    "score_presses",
    "split_long",
    "shortened",
]

PEDAL_DOWN = 64  # CC64 values >= this lift the dampers
REPRESS_GAP_US = 100_000  # a lift forced by the on-time limit lasts this long (the
# dampers land, 30..60 ms, and lift again)


def pull_in_us(spec: PianoSpec) -> int:
    """How long a press drives the pedal at full before its hold: ``pedal.pull_in_us``,
    by default the pedal's nominal latency (the dampers are up by then), at most a
    full-drive pulse's ``strike.max_pulse_us``."""
    p = spec.pedal
    assert p is not None
    if p.pull_in_us is not None:
        return p.pull_in_us
    return min(p.latency_us, spec.strike.max_pulse_us)


@dataclass(slots=True)
class Press:
    """One press of the pedal, in command time (µs): pull-in from ``down``, up at ``up``."""

    down: int
    up: int
    group: list[_Rec] | None = None  # a carry press: the notes it carries; None: the score's


def score_presses(events: list[PedalEvent], shift_us: int, end_us: int) -> list[Press]:
    """The score's pedal as presses in command time (``t_us + shift_us``, at least 0);
    a press still down at the end comes up at ``end_us`` (at least where it went down)."""
    out: list[Press] = []
    down: int | None = None
    for ev in sorted(events, key=lambda e: e.t_us):
        t = max(0, ev.t_us + shift_us)
        if ev.value >= PEDAL_DOWN and down is None:
            down = t
        elif ev.value < PEDAL_DOWN and down is not None:
            out.append(Press(down, t))
            down = None
    if down is not None:
        out.append(Press(down, max(down, end_us)))
    return out


def split_long(
    presses: list[Press], max_on_us: int, onsets: list[int], lag_us: int
) -> tuple[list[Press], list[dict[str, object]]]:
    """Presses longer than the coil's on-time limit, changed as a pianist changes the
    pedal: lifted where the dampers land as a new note sounds (the latest onset, in
    ``onsets`` (sorted, sound time), in the second half of the allowed time; else at the
    limit) and pressed again :data:`REPRESS_GAP_US` later, so that the new notes, their
    keys still down, ring on. ``lag_us``: command to dampers. Returns the presses and the
    changes to report."""
    out: list[Press] = []
    changes: list[dict[str, object]] = []
    for p in presses:
        down = p.down
        while p.up - down > max_on_us:
            latest = down + max_on_us
            j = bisect.bisect_right(onsets, latest + lag_us) - 1
            lift = latest
            if j >= 0 and onsets[j] - lag_us >= down + max_on_us // 2:
                lift = onsets[j] - lag_us
            why = f"coil on-time limit ({max_on_us / 1e6:g} s)"
            changes.append({"t_us": down + lag_us, "change": "lifted early",
                            "by_us": p.up - lift, "reason": why})  # fmt: skip
            out.append(Press(down, lift))
            down = lift + REPRESS_GAP_US
            if down >= p.up:
                break  # the score lifts it by then anyway
            changes.append({"t_us": down + lag_us, "change": "pressed again", "by_us": 0,
                            "reason": why})  # fmt: skip
        if down < p.up:
            out.append(Press(down, p.up))
    return out, changes


def presses_track(presses: list[Press], lag_us: int) -> PedalTrack:
    """The dampers' state over sound time with these presses (sorted, disjoint)."""
    times: list[int] = []
    down: list[bool] = []
    for p in presses:
        times += [p.down + lag_us, p.up + lag_us]
        down += [True, False]
    return PedalTrack(times, down)


class PedalBudget:
    """The pedal coil's heat, duty bucket and on-time, press by press in time order."""

    def __init__(self, spec: PianoSpec, options: PlanOptions) -> None:
        assert spec.pedal is not None
        amap = spec.actuators
        self.ch = spec.pedal.channel
        act = amap[self.ch]
        self.act = act
        self.full, self.hold = act.pwm_max, act.hold_counts
        self.pull_us = pull_in_us(spec)
        self.heat = rules.CoilHeat(amap, options.thermal_margin)
        self.bucket = rules.DutyBucket.of(amap, self.ch)
        self.cap = math.floor((1.0 - options.thermal_margin) * self.bucket.cap)
        self.t = 0  # the coil's history is known up to here (the last press's up)
        self.done: list[Press] = []  # the presses committed, in time order

    def check(self, down: int, up: int) -> tuple[int, str]:
        """The latest ``up`` (<= ``up``) the press may keep, and the limit that set it
        ("" if none); ``-1`` if it may not go down at all."""
        act, tau = self.act, self.act.tau_s * 1e6
        limit = self.heat.limit_k(self.ch)
        pe = min(down + self.pull_us, up)
        t1 = rules.heat_after(self.heat.temp_at(self.ch, down), pe - down,
                              rules.heat_rate(act, 1.0), tau)  # fmt: skip
        b = self.bucket.copy()
        b.set_level(down, self.full)
        over = b.over_at_us(self.cap)
        if t1 > limit:
            return -1, f"coil heat limit ({limit:.1f} K with margin)"
        if over is not None and over <= pe:
            return -1, "duty limit (the firmware's duty bucket would be full)"
        keep, why = up, ""
        if up - down > act.max_on_us:
            keep, why = down + act.max_on_us, f"coil on-time limit ({act.max_on_us / 1e6:g} s)"
        if pe < keep:
            b.set_level(pe, self.hold)
            over = b.over_at_us(self.cap)
            if over is not None and over < keep:
                keep, why = max(pe, over - rules.DUTY_UNIT_US), "duty limit"
            cut = rules.time_to_limit_us(t1, rules.heat_rate(act, self.hold / self.full), tau, limit)
            if cut is not None and pe + cut < keep:
                keep, why = pe + cut, "coil heat limit"
        return keep, why

    def commit(self, down: int, up: int, buf: CommandBuffer) -> None:
        """Record the press and emit its commands: SET full, SET hold, RELEASE."""
        pe = min(down + self.pull_us, up)
        self.bucket.set_level(down, self.full)
        self.heat.run(self.ch, down, pe, self.full)
        buf.emit(down, Op.SET, self.ch, self.full)
        if pe < up:
            self.bucket.set_level(pe, self.hold)
            self.heat.run(self.ch, pe, up, self.hold)
            buf.emit(pe, Op.SET, self.ch, self.hold)
        self.bucket.set_level(up, 0)
        buf.emit(up, Op.RELEASE, self.ch, 0)  # a packed record on the wire (2-3 bytes)
        self.t = up
        self.done.append(Press(down, up))


def plan_pedal(
    presses: list[Press],
    spec: PianoSpec,
    options: PlanOptions,
    lag_us: int,
    buf: CommandBuffer,
    lim: Limits,
    by_score: list[_Rec],
) -> tuple[int, list[dict[str, object]]]:
    """Check ``presses`` (score and carry ones, disjoint) in time order and emit the ones
    that fit; returns the notes carried (carry presses' notes, less the notes in
    ``by_score``, carried by the score's pedal, that a lifted press no longer carries:
    those are shortened) and the changes to the score's presses (``lag_us``: command
    time to the dampers, for the report's times)."""
    budget = PedalBudget(spec, options)
    changes: list[dict[str, object]] = []
    carried = 0
    for p in sorted(presses, key=lambda p: p.down):
        down = max(p.down, budget.t)
        if down >= p.up and p.group is None:
            continue  # no time down (a press the score leaves down after the last sound)
        keep, why = budget.check(down, p.up) if down < p.up else (-1, "pedal busy")
        at = down + lag_us
        if p.group is not None:  # a carry press: all of it, or the notes are shortened
            if keep != p.up or down != p.down:
                for r in p.group:
                    r.notes.append(f"not carried by pedal: {why or 'pedal busy'}")
                    shortened(r, lim)
                continue
            for r in p.group:
                r.sound_end = r.carry
                r.notes.append("carried by pedal")
            carried += len(p.group)
            budget.commit(down, keep, buf)
            continue
        if keep < 0:
            changes.append({"t_us": at, "change": "not pressed", "by_us": 0, "reason": why})
            continue
        budget.commit(down, keep, buf)
        if keep < p.up:
            changes.append(
                {"t_us": at, "change": "lifted early", "by_us": p.up - keep, "reason": why}
            )
    if changes:
        final = presses_track(budget.done, lag_us)
        for r in by_score:
            if not final.down_throughout(r.rel, r.carry):
                r.sound_end = r.rel
                r.notes.remove("carried by pedal")
                r.notes.append("not carried by pedal: it was lifted early")
                shortened(r, lim)
                carried -= 1
    return carried, changes


def lim_ms(us: int) -> str:
    return f"{us / 1000:.1f} ms"


class PedalTrack:
    """The score's sustain pedal in performance time: is it down/up over an interval?"""

    def __init__(self, times: list[int], down: list[bool]) -> None:
        self.times = times
        self.down = down
        n = len(times)
        # next_up[j] / next_down[j]: first index >= j where the pedal goes up / down.
        self.next_up = [n] * (n + 1)
        self.next_down = [n] * (n + 1)
        for j in range(n - 1, -1, -1):
            self.next_up[j] = j if not down[j] else self.next_up[j + 1]
            self.next_down[j] = j if down[j] else self.next_down[j + 1]

    def _throughout(self, t0: int, t1: int, want_down: bool) -> bool:
        j = bisect.bisect_right(self.times, t0)  # events at or before t0 set the state
        state = self.down[j - 1] if j > 0 else False
        if state != want_down:
            return False
        k = bisect.bisect_right(self.times, t1)
        nxt = self.next_up[j] if want_down else self.next_down[j]
        return nxt >= k

    def down_throughout(self, t0: int, t1: int) -> bool:
        return self._throughout(t0, t1, True)

    def up_throughout(self, t0: int, t1: int) -> bool:
        return self._throughout(t0, t1, False)


def carry(
    wanted: list[_Rec],
    recs: list[_Rec],
    track: PedalTrack,
    spec: PianoSpec,
    calibration: Calibration,
    options: PlanOptions,
    lim: Limits,
) -> tuple[int, list[Press]]:
    """Notes cut short by the coil limits: carried by the score's pedal where it is down
    until their end anyway (counted), or proposed as added presses where that is safe
    (:func:`plan_pedal` checks them against the pedal coil's limits); the rest shortened."""
    carried = 0
    pending: dict[int, list[_Rec]] = {}  # sound end -> notes (carried together)
    for r in wanted:
        if track.down_throughout(r.rel, r.carry):
            r.sound_end = r.carry
            r.notes.append("carried by pedal")
            carried += 1
        elif options.pedal_carry and spec.pedal is not None:
            pending.setdefault(r.carry, []).append(r)
        else:
            shortened(r, lim)
    if not pending:
        return carried, []
    assert spec.pedal is not None
    pedal_lat = (
        calibration.pedal_latency_us
        if calibration.pedal_latency_us is not None
        else spec.pedal.latency_us
    )
    guard = options.pedal_guard_us
    rels = sorted((r.rel, r.i) for r in recs if r.drop is None)
    rel_t = [t for t, _ in rels]
    windows: list[tuple[int, int]] = []  # accepted pedal-down windows
    presses: list[Press] = []
    for end, group in sorted(pending.items()):
        members = {r.i for r in group}
        down = min(r.rel for r in group) - guard
        ok = down >= pedal_lat and end - down <= lim.max_on_us
        ok = ok and track.up_throughout(down - lim.key_return_us, end + lim.key_return_us)
        ok = ok and all(b <= down - lim.key_return_us or a >= end for a, b in windows)
        if ok:
            # Any other note released while the dampers are up would ring on.
            j = bisect.bisect_left(rel_t, down - lim.key_return_us)
            k = bisect.bisect_right(rel_t, end)
            ok = all(rels[x][1] in members for x in range(j, k))
        if not ok:
            for r in group:
                shortened(r, lim)
            continue
        windows.append((down, end))
        presses.append(Press(down - pedal_lat, end - pedal_lat, group))
    return carried, presses


def shortened(r: _Rec, lim: Limits) -> None:
    r.notes.append(f"shortened by {lim_ms(r.carry - r.rel)}: {r.cut_by}")

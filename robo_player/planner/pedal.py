"""The piano's sustain pedal in the plan: the score's pedal over time, and notes cut
short by a coil limit carried by the pedal (stage 6 of :mod:`robo_player.planner.piano`)."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from ..plan import Op
from ..spec.calibration import Calibration
from ..spec.model import PianoSpec
from .commands import CommandBuffer
from .constraints import Limits, PlanOptions

if TYPE_CHECKING:
    from .piano import _Rec

__all__ = ["PEDAL_DOWN", "PedalTrack", "carry", "lim_ms", "shortened"]

PEDAL_DOWN = 64  # CC64 values >= this lift the dampers


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
    commands: CommandBuffer,
) -> int:
    """Carry notes cut short by the coil limits with the pedal where that is safe."""
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
        return carried
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
        pch = spec.pedal.channel
        commands.emit(down - pedal_lat, Op.SET, pch, spec.actuators[pch].pwm_max)
        commands.emit(end - pedal_lat, Op.SET, pch, 0)
        for r in group:
            r.sound_end = end
            r.notes.append("carried by pedal")
            carried += 1
    return carried


def shortened(r: _Rec, lim: Limits) -> None:
    r.notes.append(f"shortened by {lim_ms(r.carry - r.rel)}: {r.cut_by}")

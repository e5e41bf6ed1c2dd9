"""The power budget: how many strike pulses overlap, and how much supply current flows.

A coil draws ``drive · V / R`` during its strike pulse and ``hold · V / R`` while it
holds its key down. While any pulse runs, the planner keeps the pulse count within
``power.max_simultaneous_strikes`` and the total current within ``power.supply_a``
(above it the supply sags and every strike comes out weaker).
"""

from __future__ import annotations

import bisect
import math

__all__ = ["INF_US", "SupplyLedger"]

INF_US = 1 << 62  # "not released yet"
_EPS_A = 1e-9


class SupplyLedger:
    """Strike pulses and holds placed so far, for the power budget.

    Each placed strike is ``[s, e = s + pulse, r, a, h]``: pulse current ``a`` (A) on
    ``[s, e)``, hold current ``h`` on ``[e, r)`` (``r`` may be :data:`INF_US` until
    known). :meth:`fits` says whether a new strike at ``t`` keeps, at every instant
    where some pulse runs, at most ``max_strikes`` pulses and at most ``supply_a`` of
    current. Items whose pulse ended before the horizon (:meth:`advance`) are kept
    only as hold currents, sorted by release, so a query costs O(pulsing coils).
    """

    __slots__ = (
        "pulse_us", "max_strikes", "supply_a", "pulsing", "holds", "hold_total", "t0", "first_end",
    )  # fmt: skip

    def __init__(self, pulse_us: int, max_strikes: int, supply_a: float) -> None:
        self.pulse_us = pulse_us
        self.max_strikes = max_strikes
        self.supply_a = supply_a + _EPS_A
        self.pulsing: list[list[float]] = []  # [s, e, r, a, h] with e > t0
        self.holds: list[tuple[int, float]] = []  # (r, h) of items with e <= t0 < r, sorted
        self.hold_total = 0.0
        self.t0 = -INF_US
        # earliest pulse end among ``pulsing`` (nothing to fold before it)
        self.first_end: float = INF_US

    def advance(self, t0: int) -> None:
        """No query will start before ``t0`` any more: fold finished pulses into holds."""
        if t0 <= self.t0:
            return
        self.t0 = t0
        if t0 >= self.first_end:  # some pulse has ended: fold it
            keep = []
            first_end: float = INF_US
            for it in self.pulsing:
                if it[1] <= t0:
                    if it[2] > t0 and it[4] > 0.0:
                        bisect.insort(self.holds, (int(it[2]), it[4]))
                        self.hold_total += it[4]
                else:
                    keep.append(it)
                    if it[1] < first_end:
                        first_end = it[1]
            self.pulsing = keep
            self.first_end = first_end
        holds = self.holds
        if holds and holds[0][0] <= t0:
            k = bisect.bisect_right(holds, (t0, math.inf))
            self.hold_total -= sum(h for _, h in holds[:k])
            del holds[:k]
            if not holds:
                self.hold_total = 0.0  # no float drift once empty

    def _load(self, x: int) -> tuple[int, float]:
        """(pulses running, current) at instant ``x >= t0`` from placed items."""
        count = 0
        amps = self.hold_total
        holds = self.holds
        if holds and holds[0][0] <= x:
            k = bisect.bisect_right(holds, (x, math.inf))
            amps -= sum(h for _, h in holds[:k])
        for s, e, r, a, h in self.pulsing:
            if s <= x < e:
                count += 1
                amps += a
            elif e <= x < r:
                amps += h
        return count, amps

    def fits(self, t: int, a: float, h: float, current: bool = True) -> bool:
        """Can a strike (pulse current ``a``, then hold ``h``) start at ``t >= t0``?"""
        e_new = t + self.pulse_us
        pulsing = self.pulsing
        if len(pulsing) < self.max_strikes:
            # Fast path: a bound on every instant (holds only ever end from here on).
            if not current:
                return True
            bound = self.hold_total + (a if a > h else h)
            for it in pulsing:
                bound += it[3] if it[3] > it[4] else it[4]
            if bound <= self.supply_a:
                return True
        else:
            # Every pulse slot taken at t itself (the usual reason a strike must wait):
            # known without the full check below, which would find it at x = t.
            running = 0
            for it in pulsing:
                if it[0] <= t < it[1]:
                    running += 1
            if running >= self.max_strikes:
                return False
        xs = {t, e_new}
        for it in self.pulsing:
            if it[0] > t:
                xs.add(int(it[0]))
            if it[1] > t:
                xs.add(int(it[1]))
        for x in xs:
            count, amps = self._load(x)
            if x < e_new:
                if count + 1 > self.max_strikes:
                    return False
                if current and amps + a > self.supply_a:
                    return False
            elif current and count and amps + h > self.supply_a:
                return False
        return True

    def reliefs(self, t: int, until: int) -> list[int]:
        """Times in (t, until] at which a pulse ends or a hold is released (sorted)."""
        out = {int(it[1]) for it in self.pulsing if t < it[1] <= until}
        out.update(int(it[2]) for it in self.pulsing if t < it[2] <= until)
        holds = self.holds
        j = bisect.bisect_right(holds, (t, math.inf))
        while j < len(holds) and holds[j][0] <= until:
            out.add(holds[j][0])
            j += 1
        return sorted(out)

    def add(self, s: int, a: float, h: float, r: int = INF_US) -> list[float]:
        it = [s, s + self.pulse_us, r, a, h]
        self.pulsing.append(it)
        if it[1] < self.first_end:
            self.first_end = it[1]
        return it

    def set_release(self, it: list[float], r: int) -> None:
        """The item's release became known (it was :data:`INF_US`)."""
        old = int(it[2])
        it[2] = r
        if any(x is it for x in self.pulsing):
            return
        j = bisect.bisect_left(self.holds, (old, it[4]))
        if j < len(self.holds) and self.holds[j] == (old, it[4]):
            del self.holds[j]
            self.hold_total -= it[4]
            if r > self.t0:
                bisect.insort(self.holds, (r, it[4]))
                self.hold_total += it[4]

"""Checks of a guitar plan against the shared rules: supply and concurrency of pulses,
and coil heat (:mod:`robo_player.rules`' arithmetic in tight loops over command rows)."""

from __future__ import annotations

import heapq
import math

from ..plan import Op, Plan
from ..rules import EPS_A, heat_limit_k, supply_limit_a
from ..spec.actuators import ActuatorKind
from ..spec.guitar import GuitarSpec

__all__ = ["Row", "heat_overloads", "heat_rows", "rows_of", "supply_overloads", "supply_rows"]

# a command as the planner gathers them: t, op order, actuator, seq, op, drive, pulse,
# hold, note, position (sorted, they are in Plan.sort's order)
Row = tuple[int, int, int, int, Op, int, int, int, int, int]


def rows_of(plan: Plan) -> list[Row]:
    return [(c.t_us, 0, c.actuator, 0, c.op, c.drive, c.pulse_us, c.hold, c.note, c.position) for c in plan]


def supply_overloads(spec: GuitarSpec, plan: Plan) -> int:
    """Pulses of ``plan`` that overload the supply (see :func:`supply_rows`)."""
    return supply_rows(spec, rows_of(plan))


def heat_overloads(spec: GuitarSpec, plan: Plan) -> int:
    """Coils of ``plan`` that overheat (see :func:`heat_rows`)."""
    return heat_rows(spec, rows_of(plan))


def supply_rows(spec: GuitarSpec, rows: list[Row]) -> int:
    """Pulses that start while more than ``max_simultaneous_strikes`` pulses run, or
    while the pulsing coils draw more than the supply gives (the shared rules'
    arithmetic, :func:`rules.amps`, :func:`rules.fits_supply`, with the per-actuator
    factors looked up once)."""
    amap = spec.actuators
    per_count: dict[int, float] = {}  # actuator -> amps per count (on the supply)
    for a in amap:
        if a.on_supply:
            per_count[a.index] = a.full_a / a.pwm_max
    limit_a = supply_limit_a(amap) + EPS_A
    most = amap.max_concurrent
    active: list[tuple[int, float]] = []  # a heap of (end, amps) of the pulses running
    total = 0.0  # their amps (summed afresh when near the limit: no drift)
    over = 0
    pulse_hold = Op.PULSE_HOLD
    pop, push = heapq.heappop, heapq.heappush
    for t, _, act, _, op, drive, pulse, _, _, _ in rows:
        if op is not pulse_hold or pulse <= 0:
            continue
        k = per_count.get(act)
        if k is None:
            continue
        while active and active[0][0] <= t:
            total -= pop(active)[1]
        amps = drive * k
        push(active, (t + pulse, amps))
        total += amps
        if total > limit_a - 1e-6:
            total = sum(x[1] for x in active)
        if len(active) > most or total > limit_a:
            over += 1
    return over


def heat_rows(spec: GuitarSpec, rows: list[Row]) -> int:
    """Coils whose nominal temperature rise passes ``coil_max_rise_k`` somewhere in the
    plan (the model of :class:`~robo_player.rules.CoilHeat`, ``dT/dt = duty² k - T/tau``,
    inlined): each pulse at its drive, then its hold level until the next command on
    that coil."""
    amap = spec.actuators
    exp = math.exp
    # per coil: (rate per duty², tau µs, limit K, pwm_max), temp, time of temp, hold
    state: dict[int, list[float]] = {}
    for a in amap:
        if a.kind is ActuatorKind.COIL:
            state[a.index] = [a.heat_k_per_s, a.tau_s * 1e6, heat_limit_k(a), float(a.pwm_max),
                              0.0, -1.0, -1.0, 0.0]  # fmt: skip
    hot: set[int] = set()
    pulse_hold = Op.PULSE_HOLD
    for t, _, act, _, op, drive, pulse, hold_level, _, _ in rows:
        st = state.get(act)
        if st is None:
            continue
        k, tau, limit, pm, temp, tt, hold_from, hold = st
        st[6] = -1.0
        # the rise peaks at the end of a pulse or a hold (it only falls while off); each
        # run: cool from the last run's end to its start, then heat towards d² k tau
        if hold_from >= 0.0 and hold > 0 and t > hold_from:
            temp = temp * exp(-max(0.0, hold_from - tt) / tau) if tt >= 0.0 else 0.0
            d = hold / pm
            steady = d * d * k * tau * 1e-6
            temp = steady + (temp - steady) * exp(-(t - hold_from) / tau)
            tt = t
            st[4], st[5] = temp, tt
            if temp > limit:
                hot.add(act)
        if op is pulse_hold:
            end = t + pulse
            temp = temp * exp(-max(0.0, t - tt) / tau) if tt >= 0.0 else 0.0
            d = drive / pm
            steady = d * d * k * tau * 1e-6
            temp = steady + (temp - steady) * exp(-(end - t) / tau)
            st[4], st[5] = temp, end
            if temp > limit:
                hot.add(act)
            st[6], st[7] = end, hold_level
    return len(hot)

"""Checks of a guitar plan against the shared rules: supply and concurrency of pulses,
and coil heat (:mod:`robo_player.rules`' arithmetic in tight loops over the commands)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from ..plan import Command, Op, Plan
from ..rules import EPS_A, heat_limit_k, supply_limit_a
from ..spec.actuators import ActuatorKind
from ..spec.guitar import GuitarSpec

__all__ = ["heat_count", "heat_overloads", "supply_count", "supply_overloads"]


def supply_overloads(spec: GuitarSpec, plan: Plan) -> int:
    """Pulses of ``plan`` that overload the supply (see :func:`supply_count`)."""
    return supply_count(spec, plan.commands)


def heat_overloads(spec: GuitarSpec, plan: Plan) -> int:
    """Coils of ``plan`` that overheat (see :func:`heat_count`)."""
    return heat_count(spec, plan.commands)


def supply_count(spec: GuitarSpec, commands: Sequence[Command]) -> int:
    """Of ``commands`` (in :meth:`Plan.sort`'s order), the pulses that start while more than ``max_simultaneous_strikes`` pulses run, or
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
    for c in commands:
        pulse = c.pulse_us
        if c.op is not pulse_hold or pulse <= 0:
            continue
        k = per_count.get(c.actuator)
        if k is None:
            continue
        t = c.t_us
        while active and active[0][0] <= t:
            total -= pop(active)[1]
        amps = c.drive * k
        push(active, (t + pulse, amps))
        total += amps
        if total > limit_a - 1e-6:
            total = sum(x[1] for x in active)
        if len(active) > most or total > limit_a:
            over += 1
    return over


def heat_count(spec: GuitarSpec, commands: Sequence[Command]) -> int:
    """Of ``commands`` (in :meth:`Plan.sort`'s order), the coils whose nominal temperature rise passes ``coil_max_rise_k`` somewhere in the
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
    for c in commands:
        act = c.actuator
        st = state.get(act)
        if st is None:
            continue
        t = c.t_us
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
        if c.op is pulse_hold:
            end = t + c.pulse_us
            temp = temp * exp(-max(0.0, t - tt) / tau) if tt >= 0.0 else 0.0
            d = c.drive / pm
            steady = d * d * k * tau * 1e-6
            temp = steady + (temp - steady) * exp(-(end - t) / tau)
            st[4], st[5] = temp, end
            if temp > limit:
                hot.add(act)
            st[6], st[7] = end, c.hold
    return len(hot)

"""The rules every instrument family shares, written once, as functions of the actuator map.

Supply current, concurrency, maximum on-time and coil heat are the same physics for a
piano key, a guitar fret solenoid or a damper. Each rule here reads only
:class:`~robo_player.spec.actuators.Actuator` / :class:`~robo_player.spec.actuators.ActuatorMap`
numbers (which the spec compiles once), so the planner, the driver's firmware
configuration, the firmware's Python model and the simulator check the same numbers,
not copies. Margins are arguments: the planner keeps ``margin`` below a limit, the
firmware and the physics use the limit itself (``margin=0``).

Levels are counts of the actuator's resolution (``0..act.pwm_max``); a *duty* is a
fraction of full drive (``level / pwm_max``). Times are µs, temperatures are the rise
over ambient in K, currents in A.

    from robo_player import rules
    amap = spec.actuators
    act = amap[39]
    rules.amps(act, 2048)                      # A drawn at that level
    rules.supply_amps(amap, {39: 4095, 40: 1433})   # A from the shared supply
    rules.fits_supply(amap, 12.5)              # within spec.power.supply_a?
    rules.fits_supply(amap, 12.5, margin=0.1)  # ... keeping 10 % of it free?
    rules.fits_concurrency(amap, 8)            # 8 pulses at once allowed?
    rules.on_time_ok(act, 25_000_000)          # within max_on_us?
    rules.duty_permille(act)                   # the firmware's sustained-duty limit
    rules.duty_window_ms(act)                  # ... and its averaging window
    heat = rules.CoilHeat(amap, margin=0.1)    # per-coil temperature state
    heat.run(39, 0, 35_000, 4095)              # level 4095 for 35 ms from t=0
    heat.temp_at(39, 100_000), heat.time_to_limit_us(39, 100_000, 1433)
    bucket = rules.DutyBucket.of(amap, 88)     # the firmware's duty bucket of one coil
    bucket.set_level(0, 4095); bucket.over_at_us()   # when full drive would overflow it
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .spec.actuators import Actuator, ActuatorMap

# the duty limit's numbers live with the spec, whose loader checks them
from .spec.duty import (
    COIL_THERMAL_TOLERANCE,
    DUTY_HEADROOM,
    DUTY_POLL_US,
    DUTY_SLACK_US,
    DUTY_UNIT_US,
    DUTY_WINDOW_MS,
    duty_drain_k,
    duty_limit_problem,
    duty_permille,
    duty_weight,
    duty_weights,
    duty_window_limit_ms,
    duty_window_ms,
    map_duty_window_ms,
    weight_shortfall,
    worst_full_rise_k,
    worst_tau_s,
)

__all__ = [
    "COIL_THERMAL_TOLERANCE",
    "DUTY_HEADROOM",
    "DUTY_POLL_US",
    "DUTY_SLACK_US",
    "DUTY_UNIT_US",
    "DUTY_WINDOW_MS",
    "EPS_A",
    "CoilHeat",
    "DutyBucket",
    "amps",
    "duty_bucket_after",
    "duty_cap_us",
    "duty_drain_k",
    "duty_permille",
    "duty_units_past_cap",
    "duty_weight",
    "duty_limit_problem",
    "duty_weights",
    "duty_window_limit_ms",
    "duty_window_ms",
    "map_duty_window_ms",
    "fits_concurrency",
    "pulse_counts_at",
    "fits_supply",
    "heat_after",
    "heat_limit_k",
    "heat_rate",
    "on_time_ok",
    "pulse_ok",
    "steady_rise_k",
    "supply_amps",
    "supply_limit_a",
    "sustained_duty",
    "time_to_limit_us",
    "weight_shortfall",
    "worst_full_rise_k",
    "worst_tau_s",
]

EPS_A = 1e-9  # float slack on the supply limit (A)


# ---- supply current and concurrency ---------------------------------------------------


def amps(act: Actuator, level: int) -> float:
    """Current (A) an actuator draws at ``level`` counts: ``level / pwm_max · full_a``."""
    return level / act.pwm_max * act.full_a


def supply_amps(amap: ActuatorMap, levels: Mapping[int, int]) -> float:
    """Current (A) from the shared supply with actuator index -> level (counts); the
    actuators with their own supply (``on_supply`` False, e.g. the piano's pedal) and
    indices the map does not have are not counted."""
    total = 0.0
    for index, level in levels.items():
        act = amap.get(index)
        if act is not None and act.on_supply and level > 0:
            total += amps(act, level)
    return total


def supply_limit_a(amap: ActuatorMap, margin: float = 0.0) -> float:
    """The current (A) to stay within: ``(1 − margin) · spec.power.supply_a``."""
    return (1.0 - margin) * amap.supply_a


def fits_supply(amap: ActuatorMap, total_a: float, margin: float = 0.0) -> bool:
    """Is ``total_a`` within the shared supply's limit less ``margin`` (a fraction kept
    free: the calibrator's scheduler keeps 0.1, the planner and the physics 0)?"""
    return total_a <= supply_limit_a(amap, margin) + EPS_A


def pulse_counts_at(end_us: int, t_us: int) -> bool:
    """Does a strike pulse that ends at ``end_us`` still count against the concurrency cap
    for a strike at ``t_us``? A pulse holds ``[start, end)``: on the tick where it ends it
    is gone. One rule for the planner, the firmware (``firmware/core/sched.c``
    ``pulses_ending``) and its model (:mod:`robo_player.sim.vmcu`), held together by
    ``tests/test_firmware_property.py``."""
    return t_us < end_us


def fits_concurrency(amap: ActuatorMap, pulses: int) -> bool:
    """May ``pulses`` full-drive strike pulses run at once (``max_simultaneous_strikes``)?"""
    return pulses <= amap.max_concurrent


# ---- on-time -------------------------------------------------------------------------


def on_time_ok(act: Actuator, on_us: int) -> bool:
    """Is one energisation (pulse + hold) of ``on_us`` within ``act.max_on_us``?"""
    return on_us <= act.max_on_us


def pulse_ok(act: Actuator, pulse_us: int) -> bool:
    """Is a full-drive pulse of ``pulse_us`` within ``act.max_pulse_us``?"""
    return 0 <= pulse_us <= act.max_pulse_us


# ---- coil heat -----------------------------------------------------------------------
# dT/dt = duty² · heat_k_per_s − T / tau   (duty = level / pwm_max; T = rise over ambient)


def heat_rate(act: Actuator, duty: float) -> float:
    """Heating rate (K/s) of the coil at ``duty`` (a fraction; ``level / pwm_max``)."""
    return duty * duty * act.heat_k_per_s


def steady_rise_k(act: Actuator, duty: float) -> float:
    """The rise (K) the coil settles at if held at ``duty`` for ever."""
    return heat_rate(act, duty) * act.tau_s


def heat_limit_k(act: Actuator, margin: float = 0.0) -> float:
    """The rise (K) to stay at or below: ``(1 − margin) · max_rise_k``."""
    return (1.0 - margin) * act.max_rise_k


def heat_after(temp_k: float, dt_us: float, rate_k_per_s: float, tau_us: float) -> float:
    """Temperature rise after ``dt_us`` at a constant heating rate (exact solution)."""
    steady = rate_k_per_s * tau_us * 1e-6
    return steady + (temp_k - steady) * math.exp(-dt_us / tau_us)


def time_to_limit_us(
    temp_k: float, rate_k_per_s: float, tau_us: float, limit_k: float
) -> int | None:
    """Whole µs until the rise reaches ``limit_k`` (floor), None if it never does."""
    if temp_k >= limit_k:
        return 0
    steady = rate_k_per_s * tau_us * 1e-6
    if steady <= limit_k:
        return None
    return max(0, math.floor(-tau_us * math.log((steady - limit_k) / (steady - temp_k))))


def sustained_duty(act: Actuator, margin: float = 0.0) -> float:
    """Mean duty² the coil may keep up for ever without passing its limit (0..1)."""
    return min(1.0, heat_limit_k(act, margin) / (act.heat_k_per_s * act.tau_s))


# ---- the firmware's duty bucket (firmware/core/sched.c; docs/protocol.md "Duty") ----
# Integer arithmetic, exactly as the C core does it, so that the firmware's Python model
# (robo_player/sim/vmcu.py), the sim:// device (robo_player/sim/limits.py) and the
# planner (the pedal, robo_player/planner/pedal.py) cut and refuse where the firmware does.

def duty_cap_us(window_ms: int, duty_permille: int) -> int:
    """fw.c lim.cap_us: what the bucket holds (µs of full drive)."""
    return window_ms * duty_permille


def duty_bucket_after(bucket: int, weight: int, drain_k: int, units: int) -> int:
    """sched.c bucket_integrate(): the bucket ``units`` 64 µs units on at ``weight``."""
    b = bucket + ((units * weight) >> 2)  # u * 64 us * w / 256
    return max(0, b - ((units * drain_k) >> 8)) if b else 0


def duty_units_past_cap(bucket: int, weight: int, drain_k: int, cap: int) -> int | None:
    """The fewest 64 µs units after which the bucket is past ``cap`` (0: it is already),
    None if it never gets there at this weight."""
    if bucket > cap:
        return 0
    if weight * 64 <= drain_k:
        return None  # it drains (or stays) at this weight
    lo, hi = 0, 1
    while duty_bucket_after(bucket, weight, drain_k, hi) <= cap:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # the first unit count past the cap
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if duty_bucket_after(bucket, weight, drain_k, mid) <= cap else (lo, mid)
    return hi


class DutyBucket:
    """One coil's firmware duty bucket on a performance-time line (µs; unit ``t // 64``).

    ``set_level(t_us, level)`` integrates up to ``t_us`` at the old level and takes the
    new one; ``at(t_us)`` integrates and returns the bucket; ``over_at_us()``: the first
    unit boundary at which the bucket is past the cap at the present level (None: never);
    ``full(t_us)``: is the bucket at its cap then; ``hot(t_us)``: would the firmware
    refuse a command that turns the coil on then (the bucket as last integrated)?
    """

    __slots__ = ("pwm_max", "drain_k", "cap", "bucket", "unit", "weight")

    def __init__(self, pwm_max: int, duty_permille: int, window_ms: int) -> None:
        self.pwm_max = pwm_max
        self.drain_k = duty_drain_k(duty_permille)
        self.cap = duty_cap_us(window_ms, duty_permille)
        self.bucket = 0
        self.unit = 0
        self.weight = 0

    @classmethod
    def of(cls, amap: ActuatorMap, index: int) -> DutyBucket:
        """The bucket the firmware keeps for actuator ``index`` of ``amap``."""
        act = amap[index]
        return cls(act.pwm_max, duty_permille(act), map_duty_window_ms(amap))

    def copy(self) -> DutyBucket:
        other = DutyBucket.__new__(DutyBucket)
        for name in DutyBucket.__slots__:
            setattr(other, name, getattr(self, name))
        return other

    def at(self, t_us: int) -> int:
        nu = t_us // DUTY_UNIT_US
        if nu > self.unit:
            self.bucket = duty_bucket_after(self.bucket, self.weight, self.drain_k, nu - self.unit)
            self.unit = nu
        return self.bucket

    def set_level(self, t_us: int, level: int) -> None:
        self.at(t_us)
        self.weight = duty_weight(self.pwm_max, level)

    def full(self, t_us: int) -> bool:
        return self.at(t_us) >= self.cap

    def hot(self, t_us: int, poll_us: int = DUTY_POLL_US, phase_us: int = 0) -> bool:
        """Would the firmware refuse a command that turns the coil on at ``t_us``?
        sched.c's decide reads the coil's ``hot`` flag as it was last integrated: at its
        last level change (:meth:`set_level`) or at the last duty poll (every
        ``poll_us``, at ``phase_us``) at or before ``t_us``, whichever came later; a
        bucket that passed its cap since is refused from the next poll on (which also
        cuts the coil, if on). The poll looks at every coil on or hot; an off coil
        that was not hot only drains, so looking at it too changes nothing."""
        p = (t_us - phase_us) // poll_us * poll_us + phase_us
        if p // DUTY_UNIT_US > self.unit:
            return self.full(p)  # a poll since the last integration
        return self.bucket >= self.cap

    def over_at_us(self, cap: int | None = None) -> int | None:
        """µs of the first unit at which the bucket is past ``cap`` (default: the
        firmware's) if the level stays; None if it never is."""
        u = duty_units_past_cap(self.bucket, self.weight, self.drain_k,
                                self.cap if cap is None else cap)  # fmt: skip
        return None if u is None else (self.unit + u) * DUTY_UNIT_US


class CoilHeat:
    """Temperature rise of every coil of a map, advanced command by command.

    ``run(index, t0_us, t1_us, level)`` says the coil was at ``level`` over
    ``[t0_us, t1_us)`` (calls per coil in time order; gaps between them cool it).
    Positioners and indices the map lacks are refused with KeyError.
    """

    __slots__ = ("amap", "margin", "_temp", "_t")

    def __init__(self, amap: ActuatorMap, margin: float = 0.0) -> None:
        self.amap = amap
        self.margin = margin
        self._temp: dict[int, float] = {}  # index -> rise (K) at _t[index]
        self._t: dict[int, float] = {}

    def temp_at(self, index: int, t_us: float) -> float:
        """Rise (K) at ``t_us`` (cooling since the last :meth:`run`)."""
        act = self.amap[index]
        t0 = self._t.get(index)
        if t0 is None:
            return 0.0
        return heat_after(self._temp[index], max(0.0, t_us - t0), 0.0, act.tau_s * 1e6)

    def run(self, index: int, t0_us: float, t1_us: float, level: int) -> float:
        """The coil at ``level`` over ``[t0_us, t1_us)``; returns the rise at ``t1_us``."""
        act = self.amap[index]
        temp = self.temp_at(index, t0_us)
        rate = heat_rate(act, level / act.pwm_max)
        temp = heat_after(temp, t1_us - t0_us, rate, act.tau_s * 1e6)
        self._temp[index] = temp
        self._t[index] = t1_us
        return temp

    def limit_k(self, index: int) -> float:
        return heat_limit_k(self.amap[index], self.margin)

    def over(self, index: int, t_us: float) -> bool:
        return self.temp_at(index, t_us) > self.limit_k(index)

    def time_to_limit_us(self, index: int, t_us: float, level: int) -> int | None:
        """µs the coil may stay at ``level`` from ``t_us`` before its limit, None: for ever."""
        act = self.amap[index]
        return time_to_limit_us(
            self.temp_at(index, t_us),
            heat_rate(act, level / act.pwm_max),
            act.tau_s * 1e6,
            self.limit_k(index),
        )

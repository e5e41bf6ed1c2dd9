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

import numpy as np

from .spec.actuators import Actuator, ActuatorMap

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


# ---- the firmware's duty limit, against the coil's heat ----------------------------------
# The firmware's bucket (below) is a linear leaky integrator; the coil is an exponential
# one, and a real coil's heat capacity and time constant stray from the spec's. The limit
# is chosen so that NO drive pattern the bucket lets through heats a coil within
# COIL_THERMAL_TOLERANCE of the spec past its max_rise_k (docs/hardware.md, "Coil heat").
# Bound: the bucket holds every stretch [s, t] to ∫w ≤ c + q·(t − s) (c: the cap plus
# one poll of slack, q: the drain plus the weight's rounding), and ∫w ≤ t − s; the
# hottest rise any such w gives is S·(1 − (1 − q)·exp(−c / ((1 − q)·τ))) (S: the steady
# rise at full drive), reached by holding q for ever, then full drive until the cut.

COIL_THERMAL_TOLERANCE = 0.10  # a coil's heat capacity and tau each within ±10 % of the spec's
DUTY_HEADROOM = 0.25  # the sustained limit is this share below the hottest coil's
DUTY_SLACK_US = 8000 + 64  # the cut comes up to one duty poll and one unit late


def worst_full_rise_k(act: Actuator) -> float:
    """Steady rise (K) at full drive of the hottest coil within the tolerance (heat
    capacity low, time constant long)."""
    tol = COIL_THERMAL_TOLERANCE
    return act.heat_k_per_s / (1.0 - tol) * act.tau_s * (1.0 + tol)


def worst_tau_s(act: Actuator) -> float:
    """The longest time constant within the tolerance (the slowest to cool)."""
    return act.tau_s * (1.0 + COIL_THERMAL_TOLERANCE)


def weight_shortfall(pwm_max: int) -> float:
    """The most by which the bucket's weight (:func:`duty_weight` / 256) falls short of
    the level's real duty², over every level of ``pwm_max``."""
    return _weight_shortfall(int(pwm_max))


def _weight_shortfall_of(pwm_max: int) -> float:
    lv = np.arange(pwm_max + 1, dtype=np.int64)
    pm = np.full_like(lv, pwm_max)
    duty = lv / pwm_max
    return float(max(0.0, (duty * duty - duty_weights(pm, lv) / 256.0).max()))


_SHORTFALL: dict[int, float] = {}


def _weight_shortfall(pwm_max: int) -> float:
    v = _SHORTFALL.get(pwm_max)
    if v is None:
        v = _SHORTFALL[pwm_max] = _weight_shortfall_of(pwm_max)
    return v


def duty_permille(act: Actuator) -> int:
    """The firmware's duty limit (1/1000 of full drive², 1..1000): ``1 − DUTY_HEADROOM``
    of what the hottest coil within the tolerance may keep up for ever; 1000 (no limit)
    when even that coil stays within its rise at full drive."""
    share = act.max_rise_k / worst_full_rise_k(act) if act.heat_k_per_s > 0 else math.inf
    if share >= 1.0:
        return 1000
    return max(1, min(1000, int(1000 * (1.0 - DUTY_HEADROOM) * share)))


def duty_window_limit_ms(act: Actuator) -> float:
    """The longest duty window (ms, before clamping) that keeps the hottest coil within
    its rise under every pattern the bucket allows (see the bound above); ``inf`` with no
    duty limit, 0 or less when no window can (the drain plus the rounding too close to
    the coil's sustainable duty: :func:`duty_limit_problem`)."""
    pm = duty_permille(act)
    if pm >= 1000:
        return math.inf
    share = act.max_rise_k / worst_full_rise_k(act)
    q = duty_drain_k(pm) / (DUTY_UNIT_US * 256) + weight_shortfall(act.pwm_max)
    if q >= share:
        return 0.0
    c_us = worst_tau_s(act) * 1e6 * (1.0 - q) * math.log((1.0 - q) / (1.0 - share))
    return (c_us - DUTY_SLACK_US) / pm


DUTY_WINDOW_MS = (100, 600_000)  # the protocol's range of configure_begin.duty_window_ms


def duty_window_ms(act: Actuator) -> int:
    """The firmware's duty averaging window for this coil: the coil's time constant
    when it has no duty limit, else :func:`duty_window_limit_ms` (floor), clamped to
    the protocol's 100 ms..600 s (:func:`duty_limit_problem` says when the clamp would
    let the coil overheat)."""
    lim = duty_window_limit_ms(act)
    w = act.tau_s * 1000 if math.isinf(lim) else math.floor(lim)
    return int(max(DUTY_WINDOW_MS[0], min(DUTY_WINDOW_MS[1], w)))


def duty_limit_problem(act: Actuator) -> str | None:
    """Why the firmware's duty limit cannot keep this coil within its rating, or would
    cut its hold (None: neither): its shortest duty window is under the protocol's
    100 ms, or the hold's weight is more than the limit drains (every long hold cut)."""
    lim = duty_window_limit_ms(act)
    if lim >= DUTY_WINDOW_MS[0]:
        pm = duty_permille(act)
        w = duty_weight(act.pwm_max, act.hold_counts)
        if pm >= 1000 or w * DUTY_UNIT_US <= duty_drain_k(pm):
            return None
        return (
            f"the firmware's duty limit for coil {act.role!r} ({pm}/1000 of full drive², "
            f"to keep a coil {COIL_THERMAL_TOLERANCE:.0%} off the spec within its "
            f"{act.max_rise_k:g} K rise) is below its hold's weight ({act.hold_duty:g} of full "
            f"drive: {w}/256), so the firmware would cut every long hold"
        )
    return (
        f"the firmware's duty limit cannot keep coil {act.role!r} within its "
        f"{act.max_rise_k:g} K rise: a coil {COIL_THERMAL_TOLERANCE:.0%} off the spec "
        f"(heat capacity, tau) reaches {worst_full_rise_k(act):.4g} K at full drive, and the "
        f"duty window it would need is {max(lim, 0.0):.0f} ms (allowed "
        f"{DUTY_WINDOW_MS[0]}..{DUTY_WINDOW_MS[1]} ms)"
    )


def map_duty_window_ms(amap: ActuatorMap) -> int:
    """The one window the firmware is configured with (``configure_begin``): the shortest
    :func:`duty_window_ms` of a coil with a duty limit (a shorter window only lowers
    every other coil's cap); with none, the slowest coil's time constant (1000 for an
    empty map)."""
    limited = [duty_window_ms(a) for a in amap if duty_permille(a) < 1000]
    if limited:
        return min(limited)
    slowest = max(amap, key=lambda a: a.tau_s, default=None)
    return duty_window_ms(slowest) if slowest is not None else 1000


# ---- the firmware's duty bucket (firmware/core/sched.c; docs/protocol.md "Duty") ----
# Integer arithmetic, exactly as the C core does it, so that the firmware's Python model
# (robo_player/sim/vmcu.py), the sim:// device (robo_player/sim/limits.py) and the
# planner (the pedal, robo_player/planner/pedal.py) cut and refuse where the firmware does.

DUTY_UNIT_US = 64  # sched.c DUTY_UNIT_TICKS: the bucket integrates in 64 µs units
DUTY_POLL_US = 8000  # sched.c DUTY_POLL_TICKS: the duty poll (the cutoff) runs this often


def duty_weight(pwm_max: int, level: int) -> int:
    """sched.c weight_of(): a level's share of full drive squared, in 1/256 (1..255;
    0 when off): r = floor(256 * level / pwm_max) (256 at or past pwm_max), w = r² >> 8."""
    if not level:
        return 0
    r = 256 if level >= pwm_max else (level * 256) // pwm_max
    return max(1, min(255, (r * r) >> 8))


def duty_weights(pwm_max: np.ndarray, level: np.ndarray) -> np.ndarray:
    """:func:`duty_weight` of every element (integer arrays of one shape)."""
    r = np.where(level >= pwm_max, 256, (level * 256) // np.maximum(pwm_max, 1))
    return np.where(level > 0, np.clip((r * r) >> 8, 1, 255), 0)


def duty_drain_k(duty_permille: int) -> int:
    """fw.c configure: the bucket's drain per 64 µs unit, in 1/256 µs."""
    return (64 * 256 * duty_permille) // 1000


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
    ``full(t_us)``: would the firmware refuse a command that turns the coil on then?
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

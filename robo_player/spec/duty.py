"""The firmware's duty limit, sized against the coil's heat (the numbers a spec must allow).

The spec loader refuses thermal numbers that no duty limit can protect
(:func:`duty_limit_problem`), so this arithmetic sits with the spec; :mod:`robo_player.rules`
re-exports every name here, and the rest of the code reads it from there.
"""

from __future__ import annotations

import math

import numpy as np

from .actuators import Actuator, ActuatorMap

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

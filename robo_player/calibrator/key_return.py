"""Key return: how long a released key needs to come back up (``KeyCurve.return_us``).

A strike ``e`` µs after the key's release, ``e < R`` (the key's return time), acts as if
its drive were scaled by ``e / R`` (and is silent below ``e / R = 0.5``). One full-drive
probe strike a known gap ``g < R`` after a release therefore reads ``R = g * d / d_eff``,
``d_eff`` read back through the key's own fitted curves (:func:`drive_from_heard`);
:class:`ReturnEstimate` stores it with a safety margin. See ``docs/calibration.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .fitting import KeyFit
from .scheduler import STAGGER_US, ProbeRequest
from .strikes import (
    ACTION_LAT_SD_FRAC,
    ACTION_LAT_SD_US,
    ACTION_VEL_SD_FRAC,
    LAT_DOUBTFUL_AUDIO_US,
    LAT_NOISE_US,
    SILENT_LATENCY_US,
    VEL_CLIP,
    VEL_NOISE,
    StrikeResult,
    latest_latency_us,
)

# --- key return (see docs/calibration.md, "Key return") -----------------------------------
# A strike e µs after the key's release, e < R (the key's return time), acts as if its
# drive were scaled by e / R (and is silent below e / R = 0.5). One full-drive probe
# strike a known gap g after a release therefore reads R = g * d / d_eff, d_eff read back
# through the key's own fitted curves. g is chosen from the spec's nominal return time
# so that the ratio g / R stays in about 0.53..0.96 for R of 0.7..1.3 x nominal: heard,
# and on the steep part of the latency curve.
PROBE_GAP_FRACTION = 0.68  # first probe gap, of the spec's nominal key_return_us
PROBE_DRIVE = 1.0  # probe strikes at full drive: loudest, so heard deepest into the return
PROBE_FULL_RATIO = 0.95  # d_eff / d at or above this: as good as full strength, R <~ g
PROBE_MIN_GAP_US = 8_000
# per key: one, and one retry at another gap if the first was inconclusive (or loose,
# below); a third only where the two bracket R, one heard at full strength (an upper
# bound) and none measuring it (with the spread a full-strength probe's bound is taken
# two s.d. on the safe side: 18 ms over R on key 22 of truth seed 1, silent at half its
# gap; the third lands between). Not for a key silent at both: slower than any
# plausible return, its ordinary strikes too may find it not up, and its curves with it
MAX_PROBES = 3
MAX_PROBES_MEASURED = 2  # ... and no more than two once one measured R
# ... or if it measured R with more than this s.d. (the action's own spread: one strike's
# latency scatters 0.5-1 ms at a probe's 20-40 ms, 1.8 ms on R): a second probe at
# PROBE_AGAIN_RATIO x that estimate, averaged with the first by inverse variance; and
# (session 15) a third where the two still leave the strikes' part of the s.d. over it
# (one stroke 3 s.d. early and loud read R 4.8 ms short on key 57 of truth seed 2). The
# budget has room: 11 curve strikes + 3 probes = 14
PROBE_AGAIN_SD_US = 800.0
PROBE_AGAIN_RATIO = 0.7
# Margin added to the estimate so a planner waiting return_us never strikes a key that
# is not fully up: a fixed part for the curve fit's own error plus a multiple of the
# estimate's s.d. (session 15: 2.5, was 2; the s.d. now honest, its tail is the action's
# strokes: over truth seeds 1-8, 2 s.d. left 4 of 704 keys short of R, by up to 0.67 ms,
# 2.5 one, by 0.24 ms; bench/bench_repetition.py --calibration-only)
RETURN_MARGIN_US = 600.0
RETURN_MARGIN_SD = 2.5
# What a probe's reading of ``d_eff`` errs by (session 15; docs/calibration.md "Key return",
# "Reading it"): the sensor, the strike's own spread, and the key's fitted curves. The
# strike's scatter at the probe is the assumed one (sensor noise and the action's spread,
# independent sources) scaled by how much the key's own strikes scatter about its curves
# (:func:`key_scatter`), at least RETURN_SPREAD_MIN of it: a scale from about nine
# residuals is known to within about +-45 % (its 5th percentile is 0.58 of the true one)
RETURN_SPREAD_MIN = 0.6
# the curves' own error at the probe, as a fraction of one strike's scatter there: three
# parameters per curve from ~11 strikes give sqrt(3 / 11) = 0.52 on average over the
# strikes, about twice that variance at the loud end where a probe reads (the edge of the
# strikes: its leverage), sqrt(6 / 11) = 0.74; the same for every probe of the key, so
# not averaged away by a second probe (:func:`return_estimate`)
CURVE_SE = 0.7
# A late stroke is a weak one (docs/simulator.md, "Spread": assumed, as its s.d.s): one
# strike's latency and loudness readings of its drive err the same way, correlated by
# about this (the spread's part of each; the sensor's are independent)
ACTION_SPREAD_CORR = 0.6


@dataclass(frozen=True, slots=True)
class ReturnEstimate:
    """What one or more key-return probes say about a key's return time ``R``.

    ``kind``: ``"measured"`` (``value_us`` estimates R, ``sd_us`` its sensor-noise s.d.),
    ``"upper"`` (the probe sounded at full strength: R <= ``value_us``), ``"lower"``
    (silent: R > ``value_us``) or ``"none"`` (no probe, or none usable)."""

    kind: str
    value_us: float = math.nan
    sd_us: float = math.nan
    # the part of ``sd_us`` from the key's fitted curves, shared by all its probes
    curve_sd_us: float = 0.0

    @property
    def return_us(self) -> float | None:
        """What to store in ``KeyCurve.return_us``: the estimate plus a safety margin
        (so waiting this long after a release finds the key fully up), an upper bound
        plus the fixed margin, or None when the probes could not bound R from above."""
        if self.kind == "measured":
            return self.value_us + RETURN_MARGIN_US + RETURN_MARGIN_SD * self.sd_us
        if self.kind == "upper":
            return self.value_us + RETURN_MARGIN_US
        return None

    @property
    def estimate_us(self) -> float | None:
        """What to store in ``KeyCurve.return_est_us``: the estimate (or upper bound)
        without the margin, by which a re-strike on the partly returned key scales its
        drive (a margin there would make it too strong); None with no ``return_us``."""
        return self.value_us if self.kind in ("measured", "upper") else None


def _invert(curve: np.ndarray, grid: np.ndarray, y: float) -> tuple[float, float]:
    """Drive on ``grid`` where the monotone ``curve`` reaches ``y``, and |dy/dd| there."""
    inc = curve[-1] >= curve[0]
    c, g = (curve, grid) if inc else (curve[::-1], grid[::-1])
    d = float(np.interp(y, c, g))
    slope = float(
        np.abs(np.gradient(curve, grid))[int(np.clip(np.searchsorted(grid, d), 0, grid.size - 1))]
    )
    return d, slope


def _lat_sd_us(latency_us: float) -> float:
    """One strike's assumed latency scatter (µs): the sensor and the action's spread."""
    spread = ACTION_LAT_SD_FRAC * latency_us
    return math.sqrt(LAT_NOISE_US**2 + ACTION_LAT_SD_US**2 + spread * spread)


def _vel_sd(velocity: float) -> float:
    """One strike's assumed loudness scatter (velocity units)."""
    return math.hypot(VEL_NOISE, ACTION_VEL_SD_FRAC * velocity)


def key_scatter(fit: KeyFit, strikes: Sequence[StrikeResult]) -> tuple[float, float]:
    """How much a key's own strikes scatter about its fitted curves, as multiples of the
    assumed scatter (:func:`_lat_sd_us`, :func:`_vel_sd`): latency, loudness; each the
    rms of the normalised residuals of its heard ordinary strikes (three parameters per
    curve fitted: n - 3 degrees of freedom), at least :data:`RETURN_SPREAD_MIN`.

    Not the fit's residual rms (:attr:`KeyFit.lat_rms_us`): the soft end's slow strikes,
    which scatter 3-6 ms, set that, not a probe's at 20-40 ms."""
    zl: list[float] = []
    zv: list[float] = []
    for s in strikes:
        if s.probe_gap_us is not None or not s.heard or s.doubtful or s.missed:
            continue
        lat = float(fit.latency_us(s.drive))
        if math.isfinite(lat) and math.isfinite(s.latency_us):
            zl.append((s.latency_us - lat) / _lat_sd_us(lat))
        vel = float(fit.velocity(s.drive))
        if math.isfinite(s.velocity) and s.velocity < VEL_CLIP:
            zv.append((s.velocity - vel) / _vel_sd(vel))

    def scale(z: list[float]) -> float:
        if len(z) <= 3 or fit.isotonic:
            return 1.0  # nothing to tell it by: as assumed
        return max(RETURN_SPREAD_MIN, math.sqrt(sum(x * x for x in z) / (len(z) - 3)))

    return scale(zl), scale(zv)


def _heard_drive(
    fit: KeyFit, latency_us: float, velocity: float, lat_extra_us: float, scatter: tuple[float, float],
) -> tuple[float, float, float]:
    """The drive (at full key return) that would sound like this: (d, the s.d. of this
    strike's own part of its error, the s.d. of the curves' part)."""
    lo = fit.theta + 1e-4 if not fit.isotonic else float(fit.iso_drive[0])
    grid = np.linspace(lo, 1.0, 4001)  # (G,) drives
    d_l, s_l = _invert(fit.latency_us(grid), grid, latency_us)
    d_v, s_v = _invert(fit.velocity(grid), grid, velocity)
    k_l, k_v = scatter
    s_l, s_v = max(s_l, 1e-9), max(s_v, 1e-9)
    # (in drive units) the strike's scatter: sensor + spread, the spread's share of it
    one_l = k_l * _lat_sd_us(latency_us) / s_l
    spr_l = k_l * math.hypot(ACTION_LAT_SD_US, ACTION_LAT_SD_FRAC * latency_us) / s_l
    var_l = one_l**2 + (lat_extra_us / s_l) ** 2
    cur_l = CURVE_SE * one_l
    vel_ok = math.isfinite(velocity) and lo < d_v < 1.0
    if not lo < d_l < 1.0:
        var_l = max(var_l, 1e-4)  # off the latency table: weak
    if not vel_ok:  # off the loudness table (saturated or clipped): no information
        return d_l, math.sqrt(var_l), cur_l
    one_v = k_v * _vel_sd(velocity) / s_v
    spr_v = k_v * ACTION_VEL_SD_FRAC * velocity / s_v
    cur_v = CURVE_SE * one_v
    # generalised least squares of the two readings: each strike's errors correlated
    # (a late stroke is a weak one), each curve's its own. A weight may fall outside
    # [0, 1]: the less precise reading then tells the stroke's own deviation, and
    # corrects the other for it (E3 of truth seed 1, three probes early and loud: R read
    # 3.00 ms short, 3.18 with the weights clamped to [0, 1]; truth seeds 1-8 alike)
    c_ll, c_vv = var_l + cur_l**2, one_v**2 + cur_v**2
    c_lv = ACTION_SPREAD_CORR * spr_l * spr_v
    det = c_ll * c_vv - c_lv * c_lv
    w_l, w_v = (c_vv - c_lv) / det, (c_ll - c_lv) / det
    tot = w_l + w_v
    w_l, w_v = w_l / tot, w_v / tot
    d = w_l * d_l + w_v * d_v
    strike_var = w_l**2 * var_l + w_v**2 * one_v**2 + 2 * w_l * w_v * c_lv
    curve_sd = math.hypot(w_l * cur_l, w_v * cur_v)
    return d, math.sqrt(max(strike_var, 0.0)), curve_sd


def drive_from_heard(
    fit: KeyFit, latency_us: float, velocity: float, lat_extra_us: float = 0.0,
    scatter: tuple[float, float] = (1.0, 1.0),
) -> tuple[float, float]:
    """The drive (at full key return) that would sound like this, and its s.d.

    Inverts the key's fitted latency and loudness curves and combines the two readings
    by generalised least squares: each errs by the sensor's noise and the action's own
    spread (the assumed figures at this strike's latency and loudness, scaled by
    ``scatter``: :func:`key_scatter`; the two spreads correlated, a late stroke being a
    weak one) and by the fitted curve's own error there, over the local slope;
    ``lat_extra_us``: more onset noise, a doubtful onset's."""
    d, sd_strike, sd_curve = _heard_drive(fit, latency_us, velocity, lat_extra_us, scatter)
    return d, math.hypot(sd_strike, sd_curve)


def probe_estimate(
    fit: KeyFit, probe: StrikeResult, scatter: tuple[float, float] = (1.0, 1.0)
) -> ReturnEstimate:
    """What one probe struck ``probe.probe_gap_us`` after a release says about R
    (``scatter``: the key's, :func:`key_scatter`)."""
    gap = float(probe.probe_gap_us or 0)
    if gap <= 0:
        return ReturnEstimate("none")
    if not probe.heard:
        # silent: either e / R < 0.5 or the scaled drive fell below what sounds
        audible = fit.drive_for_latency(SILENT_LATENCY_US)
        return ReturnEstimate("lower", gap * probe.drive / max(0.5 * probe.drive, audible))
    # a doubtful onset (the detector timed it without its direct sound): its loudness decides
    extra = LAT_DOUBTFUL_AUDIO_US if probe.doubtful else 0.0
    d_eff, sd_strike, sd_curve = _heard_drive(fit, probe.latency_us, probe.velocity, extra, scatter)
    sd = math.hypot(sd_strike, sd_curve)
    ratio = d_eff / probe.drive
    if ratio >= PROBE_FULL_RATIO:
        # near full strength the curves are flat and R <= g is possible: only a bound,
        # taken two s.d. on the safe side
        return ReturnEstimate("upper", max(gap, gap / max(ratio - 2 * sd / probe.drive, 0.5)))
    r = gap / ratio
    return ReturnEstimate("measured", r, r * sd / d_eff, r * sd_curve / d_eff)


def return_estimate(fit: KeyFit | None, strikes: Sequence[StrikeResult]) -> ReturnEstimate:
    """Combine every probe of a key: measured values by inverse variance (their curves'
    part of the error is the same for all: not averaged away), else the tightest upper
    bound, else the highest lower bound."""
    probes = [s for s in strikes if s.probe_gap_us is not None]
    if fit is None or not probes:
        return ReturnEstimate("none")
    scatter = key_scatter(fit, strikes)
    ests = [probe_estimate(fit, s, scatter) for s in probes]
    meas = [e for e in ests if e.kind == "measured"]
    if meas:
        w = np.array([1.0 / max(e.sd_us, 1.0) ** 2 for e in meas])
        w /= w.sum()
        v = np.array([e.value_us for e in meas])
        own = np.array([max(e.sd_us**2 - e.curve_sd_us**2, 0.0) for e in meas])
        curve = float((w * np.array([e.curve_sd_us for e in meas])).sum())
        sd = math.sqrt(float((w * w * own).sum()) + curve * curve)
        return ReturnEstimate("measured", float((w * v).sum()), sd, curve)
    ups = [e.value_us for e in ests if e.kind == "upper"]
    if ups:
        return ReturnEstimate("upper", min(ups))
    lows = [e.value_us for e in ests if e.kind == "lower"]
    return ReturnEstimate("lower", max(lows)) if lows else ReturnEstimate("none")


def next_probe(
    fit: KeyFit | None, strikes: Sequence[StrikeResult], first_gap_us: int
) -> ProbeRequest | None:
    """The next key-return probe for one key, or None when it needs no more."""
    if fit is None:
        return None
    probes = [s for s in strikes if s.probe_gap_us is not None]
    if len(probes) >= MAX_PROBES:
        return None
    if not probes:
        gap = first_gap_us
    else:
        est = return_estimate(fit, strikes)
        last = probe_estimate(fit, probes[-1], key_scatter(fit, strikes))
        if len(probes) >= MAX_PROBES_MEASURED and not (
            (est.kind == "upper" and last.kind == "lower") or est.kind == "measured"
        ):
            return None  # the third: only between an upper bound and a silent probe, or measured loosely
        if est.kind == "measured":
            # another probe narrows the strikes' part of the s.d., not the curves'
            if math.sqrt(max(est.sd_us**2 - est.curve_sd_us**2, 0.0)) <= PROBE_AGAIN_SD_US:
                return None
            gap = int(PROBE_AGAIN_RATIO * est.value_us)
        elif last.kind == "upper":  # full strength: R <= gap; look closer
            gap = int(0.5 * (probes[-1].probe_gap_us or first_gap_us))
        elif last.kind == "lower":  # silent: R > bound; heard up to 1.8 x the bound
            gap = int(0.9 * last.value_us)
        else:
            return None
    gap = max(PROBE_MIN_GAP_US, round(gap / STAGGER_US) * STAGGER_US)
    if probes and gap == probes[-1].probe_gap_us and est.kind != "measured":
        return None
    # the slowest it can be: half the drive (e / R = 0.5), or silent
    d_half = 0.5 * PROBE_DRIVE
    lat = float(fit.latency_us(d_half)) if d_half > fit.theta else math.inf
    return ProbeRequest(gap, PROBE_DRIVE, latest_latency_us(lat), onset_us=lat)

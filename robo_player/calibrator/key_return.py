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
# PROBE_AGAIN_RATIO x that estimate, averaged with the first by inverse variance
PROBE_AGAIN_SD_US = 800.0
PROBE_AGAIN_RATIO = 0.7
# Margin added to the estimate so a planner waiting return_us never strikes a key that
# is not fully up: a fixed part for the curve fit's own error plus a multiple of the
# estimate's sensor-noise s.d.
RETURN_MARGIN_US = 600.0
# the probe's spread is taken as at least this fraction of the assumed one, whatever the
# key's residuals said (:attr:`KeyFit.spread`: about nine strikes tell it roughly)
RETURN_SPREAD_MIN = 0.25
RETURN_MARGIN_SD = 2.0


@dataclass(frozen=True, slots=True)
class ReturnEstimate:
    """What one or more key-return probes say about a key's return time ``R``.

    ``kind``: ``"measured"`` (``value_us`` estimates R, ``sd_us`` its sensor-noise s.d.),
    ``"upper"`` (the probe sounded at full strength: R <= ``value_us``), ``"lower"``
    (silent: R > ``value_us``) or ``"none"`` (no probe, or none usable)."""

    kind: str
    value_us: float = math.nan
    sd_us: float = math.nan

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


def drive_from_heard(
    fit: KeyFit, latency_us: float, velocity: float, lat_extra_us: float = 0.0,
) -> tuple[float, float]:
    """The drive (at full key return) that would sound like this, and its s.d.

    Inverts the key's fitted latency and loudness curves and combines the two by
    inverse variance (sensor noise, the action's own spread at this strike's latency and
    loudness as the key's fit found it (:attr:`KeyFit.spread`), plus the fit's own residual rms; ``lat_extra_us``: more onset noise, a
    doubtful onset's)."""
    lo = fit.theta + 1e-4 if not fit.isotonic else float(fit.iso_drive[0])
    grid = np.linspace(lo, 1.0, 4001)  # (G,) drives
    d_l, s_l = _invert(fit.latency_us(grid), grid, latency_us)
    d_v, s_v = _invert(fit.velocity(grid), grid, velocity)
    k = max(fit.spread, RETURN_SPREAD_MIN)
    spread_l = k * (ACTION_LAT_SD_US + ACTION_LAT_SD_FRAC * latency_us)
    spread_v = k * ACTION_VEL_SD_FRAC * velocity if math.isfinite(velocity) else 0.0
    var_l = ((LAT_NOISE_US + lat_extra_us) ** 2 + spread_l**2 + fit.lat_rms_us**2) / max(s_l, 1e-9) ** 2
    var_v = (VEL_NOISE**2 + spread_v**2 + min(fit.vel_rms, 10.0) ** 2) / max(s_v, 1e-9) ** 2
    if not math.isfinite(velocity) or d_v >= 1.0 or d_v <= lo:
        var_v = math.inf  # off the loudness table (saturated or clipped): no information
    if d_l >= 1.0 or d_l <= lo:
        var_l = max(var_l, 1e-4)  # off the latency table: weak
    w_l, w_v = 1.0 / var_l, (0.0 if math.isinf(var_v) else 1.0 / var_v)
    d = (w_l * d_l + w_v * d_v) / (w_l + w_v)
    return d, math.sqrt(1.0 / (w_l + w_v))


def probe_estimate(fit: KeyFit, probe: StrikeResult) -> ReturnEstimate:
    """What one probe struck ``probe.probe_gap_us`` after a release says about R."""
    gap = float(probe.probe_gap_us or 0)
    if gap <= 0:
        return ReturnEstimate("none")
    if not probe.heard:
        # silent: either e / R < 0.5 or the scaled drive fell below what sounds
        audible = fit.drive_for_latency(SILENT_LATENCY_US)
        return ReturnEstimate("lower", gap * probe.drive / max(0.5 * probe.drive, audible))
    # a doubtful onset (the detector timed it without its direct sound): its loudness decides
    extra = LAT_DOUBTFUL_AUDIO_US if probe.doubtful else 0.0
    d_eff, sd = drive_from_heard(fit, probe.latency_us, probe.velocity, extra)
    ratio = d_eff / probe.drive
    if ratio >= PROBE_FULL_RATIO:
        # near full strength the curves are flat and R <= g is possible: only a bound,
        # taken two s.d. on the safe side
        return ReturnEstimate("upper", max(gap, gap / max(ratio - 2 * sd / probe.drive, 0.5)))
    r = gap / ratio
    return ReturnEstimate("measured", r, r * sd / d_eff)


def return_estimate(fit: KeyFit | None, strikes: Sequence[StrikeResult]) -> ReturnEstimate:
    """Combine every probe of a key: measured values by inverse variance, else the
    tightest upper bound, else the highest lower bound."""
    probes = [s for s in strikes if s.probe_gap_us is not None]
    if fit is None or not probes:
        return ReturnEstimate("none")
    ests = [probe_estimate(fit, s) for s in probes]
    meas = [e for e in ests if e.kind == "measured"]
    if meas:
        w = np.array([1.0 / max(e.sd_us, 1.0) ** 2 for e in meas])
        v = np.array([e.value_us for e in meas])
        return ReturnEstimate("measured", float((w * v).sum() / w.sum()), float(w.sum() ** -0.5))
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
        last = probe_estimate(fit, probes[-1])
        if len(probes) >= MAX_PROBES_MEASURED and (est.kind != "upper" or last.kind != "lower"):
            return None  # the third: only between an upper bound and a silent probe
        if est.kind == "measured":
            if est.sd_us <= PROBE_AGAIN_SD_US:
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

"""Fitting one key's curves from its strikes (numpy only).

- latency ``L(d) = A * (d - theta) ** -alpha`` (drive start to string contact, µs);
- loudness ``V(d) = a + b * (1 - exp(-k * (d - theta)))`` (MIDI velocity units),

sharing the silent threshold ``theta``; both by weighted least squares (a profile
search over the one non-linear parameter and a linear solve for the rest), with a
monotone (isotonic) fallback when a fit is poor. :func:`curve_from_fit` turns a fit
into the dense table of a :class:`~robo_player.spec.calibration.KeyCurve`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from ..spec.calibration import KeyCurve
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
)

Floats: TypeAlias = Sequence[float] | np.ndarray  # (n,) numbers

ALPHA_PRIOR = (0.70, 0.15)  # latency exponent: mean, s.d. of a weak prior
K_PRIOR = (3.2, 2.0)  # loudness curvature in drive units: mean, s.d. of a weak prior

log = logging.getLogger(__name__)

TABLE_POINTS = 64


@dataclass(slots=True)
class KeyFit:
    """Fitted curves of one key (see module docstring)."""

    theta: float
    lat_a: float  # µs at (d - theta) == 1
    alpha: float
    vel_a: float
    vel_b: float
    vel_k: float
    lat_rms_us: float = 0.0
    vel_rms: float = 0.0
    # the action's spread this key's residuals show, as a fraction of the assumed one
    # (:func:`fit_key`; 1.0: as assumed, or not estimated)
    spread: float = 1.0
    isotonic: bool = False  # fell back to monotone interpolation of the measurements
    iso_drive: tuple[float, ...] = ()
    iso_latency: tuple[float, ...] = ()
    iso_velocity: tuple[float, ...] = ()

    def latency_us(self, d: np.ndarray | float) -> np.ndarray:
        d = np.asarray(d, dtype=float)
        if self.isotonic:
            return np.interp(d, self.iso_drive, self.iso_latency)
        x = np.maximum(d - self.theta, 1e-9)
        return np.asarray(self.lat_a * x ** (-self.alpha))

    def velocity(self, d: np.ndarray | float) -> np.ndarray:
        d = np.asarray(d, dtype=float)
        if self.isotonic:
            return np.interp(d, self.iso_drive, self.iso_velocity)
        x = np.maximum(d - self.theta, 0.0)
        return np.asarray(self.vel_a + self.vel_b * (1.0 - np.exp(-self.vel_k * x)))

    def drive_for_latency(self, latency_us: float) -> float:
        """Drive whose predicted latency is ``latency_us`` (clamped to 0..1)."""
        if self.isotonic:
            lat = np.asarray(self.iso_latency)[::-1]
            drv = np.asarray(self.iso_drive)[::-1]
            return float(np.clip(np.interp(latency_us, lat, drv), 0.0, 1.0))
        x = (latency_us / self.lat_a) ** (-1.0 / self.alpha)
        return float(min(1.0, max(0.0, self.theta + x)))


def _wls_line_with_prior(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, slope_prior: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit y = c - s*x by weighted LS with a Gaussian prior on s, for every row of ``x``.

    ``x``: (G, n) candidate regressors, ``y``, ``w``: (n,). Returns (c, s, cost), each (G,).
    """
    mu, sd = slope_prior
    # normal equations for (c, s): rows [1, -x_i] weighted w_i, plus the prior's row.
    a11 = w.sum()
    a12 = -(w * x).sum(axis=1)
    a22 = (w * x * x).sum(axis=1) + 1.0 / sd**2
    b1 = (w * y).sum()
    b2 = -(w * x * y).sum(axis=1) + mu / sd**2
    det = np.maximum(a11 * a22 - a12 * a12, 1e-300)
    c = (b1 * a22 - a12 * b2) / det
    s = (a11 * b2 - a12 * b1) / det
    r = y - (c[:, None] - s[:, None] * x)
    cost = (w * r * r).sum(axis=1) + ((s - mu) / sd) ** 2
    return c, s, cost


def _golden(f: Callable[[float], float], lo: float, hi: float, iters: int = 40) -> float:
    """Minimum of a unimodal ``f`` on [lo, hi] by golden-section search."""
    phi = (math.sqrt(5) - 1) / 2
    g1, g2 = hi - phi * (hi - lo), lo + phi * (hi - lo)
    f1, f2 = f(g1), f(g2)
    for _ in range(iters):
        if f1 < f2:
            hi, g2, f2 = g2, g1, f1
            g1 = hi - phi * (hi - lo)
            f1 = f(g1)
        else:
            lo, g1, f1 = g1, g2, f2
            g2 = lo + phi * (hi - lo)
            f2 = f(g2)
    return (lo + hi) / 2


def fit_latency(
    drive: Floats, latency_us: Floats, silent: Floats = (), rel_noise: float = 0.0,
    extra_us: Floats | None = None, noise_us: float = LAT_NOISE_US,
) -> tuple[float, float, float, float]:
    """Fit ``L = A (d - theta)^-alpha``; returns (theta, A, alpha, rms_us).

    Profile search over theta (the only non-linear parameter once log-transformed),
    each step a weighted line fit in log space with a weak prior on alpha; the weights
    make log-space residuals equivalent to the sensor's µs noise. ``silent`` drives
    (strikes that were not heard) add a one-sided penalty: the curve must put them
    below the threshold or slower than ``SILENT_LATENCY_US``. ``rel_noise``: the onset
    noise grows by this fraction of the latency (the detector: a slow soft strike's
    onset is the least sure, and near the threshold it has the most leverage; the
    action's own spread, :func:`fit_key`). ``noise_us``: the latency-independent part.
    """
    sil = np.asarray([x for x in silent if x < min(drive)], dtype=float)
    d = np.asarray(drive, dtype=float)
    lat = np.asarray(latency_us, dtype=float)
    if d.size < 2:
        raise ValueError("need at least two audible strikes")
    y = np.log(lat)
    extra = np.zeros_like(lat) if extra_us is None else np.asarray(extra_us, dtype=float)
    w = (lat / (noise_us + rel_noise * lat + extra)) ** 2
    top = float(d.min())

    def costs(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # g = log(top - theta): the cost varies on that scale near the asymptote
        theta = top - np.exp(g)
        c, s, cost = _wls_line_with_prior(np.log(d[None, :] - theta[:, None]), y, w, ALPHA_PRIOR)
        if sil.size:
            gap = np.maximum(sil[None, :] - theta[:, None], 1e-12)  # (G, S)
            log_l = c[:, None] - s[:, None] * np.log(gap)
            short = np.maximum(0.0, math.log(SILENT_LATENCY_US) - log_l)
            short = np.where(sil[None, :] > theta[:, None], short, 0.0)
            cost = cost + (short / 0.01).sum(axis=1) ** 2
        return c, s, cost

    gs = np.linspace(math.log(1e-6), math.log(max(top, 2e-6)), 120)
    i = int(np.argmin(costs(gs)[2]))
    g = _golden(
        lambda v: float(costs(np.array([v]))[2][0]),
        float(gs[max(i - 1, 0)]),
        float(gs[min(i + 1, gs.size - 1)]),
    )
    c, s, _ = costs(np.array([g]))
    theta = top - math.exp(g)
    a, alpha = math.exp(float(c[0])), float(s[0])
    pred = a * (d - theta) ** (-alpha)
    rms = float(np.sqrt(np.mean((pred - lat) ** 2)))
    return theta, a, alpha, rms


def fit_velocity(
    drive: Floats, velocity: Floats, theta: float, noise: Floats | float = VEL_NOISE,
) -> tuple[float, float, float, float]:
    """Fit ``V = a + b (1 - exp(-k (d - theta)))`` with theta fixed; (a, b, k, rms).

    ``noise``: each strike's loudness s.d. (one figure, or one per strike): the
    residuals are weighed by it against the weak prior on ``k``."""
    d = np.asarray(drive, dtype=float)
    v = np.asarray(velocity, dtype=float)
    x = np.maximum(d - theta, 0.0)
    w = np.broadcast_to(1.0 / np.asarray(noise, dtype=float) ** 2, v.shape)
    mu, sd = K_PRIOR

    def solve(k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = 1.0 - np.exp(-k[:, None] * x[None, :])  # (G, n)
        n = float(w.sum())
        sf, sv = (w * f).sum(axis=1), float((w * v).sum())
        sff, sfv = (w * f * f).sum(axis=1), (w * f * v).sum(axis=1)
        det = n * sff - sf * sf
        ok = det > 1e-12
        safe = np.where(ok, det, 1.0)
        a = np.where(ok, (sff * sv - sf * sfv) / safe, 0.0)
        b = np.where(ok, (n * sfv - sf * sv) / safe, sfv / np.maximum(sff, 1e-12))
        neg = a < 0  # loudness at the threshold cannot be negative: refit through 0
        a = np.where(neg, 0.0, a)
        b = np.where(neg, sfv / np.maximum(sff, 1e-12), b)
        r = v - (a[:, None] + b[:, None] * f)
        cost = (w * r * r).sum(axis=1) + ((k - mu) / sd) ** 2
        return a, b, cost

    ks = np.exp(np.linspace(math.log(0.2), math.log(25.0), 80))
    i = int(np.argmin(solve(ks)[2]))
    lk = _golden(
        lambda g: float(solve(np.array([math.exp(g)]))[2][0]),
        math.log(ks[max(i - 1, 0)]),
        math.log(ks[min(i + 1, ks.size - 1)]),
    )
    k = math.exp(lk)
    a_, b_, _ = solve(np.array([k]))
    a, b = float(a_[0]), float(b_[0])
    pred = a + b * (1.0 - np.exp(-k * x))
    rms = float(np.sqrt(np.mean((pred - v) ** 2)))
    return a, b, k, rms


def isotonic(y: Floats, increasing: bool = True) -> np.ndarray:
    """Pool-adjacent-violators: the least-squares monotone sequence closest to ``y``."""
    vals = [float(v) if increasing else -float(v) for v in y]
    blocks: list[list[float]] = []  # [sum, count]
    for v in vals:
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, n = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
    out: list[float] = []
    for s, n in blocks:
        out.extend([s / n] * int(n))
    arr = np.asarray(out)
    return arr if increasing else -arr


OUTLIER_SPREAD_SD = 4.0  # the spread's own deviations stay within about 4 s.d.
SPREAD_MIN = 0.0  # the least spread (of the assumed) a key's residuals may set: none
SPREAD_MAX = 2.0


def fit_key(
    strikes: Sequence[StrikeResult], vel_noise: float = VEL_NOISE, lat_noise_us: float = LAT_NOISE_US,
    lat_rel_noise: float = 0.0,
    spread: tuple[float, float, float] = (ACTION_LAT_SD_US, ACTION_LAT_SD_FRAC, ACTION_VEL_SD_FRAC),
    vel_rel_noise: float = 0.0,
) -> KeyFit | None:
    """Fit one key's curves from its strikes; None if fewer than two were heard.

    Key-return probes (``probe_gap_us`` set) are left out: the key was not fully up.
    ``vel_noise``, ``lat_noise_us``: the loudness and onset noise of what heard them (s.d.);
    ``lat_rel_noise``: the onset noise's part that grows with the latency (:func:`fit_latency`);
    ``vel_rel_noise``: the loudness noise's part that grows with the loudness (a fraction).
    ``spread``: the action's own strike-to-strike spread (s.d.): latency µs + fraction of
    the latency, loudness fraction (:data:`~.strikes.ACTION_LAT_SD_US` ...). Each strike
    weighs by the sensor's noise and the spread together, and the poor-fit test (the
    isotonic fallback) and the outlier test judge the residuals against both: a fit that
    averages through the action's own scatter is what is wanted, not one through every
    point.

    Two passes: the first with the assumed spread; then the spread the key's latency
    residuals show (beyond the sensor's noise, for the fit's degrees of freedom) scales
    it, within ``SPREAD_MIN``..``SPREAD_MAX`` of the assumed, for a second pass
    (:attr:`KeyFit.spread`; the key-return probe's s.d. uses it). A key that repeats
    better than assumed is weighed as the exact instrument it is; the second pass is
    kept only if it is not a poor fit."""
    first = _fit_key(strikes, vel_noise, lat_noise_us, lat_rel_noise, spread, vel_rel_noise)
    if first is None or first.isotonic or spread[0] + spread[1] <= 0:
        return first
    # a doubtful onset (its sensor noise swamps any spread) tells nothing of the spread
    kept = [s for s in strikes if s.probe_gap_us is None and s.heard and not s.doubtful and s.latency_us > 0]
    d = np.array([s.drive for s in kept])
    lat = np.array([s.latency_us for s in kept])
    if d.size < 5:
        return first
    r = first.latency_us(d) - lat
    sensor = lat_noise_us + lat_rel_noise * lat
    action = spread[0] + spread[1] * lat
    dof = d.size / (d.size - 3.0)  # theta, A, alpha fitted
    # the median (robust to the one outlier the rule lets through), over its value for
    # a normal deviation's square (0.455)
    scale2 = float(np.median((r * r * dof - sensor * sensor) / (action * action))) / 0.455
    scale = min(SPREAD_MAX, max(SPREAD_MIN, math.sqrt(max(scale2, 0.0))))
    second = _fit_key(strikes, vel_noise, lat_noise_us, lat_rel_noise, tuple(scale * x for x in spread),  # type: ignore[arg-type]
                      vel_rel_noise)
    if second is None or second.isotonic:
        return first
    second.spread = scale
    return second


def _fit_key(
    strikes: Sequence[StrikeResult], vel_noise: float, lat_noise_us: float, lat_rel_noise: float,
    spread: tuple[float, float, float], vel_rel_noise: float = 0.0,
) -> KeyFit | None:
    """One pass of :func:`fit_key` with a given spread."""
    sp_us, sp_frac, sp_vel = spread
    lat_noise_0 = lat_noise_us  # the sensor's alone
    lat_noise_us = math.hypot(lat_noise_us, sp_us)
    w_noise_us = math.hypot(LAT_NOISE_US, sp_us)  # the weights' fixed part (as ever: 0.2 ms)
    lat_rel_noise = lat_rel_noise + sp_frac
    strikes = [s for s in strikes if s.probe_gap_us is None]
    # a heard latency <= 0 is on no curve (an onset matched to the wrong strike, or
    # through audio a clock offset not yet right): left out, neither heard nor silent
    heard = [s for s in strikes if s.heard and s.latency_us > 0]
    if len(heard) < 2:
        return None
    silent = [s.drive for s in strikes if not s.heard and not s.missed]
    d = np.array([s.drive for s in heard])
    lat = np.array([s.latency_us for s in heard])
    vel = np.array([s.velocity for s in heard])
    # a doubtful onset (the detector timed it without its direct sound) weighs less
    extra = np.array([LAT_DOUBTFUL_AUDIO_US if s.doubtful else 0.0 for s in heard])
    keep = np.ones(d.size, dtype=bool)
    for _ in range(2):  # drop up to two gross outliers (a mismatched or disturbed strike)
        theta, la, alpha, _ = fit_latency(
            d[keep], lat[keep], silent, lat_rel_noise, extra[keep], w_noise_us
        )
        pred = la * np.maximum(d - theta, 1e-9) ** (-alpha)
        # more than 8 s.d. of the sensor or 2 % of the latency, and more than
        # OUTLIER_SPREAD_SD s.d. of the action's spread: a gross outlier
        bar = np.maximum(OUTLIER_SPREAD_SD * (sp_us + sp_frac * lat), np.maximum(8 * lat_noise_0, 0.02 * lat))
        resid = np.abs(pred - lat) / bar
        resid[~keep] = 0.0
        worst = int(np.argmax(resid))
        if keep.sum() >= 5 and resid[worst] > 1.0:
            keep[worst] = False
        else:
            break
    theta, la, alpha, lat_rms = fit_latency(
        d[keep], lat[keep], silent, lat_rel_noise, extra[keep], w_noise_us
    )
    vmask = keep & (vel < VEL_CLIP)
    vel_sd = np.hypot(vel_noise, math.hypot(sp_vel, vel_rel_noise) * np.maximum(vel, 0.0))  # (n,) each strike's s.d.
    vel_z = math.inf
    if vmask.sum() >= 2:
        va, vb, vk, vel_rms = fit_velocity(d[vmask], vel[vmask], theta, vel_sd[vmask])
        vpred = va + vb * (1.0 - np.exp(-vk * np.maximum(d[vmask] - theta, 0.0)))
        vel_z = float(np.sqrt(np.mean(((vpred - vel[vmask]) / vel_sd[vmask]) ** 2)))
    else:
        va, vb, vk, vel_rms = 0.0, float(np.nanmax(vel)), 3.0, math.inf
    fit = KeyFit(theta, la, alpha, va, vb, vk, lat_rms, vel_rms)
    consistent = all(  # a silent strike the fit says should have sounded: fit is wrong
        sd <= theta or float(fit.latency_us(sd)) > 0.8 * SILENT_LATENCY_US for sd in silent
    )
    # the latency residuals against their noise (its part that grows with the latency
    # included): more than 4 s.d. rms is a poor fit
    lk = lat[keep]
    lat_sd = lat_noise_us + 0.001 * float(lat.mean()) + lat_rel_noise * lk + extra[keep]
    lat_z = float(np.sqrt(np.mean(((la * np.maximum(d[keep] - theta, 1e-9) ** (-alpha) - lk) / lat_sd) ** 2)))
    poor = lat_z > 4 or vel_z > 3
    if (poor or not consistent or vb <= 0) and keep.sum() >= 4:
        log.info(
            "key fit poor (lat rms %.0f us, vel rms %.2f, consistent %s): isotonic fallback",
            lat_rms,
            vel_rms,
            consistent,
        )
        order = np.argsort(d)
        ds, ls, vs = d[order], lat[order], vel[order]
        fit.isotonic = True
        fit.iso_drive = tuple(float(x) for x in ds)
        fit.iso_latency = tuple(float(x) for x in isotonic(ls, increasing=False))
        fit.iso_velocity = tuple(float(x) for x in isotonic(vs, increasing=True))
        fit.theta = min(float(ds[0]) - 1e-4, max(silent, default=0.0) if silent else theta)
    return fit


def curve_from_fit(
    pitch: int,
    fit: KeyFit,
    max_latency_us: float,
    strikes: int,
    points: int = TABLE_POINTS,
    return_us: float | None = None,
    return_est_us: float | None = None,
) -> KeyCurve:
    """Dense monotone table from ``fit``, over drives whose latency <= ``max_latency_us``."""
    if fit.isotonic:
        dd = np.asarray(fit.iso_drive)
        lat = np.asarray(fit.iso_latency)
        ok = lat <= max_latency_us
        if not ok.any():
            ok[-1] = True
        dd = dd[ok]
        if dd.size < 2 or dd[-1] < 1.0:
            dd = np.append(dd, 1.0) if dd[-1] < 1.0 else dd
        drive = np.unique(dd)
        latency = fit.latency_us(drive)
        velocity = fit.velocity(drive)
    else:
        d_lo = fit.drive_for_latency(max_latency_us)
        d_lo = max(d_lo, fit.theta + 1e-6)
        if d_lo >= 1.0:
            d_lo = fit.theta + 0.5 * (1.0 - fit.theta)
        # Space the points so the chord error of the (convex) latency curve is about
        # even along the table: with L ~ x^-alpha that error ~ L (dx/x)^2, so points are
        # uniform in x^(-alpha/2), x = d - theta (denser where the curve is slow, steep).
        h = -fit.alpha / 2
        x = np.linspace((d_lo - fit.theta) ** h, (1.0 - fit.theta) ** h, points) ** (1.0 / h)
        drive = fit.theta + x
        drive[-1] = 1.0
        latency = fit.latency_us(drive)
        velocity = fit.velocity(drive)
    drive_t = tuple(round(float(v), 6) for v in drive)
    # rounding may merge neighbours; keep strictly increasing
    keep = [0] + [i for i in range(1, len(drive_t)) if drive_t[i] > drive_t[i - 1]]
    vel = np.maximum.accumulate(np.asarray(velocity, dtype=float)[keep])
    lat = np.minimum.accumulate(np.asarray(latency, dtype=float)[keep])
    theta = min(fit.theta, drive_t[keep[0]] - 1e-6)
    return KeyCurve(
        pitch=pitch,
        threshold=max(0.0, round(theta, 6) if round(theta, 6) < drive_t[keep[0]] else theta),
        drive=tuple(drive_t[i] for i in keep),
        velocity=tuple(float(v) for v in vel),
        latency_us=tuple(float(v) for v in lat),
        strikes=strikes,
        return_us=None if return_us is None else round(float(return_us), 1),
        return_est_us=None if return_est_us is None else round(float(return_est_us), 1),
    )

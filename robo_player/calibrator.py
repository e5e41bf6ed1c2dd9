"""Calibration: learn each key's curves by playing test strikes and listening.

The calibrator sees the instrument only as a :class:`~robo_player.driver.ports.Device`:
it sends plans of STRIKE + RELEASE commands and reads back what the sensor heard
(``Performance.heard``: onset time, pitch, loudness). It never reads the simulator's
hidden truth, exactly as it could not on a real piano.

Per key it fits the physical family of a solenoid-driven action (see
``docs/simulator.md`` and ``docs/calibration.md``), with the commanded drive ``d`` of a
strike at the spec's default pulse:

- latency ``L(d) = A * (d - theta) ** -alpha`` (drive start to string contact, µs);
- loudness ``V(d) = a + b * (1 - exp(-k * (d - theta)))`` (MIDI velocity units),

sharing the silent threshold ``theta``. Both are fitted by weighted least squares
(numpy only: a profile search over the one non-linear parameter and a linear solve
for the rest). If a fit is poor, the key falls back to monotone (isotonic)
interpolation of its measurements. The fitted curves are written as dense tables into
a :class:`~robo_player.spec.calibration.KeyCurve`.

The strike schedule is adaptive and runs in rounds; each round is one ``play`` of one
plan in which every key that still needs strikes is struck in parallel with the others,
within the spec's power budget (overlapping pulses and supply current), each key
getting time to return between its strikes and every coil staying cool.

Each key's return time ``R`` (how long a released key needs to come back up) is
measured with a key-return probe: one full-drive strike a known gap ``g < R`` after a
release, inside round 1. The key is not fully up, so the strike sounds as a drive
``d * g / R`` would; the key's own fitted curves turn the heard latency and loudness
into that drive, hence ``R`` (stored with a safety margin as ``KeyCurve.return_us``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np

from .driver.ports import Device, Performance
from .errors import CalibrationError
from .plan import Command, Op, Plan
from .spec.calibration import Calibration, KeyCurve
from .spec.model import PianoSpec

log = logging.getLogger(__name__)

Progress = Callable[[float], None]
Floats: TypeAlias = Sequence[float] | np.ndarray  # (n,) numbers

# --- what the sensor and the physics family let us assume -------------------------------
SILENT_LATENCY_US = 400_000  # a strike slower than this never sounds (docs/simulator.md)
LAT_NOISE_US = 200.0  # onset timing noise of the microphone (s.d.)
VEL_NOISE = 1.0  # loudness noise of the microphone (s.d., velocity units)
VEL_CLIP = math.inf  # loudness at or above this is taken as clipped (the sensor does not clip)
ALPHA_PRIOR = (0.70, 0.15)  # latency exponent: mean, s.d. of a weak prior
K_PRIOR = (3.2, 2.0)  # loudness curvature in drive units: mean, s.d. of a weak prior

# --- schedule ------------------------------------------------------------------------
RETURN_GAP_US = 150_000  # release -> next strike on the same key (key return <= 90 ms)
SETTLE_US = 60_000  # after the last expected onset of a round
RELEASE_MARGIN_US = 40_000  # hold the key this long past its expected contact
STAGGER_US = 2_000  # grid on which strikes are placed
SUPPLY_MARGIN = 0.9  # use at most this fraction of the supply's current limit
THERMAL_MARGIN = 0.5  # keep each coil's modelled rise under this fraction of the limit

# Round plan: each round gives every unfinished key these targets, expressed as
# latencies (µs) to aim at from the current fit; 1.0 means "full drive".
# Targets spread over the usable range, weighted to the slow end where the curves
# are steep and where soft music lives.
# First round, before anything is known: drives at these fractions u of the way from
# the spec's nominal threshold to full drive (audible for any plausible threshold).
FIRST_ROUND_U = (1.0, 0.40, 0.15)
# Later rounds, from the current fit: ("lat", f) aims at latency f * the usable
# maximum (min(pipeline delay, 0.8 * silent limit)); ("u", f) at the drive f of the
# way from the fitted threshold to full drive (to spread the loudness curve's points).
ROUND_TARGETS: tuple[tuple[tuple[str, float], ...], ...] = (
    (("lat", 0.55), ("lat", 0.30), ("u", 0.70)),
    (("lat", 0.92), ("lat", 0.75), ("u", 0.25)),
)
TABLE_POINTS = 64

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
MAX_PROBES = 2  # per key: one, and one retry at another gap if the first was inconclusive
# Margin added to the estimate so a planner waiting return_us never strikes a key that
# is not fully up: a fixed part for the curve fit's own error plus a multiple of the
# estimate's sensor-noise s.d.
RETURN_MARGIN_US = 600.0
RETURN_MARGIN_SD = 2.0


@dataclass(slots=True)
class StrikeResult:
    """One test strike and what was heard of it."""

    pitch: int
    drive: float  # commanded fraction after PWM quantisation
    t_us: int
    heard: bool = False
    latency_us: float = math.nan
    velocity: float = math.nan
    # a key-return probe: struck this long after the key's release (µs); its curves are
    # not used for the fit. None for an ordinary strike (the key was fully up).
    probe_gap_us: int | None = None


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


@dataclass(slots=True)
class CalibrationReport:
    """What a calibration session cost and how well the curves fit."""

    keys: int = 0
    strikes: int = 0
    play_calls: int = 0
    sim_time_us: int = 0  # performance time the device spent playing (a user's wait)
    max_coil_temp_ratio: float = 0.0
    isotonic_keys: list[int] = field(default_factory=list)
    lat_rms_us: dict[int, float] = field(default_factory=dict)
    vel_rms: dict[int, float] = field(default_factory=dict)
    pedal_latency_us: int | None = None
    pedal_measured: bool = False
    return_probes: int = 0  # key-return probe strikes (included in ``strikes``)
    return_us: dict[int, float] = field(default_factory=dict)  # measured, margin included
    return_kind: dict[int, str] = field(default_factory=dict)  # "measured" / "upper bound"
    return_unmeasured: list[int] = field(default_factory=list)  # keys left at the nominal

    @property
    def strikes_per_key(self) -> float:
        return self.strikes / self.keys if self.keys else 0.0


# ----------------------------------------------------------------------------------------
# fitting


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
    drive: Floats, latency_us: Floats, silent: Floats = ()
) -> tuple[float, float, float, float]:
    """Fit ``L = A (d - theta)^-alpha``; returns (theta, A, alpha, rms_us).

    Profile search over theta (the only non-linear parameter once log-transformed),
    each step a weighted line fit in log space with a weak prior on alpha; the weights
    make log-space residuals equivalent to the sensor's µs noise. ``silent`` drives
    (strikes that were not heard) add a one-sided penalty: the curve must put them
    below the threshold or slower than ``SILENT_LATENCY_US``.
    """
    sil = np.asarray([x for x in silent if x < min(drive)], dtype=float)
    d = np.asarray(drive, dtype=float)
    lat = np.asarray(latency_us, dtype=float)
    if d.size < 2:
        raise ValueError("need at least two audible strikes")
    y = np.log(lat)
    w = (lat / LAT_NOISE_US) ** 2
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
    drive: Floats, velocity: Floats, theta: float
) -> tuple[float, float, float, float]:
    """Fit ``V = a + b (1 - exp(-k (d - theta)))`` with theta fixed; (a, b, k, rms)."""
    d = np.asarray(drive, dtype=float)
    v = np.asarray(velocity, dtype=float)
    x = np.maximum(d - theta, 0.0)
    mu, sd = K_PRIOR

    def solve(k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = 1.0 - np.exp(-k[:, None] * x[None, :])  # (G, n)
        n = float(v.size)
        sf, sv = f.sum(axis=1), v.sum()
        sff, sfv = (f * f).sum(axis=1), (f * v).sum(axis=1)
        det = n * sff - sf * sf
        ok = det > 1e-12
        safe = np.where(ok, det, 1.0)
        a = np.where(ok, (sff * sv - sf * sfv) / safe, 0.0)
        b = np.where(ok, (n * sfv - sf * sv) / safe, sfv / np.maximum(sff, 1e-12))
        neg = a < 0  # loudness at the threshold cannot be negative: refit through 0
        a = np.where(neg, 0.0, a)
        b = np.where(neg, sfv / np.maximum(sff, 1e-12), b)
        r = v - (a[:, None] + b[:, None] * f)
        cost = (r * r).sum(axis=1) / VEL_NOISE**2 + ((k - mu) / sd) ** 2
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


def fit_key(strikes: Sequence[StrikeResult]) -> KeyFit | None:
    """Fit one key's curves from its strikes; None if fewer than two were heard.

    Key-return probes (``probe_gap_us`` set) are left out: the key was not fully up."""
    strikes = [s for s in strikes if s.probe_gap_us is None]
    heard = [s for s in strikes if s.heard]
    if len(heard) < 2:
        return None
    silent = [s.drive for s in strikes if not s.heard]
    d = np.array([s.drive for s in heard])
    lat = np.array([s.latency_us for s in heard])
    vel = np.array([s.velocity for s in heard])
    keep = np.ones(d.size, dtype=bool)
    for _ in range(2):  # drop up to two gross outliers (a mismatched or disturbed strike)
        theta, la, alpha, _ = fit_latency(d[keep], lat[keep], silent)
        pred = la * np.maximum(d - theta, 1e-9) ** (-alpha)
        resid = np.abs(pred - lat)
        resid[~keep] = 0.0
        worst = int(np.argmax(resid))
        if keep.sum() >= 5 and resid[worst] > max(8 * LAT_NOISE_US, 0.02 * lat[worst]):
            keep[worst] = False
        else:
            break
    theta, la, alpha, lat_rms = fit_latency(d[keep], lat[keep], silent)
    vmask = keep & (vel < VEL_CLIP)
    if vmask.sum() >= 2:
        va, vb, vk, vel_rms = fit_velocity(d[vmask], vel[vmask], theta)
    else:
        va, vb, vk, vel_rms = 0.0, float(np.nanmax(vel)), 3.0, math.inf
    fit = KeyFit(theta, la, alpha, va, vb, vk, lat_rms, vel_rms)
    consistent = all(  # a silent strike the fit says should have sounded: fit is wrong
        sd <= theta or float(fit.latency_us(sd)) > 0.8 * SILENT_LATENCY_US for sd in silent
    )
    poor = lat_rms > 4 * LAT_NOISE_US + 0.004 * float(lat.mean()) or vel_rms > 3 * VEL_NOISE
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
    )


# ----------------------------------------------------------------------------------------
# schedule


@dataclass(slots=True)
class _Request:
    pitch: int
    drive: float  # wanted fraction (before quantisation)
    expect_latency_us: float  # for the release time; SILENT_LATENCY_US if unknown
    probe: _Probe | None = None  # a key-return probe to strike right after this one


@dataclass(slots=True)
class _Probe:
    """A strike ``gap_us`` after the release of the strike it follows."""

    gap_us: int
    drive: float
    expect_latency_us: float


@dataclass(slots=True)
class _Coil:
    temp_k: float = 0.0  # modelled temperature rise
    t_us: int = 0  # time of temp_k


class _Scheduler:
    """Places strikes of one round in time within the spec's power and thermal limits.

    Time is a grid of ``STAGGER_US`` cells; each cell holds the supply current and the
    number of strike pulses that overlap it (a cell counts if any part is covered).
    """

    def __init__(self, spec: PianoSpec, coils: dict[int, _Coil]) -> None:
        self.spec = spec
        self.coils = coils
        p = spec.power
        self.coil_a = p.supply_v / p.coil_ohm
        self.limit_a = p.supply_a * SUPPLY_MARGIN
        self.max_pulses = max(1, p.max_simultaneous_strikes)
        th = spec.thermal
        # conservative: the truth's heat capacity and tau may differ by 10 %
        self.heat_c = th.coil_heat_capacity_j_per_k * 0.9
        self.tau_us = th.coil_tau_s * 1.1e6
        self.max_rise = th.coil_max_rise_k * THERMAL_MARGIN
        self.watts = p.supply_v**2 / p.coil_ohm
        self.pulse_us = spec.strike.default_pulse_us
        self.hold = spec.strike.hold_duty
        self.amps = np.zeros(4096)  # (cells,) supply current
        self.pulses = np.zeros(4096, dtype=np.int32)  # (cells,) overlapping pulses

    def _cells(self, t0: int, t1: int) -> slice:
        i0, i1 = t0 // STAGGER_US, -(-t1 // STAGGER_US)
        if i1 > self.amps.size:
            grow = max(i1, 2 * self.amps.size) - self.amps.size
            self.amps = np.concatenate([self.amps, np.zeros(grow)])
            self.pulses = np.concatenate([self.pulses, np.zeros(grow, dtype=np.int32)])
        return slice(i0, i1)

    def _fits(self, temp_k: float, t_us: int, drive: float, on_us: int) -> bool:
        """Whether a strike at ``t_us`` stays within the power budget, given the coil's
        modelled rise ``temp_k`` right before it."""
        if temp_k + self._joules(drive, on_us) / self.heat_c > self.max_rise:
            return False
        pulse_a = drive * self.coil_a
        hold_a = self.hold * self.coil_a if on_us > self.pulse_us else 0.0
        ps = self._cells(t_us, t_us + self.pulse_us)
        hs = self._cells(t_us + self.pulse_us, t_us + on_us)
        return bool(
            self.pulses[ps].max() < self.max_pulses
            and self.amps[ps].max() + pulse_a <= self.limit_a
            and (hs.stop <= hs.start or self.amps[hs].max() + hold_a <= self.limit_a)
        )

    def _joules(self, drive: float, on_us: int) -> float:
        pulse_j = drive**2 * self.watts * self.pulse_us * 1e-6
        hold_j = self.hold**2 * self.watts * max(0, on_us - self.pulse_us) * 1e-6
        return pulse_j + hold_j

    def _cooled(self, coil: _Coil, t_us: int) -> float:
        return coil.temp_k * math.exp(-max(0, t_us - coil.t_us) / self.tau_us)

    def _commit(self, coil: _Coil, t_us: int, drive: float, on_us: int) -> None:
        coil.temp_k = self._cooled(coil, t_us) + self._joules(drive, on_us) / self.heat_c
        coil.t_us = t_us + on_us
        ps = self._cells(t_us, t_us + self.pulse_us)
        hs = self._cells(t_us + self.pulse_us, t_us + on_us)
        self.pulses[ps] += 1
        self.amps[ps] += drive * self.coil_a
        if hs.stop > hs.start:
            self.amps[hs] += self.hold * self.coil_a if on_us > self.pulse_us else 0.0

    def place(self, pitch: int, drive: float, on_us: int, earliest: int) -> int:
        """Earliest grid time >= ``earliest`` for one strike; commits it."""
        coil = self.coils.setdefault(pitch, _Coil())
        t = -(-earliest // STAGGER_US) * STAGGER_US
        while not self._fits(self._cooled(coil, t), t, drive, on_us):
            t += STAGGER_US
        self._commit(coil, t, drive, on_us)
        return t

    def place_pair(
        self,
        pitch: int,
        first: tuple[float, int],
        second: tuple[float, int],
        gap_us: int,
        earliest: int,
    ) -> tuple[int, int]:
        """Earliest grid time for a strike ``first`` = (drive, on_us) followed by a strike
        ``second`` exactly ``gap_us`` after the first one's release; commits both and
        returns their times. The gap is exact (a key-return probe needs it)."""
        coil = self.coils.setdefault(pitch, _Coil())
        (d1, on1), (d2, on2) = first, second
        t = -(-earliest // STAGGER_US) * STAGGER_US
        while True:
            t2 = t + on1 + gap_us
            temp1 = self._cooled(coil, t)
            if self._fits(temp1, t, d1, on1):
                temp2 = (temp1 + self._joules(d1, on1) / self.heat_c) * math.exp(
                    -gap_us / self.tau_us
                )
                if self._fits(temp2, t2, d2, on2):
                    break
            t += STAGGER_US
        self._commit(coil, t, d1, on1)
        self._commit(coil, t2, d2, on2)
        return t, t2


def _pwm(drive: float, pwm_max: int) -> int:
    return int(min(pwm_max, max(1, round(drive * pwm_max))))


def _build_round(
    spec: PianoSpec,
    requests: dict[int, list[_Request]],
    coils: dict[int, _Coil],
    order: list[int],
) -> tuple[Plan, list[StrikeResult], int]:
    """One plan striking every requested key; returns (plan, pending strikes, end_us)."""
    sched = _Scheduler(spec, coils)
    max_on = spec.thermal.max_on_us
    pulse = spec.strike.default_pulse_us
    cmds: list[Command] = []
    pending: list[StrikeResult] = []
    ready: dict[int, int] = dict.fromkeys(order, 0)
    end_us = 0
    # interleave: the j-th strike of every key before the (j+1)-th of any
    depth = max((len(r) for r in requests.values()), default=0)
    for j in range(depth):
        for pitch in order:
            reqs = requests.get(pitch, [])
            if j >= len(reqs):
                continue
            rq = reqs[j]
            key = spec.key(pitch)
            level = _pwm(rq.drive, key.pwm_max)
            drive = level / key.pwm_max
            on_us = int(min(max_on, max(pulse, rq.expect_latency_us + RELEASE_MARGIN_US)))
            # (level, drive, on_us, expected latency, probe gap or None)
            strikes: list[tuple[int, float, int, float, int | None]] = [
                (level, drive, on_us, rq.expect_latency_us, None)
            ]
            if rq.probe is None:
                times = [sched.place(pitch, drive, on_us, ready[pitch])]
            else:
                pr = rq.probe
                level2 = _pwm(pr.drive, key.pwm_max)
                on2 = int(min(max_on, max(pulse, pr.expect_latency_us + RELEASE_MARGIN_US)))
                strikes.append((level2, level2 / key.pwm_max, on2, pr.expect_latency_us, pr.gap_us))
                times = list(
                    sched.place_pair(
                        pitch, (drive, on_us), (level2 / key.pwm_max, on2), pr.gap_us, ready[pitch]
                    )
                )
            for t, (lv, dr, on, expect, gap) in zip(times, strikes, strict=True):
                hold = int(round(spec.strike.hold_duty * key.pwm_max)) if on > pulse else 0
                idx = len(pending)
                cmds.append(Command(t, Op.STRIKE, key.channel, lv, pulse, hold, idx))
                cmds.append(Command(t + on, Op.RELEASE, key.channel, 0, 0, 0, idx))
                pending.append(StrikeResult(pitch, dr, t, probe_gap_us=gap))
                # next strike on this key: after the latest possible onset and the key's return
                ready[pitch] = max(t + on, t + int(expect) + 1) + RETURN_GAP_US
                end_us = max(end_us, t + max(on, int(expect)) + SETTLE_US)
    plan = Plan(commands=cmds, pipeline_delay_us=0, spec_name=spec.name, spec_hash=spec.spec_hash)
    plan.sort()
    return plan, pending, end_us


def _match(perf: Performance, pending: list[StrikeResult]) -> int:
    """Attach heard onsets to strikes (same pitch, latest strike before the onset).

    Returns the number of heard notes that matched no strike."""
    by_pitch: dict[int, list[StrikeResult]] = {}
    for s in pending:
        by_pitch.setdefault(s.pitch, []).append(s)
    for lst in by_pitch.values():
        lst.sort(key=lambda s: s.t_us)
    stray = 0
    for h in perf.heard:
        cands = [
            s
            for s in by_pitch.get(h.pitch, [])
            if s.t_us - 3 * LAT_NOISE_US <= h.t_us <= s.t_us + SILENT_LATENCY_US + 5_000
        ]
        if not cands:
            stray += 1
            continue
        s = max(cands, key=lambda c: c.t_us if c.t_us <= h.t_us else -1)
        if s.heard:  # two onsets for one strike: keep the first
            stray += 1
            continue
        s.heard = True
        s.latency_us = float(h.t_us - s.t_us)
        s.velocity = float(h.velocity)
    return stray


# ----------------------------------------------------------------------------------------
# adaptive drive choice


def _next_requests(
    strikes: list[StrikeResult], fit: KeyFit | None, budget: int, round_no: int, lat_top_us: float
) -> list[_Request]:
    """Drives to strike next for one key (empty when it is done)."""
    if budget <= 0:
        return []
    strikes = [s for s in strikes if s.probe_gap_us is None]
    heard = [s for s in strikes if s.heard]
    silent = [s.drive for s in strikes if not s.heard]
    loud_min = min((s.drive for s in heard), default=1.0)
    if fit is None:
        # nothing or one note heard: bracket upward between the loudest silent drive and 1
        lo = max(silent, default=0.0)
        hi = loud_min if heard else 1.0
        if not heard:
            return [_Request(0, 1.0, SILENT_LATENCY_US)] + (
                [_Request(0, (lo + 1.0) / 2, SILENT_LATENCY_US)] if budget > 1 else []
            )
        picks = [lo + 0.6 * (hi - lo), lo + 0.3 * (hi - lo)]
        return [_Request(0, d, SILENT_LATENCY_US) for d in picks[:budget]]
    targets = ROUND_TARGETS[round_no - 1] if round_no - 1 < len(ROUND_TARGETS) else ()
    reqs = []
    for i, (kind, frac) in enumerate(targets[:budget]):
        if kind == "lat":
            lat = frac * lat_top_us
            d = fit.drive_for_latency(lat)
        else:
            d = fit.theta + frac * (1.0 - fit.theta)
            lat = float(fit.latency_us(d))
        # stay above a drive that was silent: bisect toward it if the fit disagrees
        if silent and d <= max(silent):
            d = max(silent) + (0.35 + 0.3 * i) * (loud_min - max(silent))
        reqs.append(_Request(0, d, min(SILENT_LATENCY_US, 1.5 * lat + 20_000)))
    return reqs


# ----------------------------------------------------------------------------------------
# key return


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


def _invert(curve: np.ndarray, grid: np.ndarray, y: float) -> tuple[float, float]:
    """Drive on ``grid`` where the monotone ``curve`` reaches ``y``, and |dy/dd| there."""
    inc = curve[-1] >= curve[0]
    c, g = (curve, grid) if inc else (curve[::-1], grid[::-1])
    d = float(np.interp(y, c, g))
    slope = float(
        np.abs(np.gradient(curve, grid))[int(np.clip(np.searchsorted(grid, d), 0, grid.size - 1))]
    )
    return d, slope


def drive_from_heard(fit: KeyFit, latency_us: float, velocity: float) -> tuple[float, float]:
    """The drive (at full key return) that would sound like this, and its s.d.

    Inverts the key's fitted latency and loudness curves and combines the two by
    inverse variance (sensor noise plus the fit's own residual rms)."""
    lo = fit.theta + 1e-4 if not fit.isotonic else float(fit.iso_drive[0])
    grid = np.linspace(lo, 1.0, 4001)  # (G,) drives
    d_l, s_l = _invert(fit.latency_us(grid), grid, latency_us)
    d_v, s_v = _invert(fit.velocity(grid), grid, velocity)
    var_l = (LAT_NOISE_US**2 + fit.lat_rms_us**2) / max(s_l, 1e-9) ** 2
    var_v = (VEL_NOISE**2 + min(fit.vel_rms, 10.0) ** 2) / max(s_v, 1e-9) ** 2
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
    d_eff, sd = drive_from_heard(fit, probe.latency_us, probe.velocity)
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


def _next_probe(
    fit: KeyFit | None, strikes: Sequence[StrikeResult], first_gap_us: int
) -> _Probe | None:
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
        if est.kind == "measured":
            return None
        if last.kind == "upper":  # full strength: R <= gap; look closer
            gap = int(0.5 * (probes[-1].probe_gap_us or first_gap_us))
        elif last.kind == "lower":  # silent: R > bound; heard up to 1.8 x the bound
            gap = int(0.9 * last.value_us)
        else:
            return None
    gap = max(PROBE_MIN_GAP_US, round(gap / STAGGER_US) * STAGGER_US)
    if probes and gap == probes[-1].probe_gap_us:
        return None
    # the slowest it can be: half the drive (e / R = 0.5), or silent
    d_half = 0.5 * PROBE_DRIVE
    lat = float(fit.latency_us(d_half)) if d_half > fit.theta else math.inf
    expect = min(SILENT_LATENCY_US, 1.5 * lat + 20_000) if math.isfinite(lat) else SILENT_LATENCY_US
    return _Probe(gap, PROBE_DRIVE, expect)


# ----------------------------------------------------------------------------------------
# pedal


def _pedal_commands(spec: PianoSpec, t0: int) -> list[Command]:
    p = spec.pedal
    assert p is not None
    return [
        Command(t0, Op.SET, p.channel, p.pwm_max, 0, 0, -1),  # levels in counts (plan v2)
        Command(t0 + 300_000, Op.SET, p.channel, 0, 0, 0, -1),
        Command(t0 + 600_000, Op.SET, p.channel, p.pwm_max, 0, 0, -1),
        Command(t0 + 900_000, Op.SET, p.channel, 0, 0, 0, -1),
    ]


def _pedal_latency(perf: Performance, cmds: list[Command]) -> int | None:
    """Median delay from each PEDAL command to the first sensed change to its value."""
    if not perf.pedal:
        return None
    sensed = sorted(perf.pedal)
    lats: list[int] = []
    for c in cmds:
        down = c.drive >= 64
        for t, v in sensed:
            if t >= c.t_us and (v >= 64) == down:
                if t - c.t_us < 250_000:
                    lats.append(t - c.t_us)
                break
    if not lats:
        return None
    return int(np.median(lats))


# ----------------------------------------------------------------------------------------
# session


def calibrate_session(
    device: Device,
    spec: PianoSpec,
    *,
    max_strikes_per_key: int = 12,
    progress: Progress | None = None,
    seed: int = 0,
    pitches: Iterable[int] | None = None,
) -> tuple[Calibration, CalibrationReport]:
    """Calibrate ``pitches`` (default: every key) of ``spec`` on ``device``.

    Keys not in ``pitches`` keep the spec's nominal curves (``strikes == 0``).
    """
    if max_strikes_per_key < 3:
        raise CalibrationError(
            f"calibrate: max_strikes_per_key: {max_strikes_per_key} is too few (allowed: >= 3)"
        )
    todo = [k.pitch for k in spec.keys]
    if pitches is not None:
        wanted = sorted(set(pitches))
        bad = [p for p in wanted if not spec.has_pitch(p)]
        if bad:
            raise CalibrationError(
                f"calibrate: pitch {bad[0]} is not a key of spec {spec.name!r} "
                f"(allowed: {spec.lowest}..{spec.highest})"
            )
        todo = wanted
    rng = np.random.default_rng(seed)
    lat_top = float(min(spec.timing.pipeline_delay_us, 0.8 * SILENT_LATENCY_US))
    report = CalibrationReport(keys=len(todo))
    strikes: dict[int, list[StrikeResult]] = {p: [] for p in todo}
    fits: dict[int, KeyFit | None] = dict.fromkeys(todo)
    coils: dict[int, _Coil] = {}
    done: set[int] = set()
    pedal_lat: int | None = None
    round_no = 0
    th_nom = spec.nominal.threshold
    first = [th_nom + u * (1.0 - th_nom) for u in FIRST_ROUND_U]
    first_gap = round(PROBE_GAP_FRACTION * spec.timing.key_return_us / STAGGER_US) * STAGGER_US
    while len(done) < len(todo):
        requests: dict[int, list[_Request]] = {}
        for p in todo:
            if p in done:
                continue
            left = max_strikes_per_key - len(strikes[p])
            if round_no == 0:
                reqs = [_Request(p, d, SILENT_LATENCY_US) for d in first[:left]]
            else:
                reqs = _next_requests(strikes[p], fits[p], left, round_no, lat_top)
                probe = _next_probe(fits[p], strikes[p], first_gap)
                if reqs and probe is not None and left > len(reqs):
                    reqs[-1].probe = probe  # struck right after the key's last strike
            if not reqs:
                done.add(p)
                continue
            for r in reqs:
                r.pitch = p
            requests[p] = reqs
        if not requests:
            break
        order = list(requests)
        rng.shuffle(order)
        plan, pending, end_us = _build_round(spec, requests, coils, order)
        pedal_cmds: list[Command] = []
        if round_no == 0 and spec.pedal is not None:
            pedal_cmds = _pedal_commands(spec, 0)
            plan.commands.extend(pedal_cmds)
            plan.sort()
            end_us = max(end_us, pedal_cmds[-1].t_us + 200_000)
        log.info(
            "calibration round %d: %d keys, %d strikes, %.2f s",
            round_no,
            len(requests),
            len(pending),
            end_us / 1e6,
        )
        perf = device.play(plan)
        report.play_calls += 1
        report.sim_time_us += end_us
        report.max_coil_temp_ratio = max(report.max_coil_temp_ratio, perf.max_coil_temp_ratio)
        if perf.coil_failures:
            raise CalibrationError(
                f"calibrate: round {round_no}: coil failure during calibration: "
                f"{perf.coil_failures[0]} (calibration strikes must stay cool)"
            )
        stray = _match(perf, pending)
        if stray:
            log.warning("calibration round %d: %d heard notes matched no strike", round_no, stray)
        if pedal_cmds:
            pedal_lat = _pedal_latency(perf, pedal_cmds)
        for s in pending:
            strikes[s.pitch].append(s)
        report.strikes += len(pending)
        report.return_probes += sum(1 for s in pending if s.probe_gap_us is not None)
        for p in requests:
            fits[p] = fit_key(strikes[p])
        # coils cool between rounds only as far as the device's clock says; keep the
        # model's times relative to the next plan's zero
        for c in coils.values():
            c.t_us -= end_us
        round_no += 1
        if progress is not None:
            finished = sum(1 for p in todo if p in done)
            progress(max(finished / len(todo), round_no / (len(ROUND_TARGETS) + 1)))
        if round_no > len(ROUND_TARGETS):
            break
    cal = Calibration.nominal(spec)
    cal.measured = True
    for p in todo:
        fit = fits[p]
        if fit is None:
            raise CalibrationError(
                f"calibrate: key {p}: heard {sum(s.heard for s in strikes[p])} of "
                f"{len(strikes[p])} test strikes (need >= 2); is the key or its coil broken?"
            )
        ret = return_estimate(fit, strikes[p])
        ret_us = ret.return_us
        if ret_us is None:
            report.return_unmeasured.append(p)
            log.warning(
                "calibrate: key %d: return time not measured (%s %.0f us); the spec's "
                "nominal %d us applies",
                p,
                ret.kind,
                ret.value_us,
                spec.timing.key_return_us,
            )
        else:
            report.return_us[p] = ret_us
            report.return_kind[p] = ret.kind
        cal.keys[p] = curve_from_fit(p, fit, lat_top, len(strikes[p]), return_us=ret_us)
        report.lat_rms_us[p] = fit.lat_rms_us
        report.vel_rms[p] = fit.vel_rms
        if fit.isotonic:
            report.isotonic_keys.append(p)
    if pedal_lat is not None:
        cal.pedal_latency_us = pedal_lat
        report.pedal_measured = True
    report.pedal_latency_us = cal.pedal_latency_us
    if progress is not None:
        progress(1.0)
    log.info(
        "calibrated %d keys: %.1f strikes/key, %d plays, %.1f s of playing",
        len(todo),
        report.strikes_per_key,
        report.play_calls,
        report.sim_time_us / 1e6,
    )
    return cal, report


def calibrate(
    device: Device,
    spec: PianoSpec,
    *,
    max_strikes_per_key: int = 12,
    progress: Progress | None = None,
    seed: int = 0,
) -> Calibration:
    """Calibrate every key of ``spec`` on ``device``; see :func:`calibrate_session`."""
    cal, _ = calibrate_session(
        device, spec, max_strikes_per_key=max_strikes_per_key, progress=progress, seed=seed
    )
    return cal

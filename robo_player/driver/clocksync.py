"""Clock sync: fit the MCU clock against host time, and map performance time onto it.

Each ``get_clock`` exchange gives a sample ``(send_time, clock, recv_time)``: the host
time (seconds, ``time.perf_counter``) the query left, the MCU clock (ticks) it read, and
the host time the answer came back. The MCU read its clock somewhere inside
``[send_time, recv_time]``; the midpoint is off by at most half the round trip, and by
about half the *excess* round trip (over the best one seen) when the base delay is
symmetric. So :class:`ClockSync`:

- weights each sample by how close its round-trip time is to the smallest recent one
  (inverse-variance weights), and uses each interval as a bound the line must
  pass through: the quick exchanges decide the fit;
- weights by age with a half-life (a decaying regression), so drift that changes with
  temperature is followed;
- fits ``clock = clock_avg + freq_hz · (time − time_avg)`` by weighted least squares,
  with a weak prior pulling ``freq_hz`` to the nominal clock rate until the samples span
  enough time;
- keeps a window of ``window`` exchanges; a full one drops the least telling (the
  smallest weight: slow and old), never simply the oldest, so the quick exchanges that
  pin the line stay while the newest ``keep_new`` always do;
- rejects outliers: a sample whose interval ``[send_time, recv_time]`` the fitted line
  misses by more than ``outlier_s`` cannot be right (a garbled or misattributed answer)
  and is dropped; several in a row mean the model is wrong, and the fit restarts.

:class:`PerfTimeline` maps performance time (integer µs from the start of a piece) to
MCU clock ticks. It is the one definition of performance time on a device: piecewise
linear, continuous and monotone; a segment never changes once a command was scheduled
inside it. New segments slew towards the clock sync's latest estimate of host time, so
performance time follows the host's clock within the sync error while a command's clock
never moves after it was sent.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClockSample:
    send_time: float  # host s
    clock: int  # MCU ticks, unwrapped
    recv_time: float  # host s
    asym_s: float = 0.0  # known (outbound − inbound) transfer time / 2, added to the midpoint

    @property
    def rtt_s(self) -> float:
        return self.recv_time - self.send_time

    @property
    def mid_time(self) -> float:
        return 0.5 * (self.send_time + self.recv_time) + self.asym_s


class ClockSync:
    """Decaying, RTT-weighted, outlier-rejecting linear fit of MCU clock vs host time.

    ``clock_hz`` is the nominal MCU clock (from ``identify``). Times are host seconds.
    """

    def __init__(
        self,
        clock_hz: float,
        *,
        window: int = 96,
        half_life_s: float = 60.0,
        rtt_scale_s: float = 20e-6,
        prior_ppm: float = 100.0,
        outlier_s: float = 300e-6,
        max_rejects: int = 4,
        young_s: float = 10.0,
        keep_new: int = 16,
        young_period_s: float = 0.05,
        horizon_s: float = 1.0,
        bounds_k: int = 24,
    ) -> None:
        if not clock_hz > 0:
            raise ValueError(f"clock sync: clock_hz {clock_hz!r} must be > 0")
        self.nominal_hz = float(clock_hz)
        self.window = window
        self.half_life_s = half_life_s
        self.rtt_scale_s = rtt_scale_s
        self.prior_ppm = prior_ppm
        self.outlier_s = outlier_s
        self.max_rejects = max_rejects
        self.young_s = young_s
        self.keep_new = keep_new
        self.young_period_s = young_period_s
        self.horizon_s = horizon_s  # how far past the newest exchange the fit is used
        self.bounds_k = bounds_k  # the narrowest intervals that bound the line (0: none)
        self._samples: deque[ClockSample] = deque()
        self._rejects_in_row = 0
        self.rejected = 0  # samples dropped as outliers, in total
        self.restarts = 0  # times the fit was thrown away after repeated rejects
        # the fit: clock = clock_avg + freq_hz * (time - time_avg)
        self.time_avg = 0.0
        self._ls_time_avg = 0.0  # the least-squares line's (outliers are judged by it)
        self.clock_avg = 0.0
        self.freq_hz = self.nominal_hz
        self.min_rtt_s = math.inf
        self._age_s = 0.0  # s since the first sample of this fit
        self._first_time = 0.0

    # ---- state -------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return len(self._samples) > 0

    @property
    def samples(self) -> int:
        return len(self._samples)

    @property
    def drift_ppm(self) -> float:
        """MCU clock rate against its nominal, in parts per million (host clock = truth)."""
        return (self.freq_hz / self.nominal_hz - 1.0) * 1e6

    def reset(self) -> None:
        self._samples.clear()
        self._rejects_in_row = 0
        self.time_avg = 0.0
        self.clock_avg = 0.0
        self.freq_hz = self.nominal_hz
        self.min_rtt_s = math.inf

    # ---- conversion ----------------------------------------------------------------
    def clock_at(self, time: float) -> float:
        """Estimated MCU clock (ticks, float) at host ``time`` (s)."""
        if not self.ready:
            raise RuntimeError("clock sync: no samples yet")
        return self.clock_avg + self.freq_hz * (time - self.time_avg)

    def time_at(self, clock: float) -> float:
        """Estimated host time (s) at MCU ``clock`` (ticks)."""
        if not self.ready:
            raise RuntimeError("clock sync: no samples yet")
        return self.time_avg + (clock - self.clock_avg) / self.freq_hz

    # ---- samples -----------------------------------------------------------------
    def add(self, send_time: float, clock: int, recv_time: float, asym_s: float = 0.0) -> bool:
        """Add one exchange; return False when it was rejected as an outlier."""
        if recv_time < send_time:
            raise ValueError(
                f"clock sync: recv_time {recv_time!r} is before send_time {send_time!r}"
            )
        s = ClockSample(send_time, int(clock), recv_time, asym_s)
        if len(self._samples) >= 2 and self._violation(s) > self.outlier_s:
            self.rejected += 1
            self._rejects_in_row += 1
            log.debug("clock sync: sample rejected (violation %.0f us)", self._violation(s) * 1e6)
            if self._rejects_in_row < self.max_rejects:
                return False
            # the line is wrong, not the samples: start over from the recent ones
            log.warning(
                "clock sync: %d outliers in a row; restarting the fit", self._rejects_in_row
            )
            self.restarts += 1
            self.reset()
        self._rejects_in_row = 0
        if not self._samples:
            self._first_time = send_time
        self._samples.append(s)
        if len(self._samples) > self.window:
            self._evict()
        self._fit()
        # a sample already in the window that the new fit cannot explain goes
        for _ in range(3):
            worst = max(self._samples, key=self._violation)
            if len(self._samples) < 3 or self._violation(worst) <= self.outlier_s:
                break
            self._samples.remove(worst)
            self.rejected += 1
            self._fit()
        return True

    def _sigma(self, rtt: Any, best: float) -> Any:
        """A midpoint's uncertainty (s): half its round trip in excess of the best one, plus
        ``rtt_scale_s`` (a float, or an array of round trips)."""
        return self.rtt_scale_s + 0.5 * (rtt - best)

    def _evict(self) -> None:
        """Make room: drop the least telling sample. Its worth is the weight it has in
        the fit (the inverse square of its uncertainty, decayed by age): an old exchange
        with a small round trip pins the line better than a new one with a large round
        trip, so a full window drops the slow ones first, not simply the oldest. The
        newest ``keep_new`` always stay, so the fit follows the present."""
        smp = self._samples
        now = smp[-1].recv_time
        best = min(x.rtt_s for x in smp)
        cand = list(smp)[: -self.keep_new] if len(smp) > self.keep_new else list(smp)

        def worth(x: ClockSample) -> float:
            sigma = self._sigma(x.rtt_s, best)
            return 0.5 ** (max(0.0, now - x.recv_time) / self.half_life_s) / (sigma * sigma)

        smp.remove(min(cand, key=worth))

    def _violation(self, s: ClockSample) -> float:
        """How far (s) the least-squares line passes outside the sample's possible interval."""
        if not self.ready:
            raise RuntimeError("clock sync: no samples yet")
        t = self._ls_time_avg + (s.clock - self.clock_avg) / self.freq_hz - s.asym_s
        return max(s.send_time - t, t - s.recv_time, 0.0)

    def _fit(self) -> None:
        """Fit host time ``t = a + k·u`` of the MCU clock, ``u = (clock − c_ref) / nominal``.

        Two kinds of evidence, both decaying with age: each midpoint, weighted by the
        inverse square of its uncertainty (half its round trip in excess of the best
        one); and each interval ``[send + base, recv − base]`` (``base`` = half the best
        round trip) that the line must pass through, enforced as a stiff penalty on the
        ones it misses (an active set, re-chosen until it settles). The intervals
        matter: an exchange whose query went through quickly bounds the line from
        below even when its answer was slow, and the other way round.
        """
        smp = self._samples
        now = smp[-1].recv_time
        c_ref = smp[-1].clock
        t_ref = now  # subtracted so that the sums keep their float precision
        send = np.fromiter((x.send_time - t_ref for x in smp), float, len(smp))
        recv = np.fromiter((x.recv_time - t_ref for x in smp), float, len(smp))
        asym = np.fromiter((x.asym_s for x in smp), float, len(smp))
        u = np.fromiter((x.clock - c_ref for x in smp), float, len(smp)) / self.nominal_hz
        rtt = recv - send
        self.min_rtt_s = float(rtt.min())
        base = 0.5 * self.min_rtt_s
        w_age = 0.5 ** (np.maximum(0.0, -recv) / self.half_life_s)
        sigma = self._sigma(rtt, self.min_rtt_s)
        mids = 0.5 * (send + recv) + asym
        w_mid = w_age / (sigma * sigma)
        lo = send + base + asym
        hi = recv - base + asym
        usable = lo <= hi
        lam = 1.0 / (self.prior_ppm * 1e-6) ** 2  # prior: k = 1 ± prior_ppm
        stiff = w_age / (self.rtt_scale_s * 0.05) ** 2
        tol = 0.01 * self.rtt_scale_s
        act_lo = np.zeros(len(smp), bool)
        act_hi = np.zeros(len(smp), bool)
        a_fit, k_fit = 0.0, 1.0
        for _ in range(12):
            # midpoints, plus the bounds of the active set pulling stiffly
            w_c = np.where(act_lo | act_hi, stiff, 0.0)
            y_c = np.where(act_lo, lo, hi)
            sw = w_mid.sum() + w_c.sum()
            u_bar = (w_mid @ u + w_c @ u) / sw
            y_bar = (w_mid @ mids + w_c @ y_c) / sw
            du = u - u_bar
            suu = w_mid @ (du * du) + w_c @ (du * du)
            suy = w_mid @ (du * (mids - y_bar)) + w_c @ (du * (y_c - y_bar))
            k_fit = float((suy + lam) / (suu + lam))
            a_fit = float(y_bar - k_fit * u_bar)
            p = a_fit + k_fit * u
            new_lo = usable & (p < lo + tol)
            new_hi = usable & ~new_lo & (p > hi - tol)
            if np.array_equal(new_lo, act_lo) and np.array_equal(new_hi, act_hi):
                break
            act_lo, act_hi = new_lo, new_hi
        # Where the intervals alone pin the line (few quick exchanges, far apart), the
        # least-squares line can sit at an edge of what they allow: move it to the middle.
        self.freq_hz = self.nominal_hz / k_fit
        self.clock_avg = float(c_ref)
        self.time_avg = self._ls_time_avg = t_ref + a_fit
        mid = _feasible_middle(u[usable], lo[usable], hi[usable], self.horizon_s, self.bounds_k)
        if mid is not None:
            self.time_avg = t_ref + mid[0]
        self._age_s = now - self._first_time

    def next_query_in(self, period_s: float = 1.0) -> float:
        """Seconds until the next ``get_clock``.

        Every ``young_period_s`` (50 ms) while the fit is young (younger than
        ``young_s``: the drift is not known yet, and only a few exchanges have a small
        round trip), then ``period_s``. Every 0.1 s, as before session 3, left the slope
        to the few quick exchanges of the first burst: with 2 ms of jitter, 4 % of
        20-s runs passed 100 µs of error 3-5 s in (``simulate_sync``; now 0 of 450).
        """
        if self._age_s < self.young_s:
            return min(period_s, self.young_period_s)
        return period_s


def _feasible_middle(
    u: np.ndarray, lo: np.ndarray, hi: np.ndarray, horizon: float, k_narrowest: int
) -> tuple[float, float] | None:
    """The line ``t = a + k·u`` through the middle of what the intervals allow, at the
    newest sample (``u = 0``) and ``horizon`` later, or None if they allow no line.

    Every exchange's interval ``[lo, hi]`` holds the instant its clock was read, so the
    true line passes through all of them: the lines that do form a convex polygon in
    ``(a, k)``, and at any ``u`` the truth lies in the range of their values there. The
    middle of that range is the estimate whose worst error is least (half the range);
    a least-squares line inside the polygon may be off by nearly all of it. The polygon
    is taken from the ``k_narrowest`` intervals (the others rarely cut it, and leaving
    them out only widens it): its vertices are the pairwise crossings of their bounds
    that lie within every one of them.
    """
    if len(u) < 3 or k_narrowest < 2:
        return None
    keep = np.argsort(hi - lo)[:k_narrowest]
    u, lo, hi = u[keep], lo[keep], hi[keep]
    uu = np.concatenate([u, u])
    bb = np.concatenate([lo, hi])
    i, j = np.triu_indices(len(uu), 1)
    du = uu[i] - uu[j]
    cross = np.abs(du) > 1e-12
    i, j, du = i[cross], j[cross], du[cross]
    k = (bb[i] - bb[j]) / du
    a = bb[i] - k * uu[i]
    at = a[:, None] + k[:, None] * u[None, :]
    tol = 1e-7  # s: above the clock's resolution (a 16 MHz tick is 62.5 ns)
    inside = np.all((at >= lo - tol) & (at <= hi + tol), axis=1)
    if not inside.any():
        return None  # inconsistent intervals (a changed drift): keep the least squares
    a, k = a[inside], k[inside]
    now = 0.5 * (a.min() + a.max())
    later = 0.5 * ((a + k * horizon).min() + (a + k * horizon).max())
    return float(now), float((later - now) / horizon)


class PerfTimeline:
    """Performance time (µs) <-> MCU clock (ticks), piecewise linear and append-only.

    ``start(time0)`` fixes performance time 0 at host ``time0``. ``clock_for(t_us)``
    extends the timeline when ``t_us`` passes its horizon: each new segment, ``segment_us``
    long, starts where the last one ended and ends where the clock sync puts host time
    ``time0 + t_end`` — so the timeline slews onto the sync without ever jumping, and a
    clock already handed out never changes.
    """

    def __init__(self, sync: ClockSync, segment_us: int = 1_000_000) -> None:
        self.sync = sync
        self.segment_us = segment_us
        self.time0 = 0.0
        self._t: list[int] = []  # segment starts, µs
        self._c: list[float] = []  # clock at each start
        self._rate: list[float] = []  # ticks per µs in each segment

    @property
    def started(self) -> bool:
        return bool(self._t)

    def start(self, time0: float) -> None:
        self.time0 = time0
        self._t = [0]
        self._c = [self.sync.clock_at(time0)]
        self._rate = [self.sync.freq_hz * 1e-6]
        self._horizon = self.segment_us
        self._extend_to(0)

    @property
    def horizon_us(self) -> int:
        return self._horizon

    def _extend_to(self, t_us: int) -> None:
        while t_us >= self._horizon:
            t0 = self._t[-1]
            c_end = self._c[-1] + self._rate[-1] * (self._horizon - t0)
            t_next = self._horizon + self.segment_us
            target = self.sync.clock_at(self.time0 + t_next * 1e-6)
            rate = (target - c_end) / self.segment_us
            # never run backwards, never slew faster than 0.1 %
            nominal = self.sync.freq_hz * 1e-6
            rate = min(max(rate, nominal * 0.999), nominal * 1.001)
            self._t.append(self._horizon)
            self._c.append(c_end)
            self._rate.append(rate)
            self._horizon = t_next

    def clock_for(self, t_us: int) -> int:
        """MCU clock (ticks, rounded) at which performance time ``t_us`` happens."""
        if not self._t:
            raise RuntimeError("timeline: not started")
        self._extend_to(t_us)
        i = max(0, bisect.bisect_right(self._t, t_us) - 1)
        return round(self._c[i] + self._rate[i] * (t_us - self._t[i]))

    def t_us_for(self, clock: float) -> float:
        """Performance time (µs, float) of MCU ``clock`` (the inverse of ``clock_for``)."""
        if not self._t:
            raise RuntimeError("timeline: not started")
        i = max(0, bisect.bisect_right(self._c, clock) - 1)
        return self._t[i] + (clock - self._c[i]) / self._rate[i]

    def time_for(self, t_us: float) -> float:
        """Host time (s) the clock sync now expects performance time ``t_us`` at."""
        return self.sync.time_at(self.clock_for(int(t_us)))


@dataclass(frozen=True, slots=True)
class SyncErrorStats:
    max_us: float
    p99_us: float
    mean_us: float
    drift_err_ppm: float  # |estimated − true| drift at the end
    rejected: int


def simulate_sync(
    *,
    seed: int,
    drift_ppm: float,
    jitter_s: float,
    duration_s: float = 60.0,
    period_s: float = 1.0,
    burst: int = 32,
    base_delay_s: float = 300e-6,
    outlier_rate: float = 0.02,
    lead_s: float = 1.0,
    warmup_s: float = 0.0,
    clock_hz: float = 16e6,
) -> SyncErrorStats:
    """Run :class:`ClockSync` on a synthetic link and measure its estimate error.

    The MCU clock runs ``drift_ppm`` off nominal. Each exchange takes ``base_delay_s``
    each way plus a jitter uniform in ``[0, jitter_s]`` split at random between the two
    directions; ``outlier_rate`` of them are delayed 5–50 ms on one side. ``burst``
    quick exchanges (5 ms apart) start the sync, then :meth:`ClockSync.next_query_in`
    spaces them, up to one every ``period_s``. After each
    exchange (past ``warmup_s``) the error is the distance between the host time the fit
    gives for the true clock at *now* and at *now + lead_s*, and the true host time.
    """
    import random

    rng = random.Random(seed)
    rate = clock_hz * (1.0 + drift_ppm * 1e-6)
    c0 = rng.randrange(0, 1 << 31)
    t0 = rng.uniform(0.0, 1e4)  # host perf_counter epoch

    def true_clock(t: float) -> float:
        return c0 + rate * (t - t0)

    sync = ClockSync(clock_hz)
    errs: list[float] = []
    t = t0
    n = 0
    while t < t0 + duration_s:
        j = rng.uniform(0.0, jitter_s)
        split = rng.random()
        out_d = base_delay_s + j * split
        in_d = base_delay_s + j * (1.0 - split)
        if rng.random() < outlier_rate:
            if rng.random() < 0.5:
                out_d += rng.uniform(5e-3, 50e-3)
            else:
                in_d += rng.uniform(5e-3, 50e-3)
        clock = int(true_clock(t + out_d))
        now = t + out_d + in_d
        sync.add(t, clock, now)
        n += 1
        if n > burst and now - t0 >= warmup_s:
            for te in (now, now + lead_s):
                errs.append(abs(sync.time_at(true_clock(te)) - te))
        gap = 0.005 if n < burst else sync.next_query_in(period_s)
        t = now + gap * rng.uniform(0.9, 1.1)
    errs.sort()
    if not errs:
        return SyncErrorStats(0.0, 0.0, 0.0, 0.0, sync.rejected)
    return SyncErrorStats(
        max_us=errs[-1] * 1e6,
        p99_us=errs[min(len(errs) - 1, int(0.99 * len(errs)))] * 1e6,
        mean_us=sum(errs) / len(errs) * 1e6,
        drift_err_ppm=abs(sync.drift_ppm - drift_ppm),
        rejected=sync.rejected,
    )

"""Physics of the simulated solenoid piano (docs/simulator.md), on virtual time.

The physics is driven by low-level :class:`CoilEvent`\\ s (this coil goes to this PWM
level at this time), so that a plan (:func:`expand_plan`) and a firmware actuation
trace drive the same model. :class:`PianoPhysics` keeps its state (key positions, coil
temperatures, failed coils, pedal) from one :meth:`PianoPhysics.run` to the next; each
run starts ``gap_us`` (1 s) after the last event of the previous one.

Rules chosen where the physics document leaves room (all documented in
docs/simulator.md, "Rules of the implementation"):

- A *strike* is a coil going from 0 to a duty ``d > 0``. Its *pulse* lasts through every
  level the pin then passes through until it goes to 0 or to the hold (a level at or
  below the spec's ``strike.hold_duty`` in the actuator's counts), or the coil fails. A
  change from one non-zero level to another is not a strike.
- The sound is decided at the strike from the state then: the drive, the key's return
  state, and the supply sag, which is the worst (smallest) ``limit / demand`` over the
  strike's effective pulse ``[t, t + min(pulse, P_full))``. The drive is the pulse's
  energy over that window as the pin delivered it, ``∫ level dt / P_full`` (one level
  ``d`` for ``pulse``: ``d · min(1, pulse / P_full)``), so a pin left on longer at a higher
  level strikes louder, not softer.
  Demand is the commanded duty of every key coil that is on, times ``V / R_coil``.
- Heating uses the commanded duty (not the sagged one), so it errs on the hot side.
- The pedal has its own supply and is not part of the supply budget or coil heating.
  Its solenoid pulls in (the dampers lift, one pedal latency later) when its level
  reaches ``PEDAL_DOWN_VALUE / 127`` of full; once that level has lasted
  ``PEDAL_PULL_IN_SHARE`` of the pedal's (hidden) latency, a lower level of at least
  ``PEDAL_HOLD_DUTY`` holds it in (peak and hold, as a key's coil); below that, or a
  hold before the pull-in has lasted, it drops out (the pedal comes up).
- Warm coils (``tempco_per_k`` > 0, the ``heating`` option of sim://): the coil's
  resistance is R(T) = R0·(1 + tempco·ΔT), so its current, and the strike's effective
  drive, is divided by that factor, ΔT being the coil's rise at the strike: a warm coil
  strikes later and softer. Off (0) by default; copper is ``COPPER_TEMPCO_PER_K``.
- A failed coil goes open: it draws no current, its key comes up at the failure time,
  and later events on it are ignored.
- A sounding note lasts at least ``MIN_SOUND_US`` even if its damper was already down.
- Spread (``spread``, on by default; ``sim://?spread=0`` turns it off): the n-th strike
  of a key lands ``z1 · sqrt(sd_us² + (sd_frac · L)²)`` later and ``1 + z2 · loudness_sd``
  times as loud as the formulas say, ``z1, z2`` its own draws (sim/spread.py, counter
  based: the truth's seed, the key's pitch and n), the s.d.s the key's (hidden truth);
  ``z2`` is correlated with ``z1`` by the key's ``spread_corr`` (negative: a late strike
  is a weak one, softer). Every strike counts in n, a silent one too (the plunger moved).
  The damper of that strike falls ``R/3`` after the release give or take the key's
  timing figures on ``R/3`` (its own draw), and the m-th change of the pedal reaches
  the dampers ``pedal_latency · (1 + z · pedal_sd_frac)`` after its command (in the
  order commanded: a change never overtakes the one before).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..actuation import OutputColumns, actuator_pwm_max, expand_commands
from ..errors import PlanError
from ..performance import HeardNote, Performance, Progress
from ..plan import Command, Plan
from ..spec.model import PianoSpec
from .spread import (
    SPREAD_DEFAULT,
    STREAM_DAMPER,
    STREAM_KEY,
    STREAM_PEDAL,
    correlated,
    draw_seed,
    stroke_normals,
    timing_sd_us,
)
from .truth import COPPER_TEMPCO_PER_K, Truth

log = logging.getLogger(__name__)

MAX_LATENCY_US = 400_000  # a strike slower than this never reaches the string
MIN_SOUND_US = 30_000  # shortest sound of a string that was struck
GAP_US = 1_000_000  # virtual time between the end of one run and the start of the next
PEDAL_DOWN_VALUE = 64  # CC64 values >= this lift the dampers
PEDAL_HOLD_DUTY = 0.25  # a pulled-in pedal solenoid stays in at this share of full or more
PEDAL_PULL_IN_SHARE = 0.5  # ... once its pull-in lasted this share of the pedal's latency
_PROGRESS_EVERY = 4096  # events between progress callbacks


@dataclass(frozen=True, slots=True)
class CoilEvent:
    """At ``t_us`` set ``actuator`` to PWM level ``duty`` (0..1 of full drive).

    For the pedal actuator, ``duty`` is the pedal position (CC64 value / 127).
    """

    t_us: int
    actuator: int
    duty: float


@dataclass(slots=True)
class SoundedNotes:
    """Notes that sounded, as columns sorted by (t_us, pitch); ``end_us`` is inf if not damped."""

    t_us: np.ndarray  # (M,) int64
    pitch: np.ndarray  # (M,) int64
    velocity: np.ndarray  # (M,) float64, MIDI velocity units
    end_us: np.ndarray  # (M,) float64

    def __len__(self) -> int:
        return len(self.t_us)

    @classmethod
    def empty(cls) -> SoundedNotes:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z.astype(np.float64), z.astype(np.float64))

    def to_heard(self) -> list[HeardNote]:
        fin = np.isfinite(self.end_us)
        ends = np.where(fin, np.rint(np.where(fin, self.end_us, 0.0)), -1).astype(np.int64)
        return [
            HeardNote(t, p, v, e if e >= 0 else None)
            for t, p, v, e in zip(
                self.t_us.tolist(), self.pitch.tolist(), self.velocity.tolist(), ends.tolist(), strict=True
            )
        ]


@dataclass(slots=True)
class EventColumns:
    """Coil events as columns (the fast path between :func:`expand_plan` and the physics)."""

    t_us: np.ndarray  # (N,) int64, sorted
    actuator: np.ndarray  # (N,) int64
    duty: np.ndarray  # (N,) float64, 0..1

    def __len__(self) -> int:
        return len(self.t_us)

    @classmethod
    def from_events(cls, events: Sequence[CoilEvent]) -> EventColumns:
        t = np.fromiter((e.t_us for e in events), dtype=np.int64, count=len(events))
        a = np.fromiter((e.actuator for e in events), dtype=np.int64, count=len(events))
        d = np.fromiter((e.duty for e in events), dtype=np.float64, count=len(events))
        if len(t) > 1 and (np.diff(t) < 0).any():
            o = np.argsort(t, kind="stable")
            t, a, d = t[o], a[o], d[o]
        return cls(t, a, d)

    @classmethod
    def from_outputs(cls, out: OutputColumns) -> EventColumns:
        """Output changes in counts (sorted) as duties."""
        return cls(out.t_us, out.actuator, out.duty())

    def to_events(self) -> list[CoilEvent]:
        return [
            CoilEvent(t, a, d)
            for t, a, d in zip(self.t_us.tolist(), self.actuator.tolist(), self.duty.tolist(), strict=True)
        ]


def expand_plan(plan: Plan | Iterable[Command], spec: PianoSpec) -> list[CoilEvent]:
    """Coil events of a plan, sorted by time (stable), through the one pulse/hold
    expansion (:mod:`robo_player.actuation`): each level as a fraction of its actuator's
    full PWM level (for the pedal's actuator, its position)."""
    return expand_plan_columns(plan, spec).to_events()


def expand_plan_columns(plan: Plan | Iterable[Command], spec: PianoSpec) -> EventColumns:
    """:func:`expand_plan` as columns (no per-event objects: the device's fast path)."""
    return EventColumns.from_outputs(expand_commands(plan, actuator_pwm_max(spec), spec.name))


def _range_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """max(values[lo[i]:hi[i]]) for every i (hi > lo), by a sparse table: O(n log n)."""
    levels = [values]
    j = 1
    while (1 << j) <= len(values):
        prev, h = levels[-1], 1 << (j - 1)
        levels.append(np.maximum(prev[:-h], prev[h:]))
        j += 1
    length = hi - lo
    k = np.frexp(length.astype(np.float64))[1] - 1  # floor(log2(length))
    out = np.empty(len(lo), dtype=values.dtype)
    for kk in np.unique(k):
        m = k == kk
        lv = levels[int(kk)]
        out[m] = np.maximum(lv[lo[m]], lv[hi[m] - (1 << int(kk))])
    return out


class PianoPhysics:
    """The simulated piano of ``spec`` with hidden parameters ``truth``."""

    def __init__(
        self, spec: PianoSpec, truth: Truth, gap_us: int = GAP_US, tempco_per_k: float = 0.0,
        spread: bool = SPREAD_DEFAULT, spread_draw: int = 0,
    ) -> None:
        truth.check_for(spec)
        if not 0.0 <= tempco_per_k <= 10 * COPPER_TEMPCO_PER_K:
            raise ValueError(f"tempco_per_k {tempco_per_k}: allowed 0..{10 * COPPER_TEMPCO_PER_K}")
        self._tempco = float(tempco_per_k)
        self.spec = spec
        self._truth = truth
        self._gap_us = int(gap_us)
        click = spec.sync_click
        n_act = max(
            [k.channel for k in spec.keys] + ([spec.pedal.channel] if spec.pedal else [])
            + ([click.channel] if click else [])
        )
        n_act += 1
        self._n_act = n_act
        self._pedal_ch = spec.pedal.channel if spec.pedal else -1
        # the hearing's click (a piezo): it sounds delay_us after its output's on-edge
        self._click_ch = click.channel if click else -1
        self._click_delay_us = click.delay_us if click else 0
        self._click_level = 0.0
        self.clicks_us: list[int] = []  # the last run's clicks at the microphone (run time)
        pw = spec.power
        self._amps_per_duty = pw.supply_v / pw.coil_ohm
        self._supply_a = pw.supply_a
        self._tmax = spec.thermal.coil_max_rise_k

        def per_act(default: float) -> np.ndarray:
            return np.full(n_act, default, dtype=np.float64)

        self._pitch = np.full(n_act, -1, dtype=np.int64)
        self._p_full = per_act(1.0)
        self._thr = per_act(0.5)
        self._lat_f = per_act(1.0)
        self._alpha = per_act(1.0)
        self._gain = per_act(1.0)
        self._k = per_act(1.0)
        self._v0 = per_act(0.0)
        self._ret = per_act(0.0)
        self._spread = bool(spread)
        self._spread_seed = draw_seed(truth.spread_seed(), spread_draw)  # the strokes' draw (sim/spread.py)
        self._sd_us = per_act(0.0)  # strike-to-strike spread (sim/spread.py)
        self._sd_frac = per_act(0.0)
        self._loud_sd = per_act(0.0)
        self._corr = per_act(0.0)
        heat_ss = per_act(0.0)  # steady-state rise (K) at duty 1: V²/R / C · tau
        tau_us = per_act(1.0)
        for ks in spec.keys:
            kt = truth.key(ks.pitch)
            a = ks.channel
            self._pitch[a] = ks.pitch
            self._p_full[a] = kt.pulse_full_us
            self._thr[a] = kt.threshold
            self._lat_f[a] = kt.latency_full_us
            self._alpha[a] = kt.alpha
            self._gain[a] = kt.gain
            self._k[a] = kt.k
            self._v0[a] = kt.v0
            self._ret[a] = kt.return_us
            self._sd_us[a] = kt.timing_sd_us
            self._sd_frac[a] = kt.timing_sd_frac
            self._loud_sd[a] = kt.loudness_sd
            self._corr[a] = kt.spread_corr
            heat_ss[a] = pw.supply_v**2 / pw.coil_ohm / kt.heat_capacity_j_per_k * kt.tau_s
            tau_us[a] = kt.tau_s * 1e6
        self._heat_ss = heat_ss.tolist()
        self._tau_us = tau_us.tolist()
        self._ret_list = self._ret.tolist()
        self._p_full_list = self._p_full.tolist()
        # the highest level that is a hold (it ends a strike's pulse): the spec's hold
        # duty in the actuator's counts, as the planners round it
        pwm_max = actuator_pwm_max(spec)
        self._hold_max = [
            (round(spec.strike.hold_duty * pwm_max[a]) + 0.5) / pwm_max[a] if a in pwm_max else 0.0
            for a in range(n_act)
        ]
        self._is_key = (self._pitch >= 0).tolist()
        self._pedal_latency_us = truth.pedal_latency_us
        self._pedal_sd_frac = truth.pedal_sd_frac
        # State, in absolute virtual µs (the clock never goes back).
        self._origin_us = 0  # absolute time of t_us = 0 of the next run
        self._duty = [0.0] * n_act
        self._temp = [0.0] * n_act  # K above ambient at _t_last
        self._t_last = [0.0] * n_act
        self._failed = [False] * n_act
        self._release_t = [-math.inf] * n_act  # when each key last came up
        self._strikes = [0] * n_act  # strikes of each key so far (the spread's counter)
        self._pedal_duty = 0.0  # the pedal's position (0..1) at the end of the last run
        self._pedal_in = False  # ... and whether its solenoid is pulled in (holds)
        self._pedal_changes = 0  # the pedal's sensed changes so far (the spread's counter)

    # -- state seen from outside ---------------------------------------------------------

    @property
    def clock_us(self) -> int:
        """Absolute virtual time at which the next run starts."""
        return self._origin_us

    def energised(self) -> list[int]:
        """Key actuators whose coil is on now (end of the last run)."""
        on = [a for a in range(self._n_act) if self._duty[a] > 0.0]
        return on + ([self._click_ch] if self._click_level > 0.0 else [])

    def _temp_at(self, a: int, t: float) -> float:
        """Temperature rise (K) of coil ``a`` at absolute time ``t`` >= its last event."""
        d = self._duty[a]
        ts = self._heat_ss[a] * d * d
        return ts + (self._temp[a] - ts) * math.exp(-(t - self._t_last[a]) / self._tau_us[a])

    def coil_temp_ratio(self, actuator: int) -> float:
        """Temperature rise / allowed rise of one coil at the start of the next run."""
        return self._temp_at(actuator, float(self._origin_us)) / self._tmax

    def failed(self) -> list[int]:
        return [a for a in range(self._n_act) if self._failed[a]]

    def fork(self) -> PianoPhysics:
        """A copy whose state (coils, keys, clock) moves on apart from this one; the
        hidden parameters are shared, read only (the live hearing's replays: sim/live.py)."""
        f = copy.copy(self)
        f._duty, f._temp, f._t_last = list(self._duty), list(self._temp), list(self._t_last)
        f._failed, f._release_t = list(self._failed), list(self._release_t)
        f._strikes = list(self._strikes)
        f.clicks_us = list(self.clicks_us)
        return f

    # -- the simulation ----------------------------------------------------------------

    def run(self, events: Sequence[CoilEvent], progress: Progress | None = None) -> Performance:
        """Play ``events`` (times relative to this run's start) and report what sounded.

        The heard notes are exact (no sensor noise): :mod:`robo_player.sim.sensor` adds it.
        """
        perf, notes = self.run_columns(EventColumns.from_events(events), progress)
        perf.heard = notes.to_heard()
        return perf

    def run_columns(
        self, cols: EventColumns, progress: Progress | None = None
    ) -> tuple[Performance, SoundedNotes]:
        """:meth:`run` on columns; the notes come back as columns too (``perf.heard`` empty)."""
        self._validate(cols)
        origin = self._origin_us
        n_ev = len(cols)
        tt = (cols.t_us + origin).astype(np.float64).tolist()
        aa = cols.actuator.tolist()
        dd = cols.duty.tolist()

        # Local aliases: this loop is the hot path (about 1 µs per event).
        duty, temp, t_last, failed = self._duty, self._temp, self._t_last, self._failed
        release_t, heat_ss, tau_us, ret = self._release_t, self._heat_ss, self._tau_us, self._ret_list
        strikes = self._strikes
        tmax, pedal_ch, click_ch = self._tmax, self._pedal_ch, self._click_ch
        clicks: list[int] = []
        exp, log_ = math.exp, math.log
        inf = math.inf

        s_t: list[float] = []  # strike: absolute time
        s_a: list[int] = []  # actuator
        s_d: list[float] = []  # commanded duty of the pulse's latest level
        s_seg: list[float] = []  # absolute time that level began
        s_e: list[float] = []  # the pulse's energy before it (duty·µs within P_full)
        p_full, hold_max = self._p_full_list, self._hold_max
        s_pulse: list[float] = []  # pulse length (µs), inf while open
        s_ret: list[float] = []  # key-return scale e/R (1 if fully up)
        s_rel: list[float] = []  # absolute time the key came up again, inf if not
        s_temp: list[float] = []  # coil temperature rise (K) at the strike
        s_n: list[int] = []  # the strike's number on its key (the spread's counter)
        pulse_open: dict[int, int] = {}  # actuator -> strike whose pulse is running
        pressed: dict[int, int] = {}  # actuator -> strike whose key is down
        chg_t: list[float] = []  # supply demand changes: absolute time, duty delta
        chg_d: list[float] = []
        pedal_t: list[float] = []  # pedal commands: absolute time, position 0..1
        pedal_v: list[float] = []
        failures: list[dict[str, object]] = []
        demand0 = sum(duty[a] for a in range(self._n_act) if a not in (pedal_ch, click_ch))
        peak = max((self._temp_at(a, float(origin)) for a in range(self._n_act)), default=0.0)

        def fail(a: int, tf: float) -> None:
            failed[a] = True
            temp[a] = tmax
            t_last[a] = tf
            if duty[a] > 0.0:
                chg_t.append(tf)
                chg_d.append(-duty[a])
            duty[a] = 0.0
            j = pulse_open.pop(a, None)
            if j is not None:
                s_pulse[j] = tf - s_t[j]
            j = pressed.pop(a, None)
            if j is not None:
                s_rel[j] = tf
            release_t[a] = tf
            pitch = int(self._pitch[a])
            failures.append(
                {"actuator": a, "pitch": pitch, "t_us": int(round(tf - origin)), "temp_ratio": 1.0}
            )
            log.warning("coil of actuator %d (pitch %d) failed at t_us=%d: overheated",
                        a, pitch, int(round(tf - origin)))

        for i, (t, a, d) in enumerate(zip(tt, aa, dd, strict=True)):
            if progress is not None and i % _PROGRESS_EVERY == 0:
                progress(i / n_ev)
            if a == pedal_ch:
                pedal_t.append(t)
                pedal_v.append(d)
                continue
            if a == click_ch:  # the pin's on-edge makes the click
                if d > 0.0 and self._click_level == 0.0:
                    clicks.append(int(round(t - origin)) + self._click_delay_us)
                self._click_level = d
                continue
            if failed[a]:
                continue
            d0 = duty[a]
            if d == d0:
                continue
            t0 = temp[a]
            if d0 > 0.0 or t0 > 0.0:
                # Closed form of dT/dt = d0²·V²/R/C − T/τ over [t_last, t].
                ts = heat_ss[a] * d0 * d0
                tu = tau_us[a]
                t1 = ts + (t0 - ts) * exp(-(t - t_last[a]) / tu)
                if t1 >= tmax and ts > tmax:
                    fail(a, t_last[a] + tu * log_((ts - t0) / (ts - tmax)))
                    peak = tmax
                    continue
                temp[a] = t1
                if t1 > peak:
                    peak = t1
            t_last[a] = t
            duty[a] = d
            chg_t.append(t)
            chg_d.append(d - d0)
            j = pulse_open.pop(a, None)
            if j is not None:
                if d > hold_max[a]:  # still the pulse: its energy goes on at the new level
                    seg = s_seg[j]
                    w_end = s_t[j] + p_full[a]
                    if w_end > seg:
                        s_e[j] += s_d[j] * (min(t, w_end) - seg)
                    s_seg[j] = t
                    s_d[j] = d
                    pulse_open[a] = j
                else:
                    s_pulse[j] = t - s_t[j]
            if d0 == 0.0:  # a strike: the key starts down
                e = t - release_t[a]
                r = ret[a]
                pulse_open[a] = pressed[a] = len(s_t)
                s_t.append(t)
                s_a.append(a)
                s_d.append(d)
                s_seg.append(t)
                s_e.append(0.0)
                s_pulse.append(inf)
                s_ret.append(1.0 if e >= r else e / r)
                s_rel.append(inf)
                s_temp.append(temp[a])
                s_n.append(strikes[a])
                strikes[a] += 1
            elif d == 0.0:  # the key is let go
                release_t[a] = t
                j = pressed.pop(a, None)
                if j is not None:
                    s_rel[j] = t

        # Coils left on keep heating until the next run starts (or they fail).
        t_end = tt[-1] if n_ev else float(origin)
        next_origin = t_end + self._gap_us
        self.clicks_us = clicks
        for a in range(self._n_act):
            d0 = duty[a]
            if d0 <= 0.0 or a == pedal_ch or a == click_ch:
                continue
            ts = heat_ss[a] * d0 * d0
            tu = tau_us[a]
            x = (t_end - t_last[a]) / tu
            peak = max(peak, ts + (temp[a] - ts) * exp(-x))
            if ts > tmax and ts + (temp[a] - ts) * exp(-(next_origin - t_last[a]) / tu) >= tmax:
                fail(a, t_last[a] + tu * log_((ts - temp[a]) / (ts - tmax)))
                peak = tmax
        if progress is not None:
            progress(1.0)

        pedal_t, pedal_v, pedal_end, pedal_in = self._pedal_positions(pedal_t, pedal_v, next_origin)
        pedal_lat = self._pedal_latencies(len(pedal_t))
        perf, notes = self._sound(
            origin, demand0, s_t, s_a, (s_d, s_seg, s_e), s_pulse, s_ret, s_rel, chg_t, chg_d,
            pedal_t, pedal_v, pedal_lat, s_temp, s_n,
        )
        perf.coil_failures = failures
        perf.max_coil_temp_ratio = float(peak / tmax)
        self._pedal_duty, self._pedal_in = pedal_end, pedal_in
        self._origin_us = int(next_origin)
        return perf, notes

    def _pedal_positions(
        self, pedal_t: list[float], pedal_v: list[float], next_origin: float
    ) -> tuple[list[float], list[float], float, bool]:
        """The pedal's commanded levels -> its positions (0..1), as the solenoid moves it:
        a level at or past the pull-in level is the position; a lower one of at least
        ``PEDAL_HOLD_DUTY`` keeps a pulled-in pedal where it is (no change sensed); any
        other level is the position (below the down value: up). A level equal to the
        position changes nothing (the sensor reports changes). Also the position and
        whether it holds at the end (``next_origin``)."""
        pull = (PEDAL_DOWN_VALUE - 0.5) / 127.0
        need = PEDAL_PULL_IN_SHARE * self._pedal_latency_us
        pos, held = self._pedal_duty, self._pedal_in
        since = -math.inf if pos >= pull else math.inf  # when the pull-in level began
        out_t: list[float] = []
        out_v: list[float] = []
        for t, v in zip(pedal_t, pedal_v, strict=True):
            if v == pos and not held:
                continue  # no change: nothing moves, nothing is sensed
            if v >= pull:
                since = -math.inf if held else min(since, t)  # (held: it is in already)
                held = False  # in by the level itself
                pos = v
            else:
                held = (held or t - since >= need) and v >= PEDAL_HOLD_DUTY
                since = math.inf
                if held:
                    continue  # the hold keeps it in: it does not move
                pos = v
            out_t.append(t)
            out_v.append(v)
        return out_t, out_v, pos, held or next_origin - since >= need

    def _pedal_latencies(self, m: int) -> np.ndarray:
        """The latency (µs) of each of the next ``m`` sensed pedal changes: the truth's,
        each with its own deviation when the spread is on (counter based, as a key's)."""
        lat = np.full(m, float(self._pedal_latency_us))
        if self._spread and m:
            n = np.arange(self._pedal_changes, self._pedal_changes + m)
            z, _ = stroke_normals(self._spread_seed, STREAM_PEDAL, np.zeros(m, dtype=np.int64), n)
            lat = lat * (1.0 + z * self._pedal_sd_frac)
        self._pedal_changes += m
        return lat

    def _validate(self, cols: EventColumns) -> None:
        if not len(cols):
            return
        acts = np.unique(cols.actuator)
        ok = (acts >= 0) & (acts < self._n_act)
        ok[ok] = (self._pitch[acts[ok]] >= 0) | (acts[ok] == self._pedal_ch) | (acts[ok] == self._click_ch)
        if not ok.all():
            raise PlanError(
                f"coil event on actuator {int(acts[~ok][0])}: no such actuator in spec {self.spec.name!r}"
            )
        bad = np.flatnonzero(~((cols.duty >= 0.0) & (cols.duty <= 1.0)))
        if len(bad):
            i = int(bad[0])
            raise PlanError(
                f"coil event #{i} (t_us={int(cols.t_us[i])}): duty {float(cols.duty[i])} "
                "out of range (allowed: 0..1)"
            )
        if cols.t_us[0] < 0:
            raise PlanError(f"coil event #0: t_us {int(cols.t_us[0])} is negative (allowed: >= 0)")
        if len(cols) > 1 and (np.diff(cols.t_us) < 0).any():
            raise PlanError("coil events are not sorted by t_us")

    def _supply_scale(
        self, demand0: float, chg_t: list[float], chg_d: list[float],
        start: np.ndarray, end: np.ndarray,
    ) -> np.ndarray:
        """limit/demand (<= 1) at its worst over [start, end) of every strike."""
        ct = np.asarray(chg_t, dtype=np.float64)
        order = np.argsort(ct, kind="stable")
        ct = ct[order]
        demand = demand0 + np.cumsum(np.asarray(chg_d, dtype=np.float64)[order])
        # Demand after all changes at one instant: keep the last entry of each time.
        last = np.r_[ct[1:] != ct[:-1], True]
        ut, ud = ct[last], demand[last]
        lo = np.searchsorted(ut, start, side="left")
        hi = np.maximum(np.searchsorted(ut, end, side="left"), lo + 1)
        worst = _range_max(ud, lo, hi) * self._amps_per_duty
        return np.minimum(1.0, self._supply_a / np.maximum(worst, 1e-12))

    def _sound(
        self, origin: int, demand0: float,
        s_t: list[float], s_a: list[int],
        s_drive: tuple[list[float], list[float], list[float]], s_pulse: list[float],
        s_ret: list[float], s_rel: list[float], chg_t: list[float], chg_d: list[float],
        pedal_t: list[float], pedal_v: list[float], pedal_lat: np.ndarray, s_temp: list[float],
        s_n: list[int],
    ) -> tuple[Performance, SoundedNotes]:
        """Vectorised: which strikes sound, when, how loud, and when they are damped."""
        # when each pedal change reaches the dampers: in the order commanded
        pedal_at = np.maximum.accumulate(np.asarray(pedal_t, dtype=np.float64) + pedal_lat)
        sensed_pedal = [
            (int(round(t - origin)), int(round(v * 127))) for t, v in zip(pedal_at.tolist(), pedal_v, strict=True)
        ]
        ns = len(s_t)
        if ns == 0:
            extra = {"strikes": 0, "silent_strikes": 0, "min_supply_scale": 1.0, "clock_us": origin}
            return Performance(pedal=sensed_pedal, extra=extra), SoundedNotes.empty()
        t = np.asarray(s_t)
        a = np.asarray(s_a, dtype=np.int64)
        d = np.asarray(s_drive[0])  # the pulse's latest level, since seg, energy e0 before
        seg = np.asarray(s_drive[1])
        e0 = np.asarray(s_drive[2])
        pulse = np.asarray(s_pulse)
        retf = np.asarray(s_ret)
        p_full = self._p_full[a]
        sag = self._supply_scale(demand0, chg_t, chg_d, t, t + np.minimum(pulse, p_full))
        one = d * np.minimum(1.0, pulse / p_full)  # one level (the planned strike)
        several = (e0 + d * np.maximum(0.0, t + np.minimum(pulse, p_full) - seg)) / p_full
        d_eff = np.where(seg > t, several, one) * retf * sag
        if self._tempco > 0.0:  # I = V / R(T): a warm coil drives its hammer less
            d_eff = d_eff / (1.0 + self._tempco * np.asarray(s_temp))
        thr = self._thr[a]
        u = (d_eff - thr) / (1.0 - thr)
        ok = (u > 0.0) & (retf >= 0.5)
        uu = np.where(ok, u, 1.0)
        lat = self._lat_f[a] * uu ** (-self._alpha[a])
        k = self._k[a]
        v0 = self._v0[a]
        vel = self._gain[a] * (v0 + (1.0 - v0) * (1.0 - np.exp(-k * uu)) / (1.0 - np.exp(-k)))
        if self._spread:  # this strike's own deviation (sim/spread.py)
            z_t, z_v = stroke_normals(self._spread_seed, STREAM_KEY, self._pitch[a], np.asarray(s_n))
            lat = lat + z_t * timing_sd_us(lat, self._sd_us[a], self._sd_frac[a])
            vel = vel * (1.0 + correlated(z_t, z_v, self._corr[a]) * self._loud_sd[a])
        ok &= lat <= MAX_LATENCY_US

        idx = np.flatnonzero(ok)
        onset = np.rint(t[idx] + lat[idx])
        pitch = self._pitch[a[idx]]
        vel = vel[idx]
        # Dampers land R/3 after the key comes up, unless the pedal holds them off then.
        fall = self._ret[a[idx]] / 3.0
        if self._spread:  # the damper's fall spreads as its key's strokes do
            z_d, _ = stroke_normals(self._spread_seed, STREAM_DAMPER, self._pitch[a[idx]], np.asarray(s_n)[idx])
            fall = np.maximum(0.0, fall + z_d * timing_sd_us(fall, self._sd_us[a[idx]], self._sd_frac[a[idx]]))
        damper = np.asarray(s_rel)[idx] + fall
        end = self._pedal_hold(damper, pedal_at, pedal_v)
        end = np.maximum(end, onset + MIN_SOUND_US)
        # A new contact on the same string ends the note before it.
        order = np.lexsort((onset, pitch))
        same = pitch[order][1:] == pitch[order][:-1]
        nxt = np.full(len(idx), np.inf)
        nxt[order[:-1][same]] = onset[order][1:][same]
        end = np.minimum(end, nxt)

        o = np.lexsort((pitch, onset))
        notes = SoundedNotes(
            t_us=(onset[o] - origin).astype(np.int64),
            pitch=pitch[o].astype(np.int64),
            velocity=vel[o],
            end_us=end[o] - origin,
        )
        perf = Performance(
            pedal=sensed_pedal,
            extra={
                "strikes": ns,
                "silent_strikes": ns - len(idx),
                "min_supply_scale": float(sag.min()),
                "clock_us": origin,
            },
        )
        return perf, notes

    def _pedal_hold(self, damper: np.ndarray, pedal_at: np.ndarray, pedal_v: list[float]) -> np.ndarray:
        """When each damper really lands: at ``damper``, or when the pedal next comes up
        (``pedal_at``: when each pedal change reaches the dampers, sorted)."""
        down_at = PEDAL_DOWN_VALUE - 0.5  # compare CC values, not float fractions
        pt = pedal_at
        pdown = np.r_[self._pedal_duty * 127.0 >= down_at,
                      np.asarray(pedal_v, dtype=np.float64) * 127.0 >= down_at]
        if not pdown.any():
            return damper
        # next_up[i]: effective time of the first pedal-up at or after timeline entry i
        # (entry 0 is the state at the start of the run, entries 1.. are the commands).
        times = np.r_[-np.inf, pt]
        next_up = np.full(len(times), np.inf)
        nu = np.inf
        for i in range(len(times) - 1, -1, -1):
            if not pdown[i]:
                nu = times[i]
            next_up[i] = nu
        finite = np.isfinite(damper)
        pos = np.searchsorted(pt, np.where(finite, damper, 0.0), side="right")  # entry index
        held = finite & pdown[pos]
        return np.where(held, np.maximum(damper, next_up[pos]), damper)

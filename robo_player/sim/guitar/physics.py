"""Physics of the simulated guitar and bass (docs/guitar.md, "Simulator"), on virtual time.

Driven by what the outputs did, never by what a plan asked: the coils' output changes
(:class:`~robo_player.actuation.OutputColumns`, the one pulse/hold expansion the piano
uses) and every carriage's step times (:class:`CarriageSteps`; on ``sim://`` from the
step generator of :mod:`robo_player.motion`, on firmware ports from the pin trace), or
a hobby servo's pulses (:class:`ServoPulses`; on ``sim://`` from the firmware's pulse
rule, :mod:`robo_player.servo`, on firmware ports from the pin trace).

Per string it keeps the fret contact (the presser, or the matrix's fret solenoids),
the damper and the carriage. Rules:

- A *pick* is the picker's coil going from 0 to a duty ``d``; its pulse lasts until the
  next change on that coil. It sounds after its latency (hidden truth, the piano key's
  family: ``u = (d * min(1, pulse/pulse_full) - threshold) / (1 - threshold)``,
  ``L = latency_full * u^-alpha``), at the pitch of the fret that is down then: the
  open string, or the presser's fret under its carriage, or the matrix's highest fret
  solenoid that is on.
- A pick sooner than its picker's return time (truth) after the picker let go strikes
  with ``elapsed / return`` of its drive, and misses the string below half
  (``silent_picks``).
- A fret contact is clean ``settle`` (truth, per presser or fret solenoid) after it
  pressed, or after its carriage settled under it if that came later. A pick that
  sounds before that *buzzes*: it is heard at ``BUZZ_LOUDNESS`` of its loudness and
  reported (``buzzed_notes``).
- A carriage moves from its first step of a burst (steps closer than ``MOVE_GAP_US``)
  to its last, time-stretched by its real speed (truth: ``speed_scale`` <= 1), then
  settles (truth). A servo carriage reads each pulse's width (its spec's pulse range
  onto its travel, clamped to it): from the end of a pulse whose width asks for
  another place it runs there at its real speed (the spec's times ``speed_scale``),
  a later width turning it where it is, then settles (truth). A fretted pick (presser down) that sounds while it moves gives no
  note (``moving_picks``); with the presser up the carriage does not touch the string,
  so an open string sounds and rings while its carriage moves;
  a presser that is down while its carriage moves is a fault (``carriage_faults``)
  and ends the note on that string.
- A damper is on the string from ``damper_latency`` after its coil goes on until
  ``damper_latency`` after it goes off: a pick sounding then is muted
  (``damped_picks``), and a ringing note ends when the damper lands.
- A note also ends when the next pick on its string sounds and when its carriage starts
  to move (with its presser down: a fault).
- A fret contact that changes on a ringing string (not yet ended by its damper, the next
  pick or a fault) sounds the new fret, as a player's slur: the fret that sounds is
  pressed or lifted (a higher matrix fret pressed: a hammer-on; the sounding fret, or a
  slider's presser, released: a pull-off to the fret below, or the open string; a
  slider's presser pressed on a ringing open string: a hammer-on to its carriage's
  fret). The note ends there and a *slur* note starts at the new pitch, at
  ``SLUR_LOUDNESS`` of the ringing note's loudness, counted in ``slurred_notes`` and
  listed in ``slurs``. On a string the damper holds, or one that has stopped ringing,
  a change sounds nothing.

- Spread (``spread``, on by default; ``sim://?spread=0`` turns it off): the n-th pick of
  a picker lands ``z1 · sqrt(sd_us² + (sd_frac · L)²)`` later and ``1 + z2 · loudness_sd``
  times as loud, and the n-th press of a presser or fret solenoid settles in
  ``settle · (1 + z · press_sd)``: ``z`` its own draws (sim/spread.py, counter based:
  the truth's seed, the picker's string or the presser's actuator, n), the s.d.s its own
  (hidden truth). Every pick counts in n, a silent one too.

State (coil levels, carriage positions) carries from one run to the next; each run
starts ``GAP_US`` after the last event of the previous one.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ...actuation import OutputColumns
from ...errors import PlanError
from ...performance import Performance, Progress
from ...servo import position_mm
from ...spec.actuators import ActuatorKind
from ...spec.guitar import GuitarSpec, Mechanism, fret_distance_mm
from ..physics import SoundedNotes
from ..spread import SPREAD_DEFAULT, STREAM_PICK, STREAM_PRESS, stroke_normals
from .truth import GuitarTruth

MAX_LATENCY_US = 400_000  # a pick slower than this never reaches the string
GAP_US = 1_000_000  # virtual time between runs
MOVE_GAP_US = 50_000  # steps closer than this belong to one move
BUZZ_LOUDNESS = 0.5  # a buzzed note is heard at this fraction of its loudness
SLUR_LOUDNESS = 0.5  # a hammer-on or pull-off: this fraction of the ringing note's loudness
CHORD_US = 15_000  # notes sounding this close together are one onset (string changes)
_INF = math.inf

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CarriageSteps:
    """One carriage's steps in a run: when (µs, this run's time) and the position after."""

    t_us: np.ndarray  # (n,) int64, sorted
    position: np.ndarray  # (n,) int64, counts after each step


@dataclass(slots=True)
class ServoPulses:
    """One servo carriage's pulses in a run: when each rose (µs, this run's time) and
    its width (µs)."""

    t_us: np.ndarray  # (n,) int64, sorted
    width_us: np.ndarray  # (n,) int64


@dataclass(slots=True)
class GuitarNotes:
    """What sounded, as columns sorted by (t_us, pitch); ``end_us`` inf if never ended."""

    t_us: np.ndarray  # (M,) int64
    pitch: np.ndarray  # (M,) int64
    velocity: np.ndarray  # (M,) float64
    end_us: np.ndarray  # (M,) float64
    string: np.ndarray  # (M,) int64
    fret: np.ndarray  # (M,) int64
    buzz: np.ndarray  # (M,) bool

    def __len__(self) -> int:
        return len(self.t_us)

    def sounded(self) -> SoundedNotes:
        return SoundedNotes(self.t_us, self.pitch, self.velocity, self.end_us)


@dataclass(slots=True)
class _Move:
    t0: float  # first step (absolute µs)
    moving_until: float  # last step, stretched by the real speed
    settled: float  # ... plus the settle time
    before: float  # position (counts) before and after
    after: float


@dataclass(slots=True)
class _Intervals:
    """On-intervals of one coil, absolute µs (``off`` is inf while on)."""

    on: list[float] = field(default_factory=list)
    off: list[float] = field(default_factory=list)
    n: list[int] = field(default_factory=list)  # each interval's press number (the spread's counter)

    def containing(self, t: float) -> int:
        """Index of the interval with ``on <= t < off``, or -1."""
        i = bisect.bisect_right(self.on, t) - 1
        return i if i >= 0 and t < self.off[i] else -1

    def next_on(self, t: float) -> float:
        i = bisect.bisect_right(self.on, t)
        return self.on[i] if i < len(self.on) else _INF


class _Heat:
    """Coil temperatures: ``dT/dt = d² · V²/R/C − T/τ`` (the spec's thermal section, as the
    planner's :class:`~robo_player.rules.CoilHeat` assumes); a coil that reaches its
    allowed rise burns open (its later changes are ignored)."""

    def __init__(self, spec: GuitarSpec) -> None:
        coils = spec.actuators.of_kind(ActuatorKind.COIL)
        self.ss = {a.index: a.heat_k_per_s * a.tau_s for a in coils}  # K at full drive, steady
        self.tau_us = {a.index: a.tau_s * 1e6 for a in coils}
        self.tmax = {a.index: a.max_rise_k for a in coils}
        self.temp = {a.index: 0.0 for a in coils}  # K at t_last
        self.t_last = {a.index: 0.0 for a in coils}
        self.failed: set[int] = set()
        self.peak = 0.0  # of this run, temperature / allowed

    def ratio_at(self, a: int, d: float, t: float) -> float:
        ts = self.ss[a] * d * d
        return (ts + (self.temp[a] - ts) * math.exp(-(t - self.t_last[a]) / self.tau_us[a])) / self.tmax[a]

    def change(self, a: int, d0: float, d: float, t: float) -> float | None:
        """Coil ``a`` went from duty ``d0`` to ``d`` at ``t``: its temperature then, and
        the time it burnt open before ``t`` (None if it did not)."""
        ts, t0, tmax = self.ss[a] * d0 * d0, self.temp[a], self.tmax[a]
        r = self.ratio_at(a, d0, t)
        if r >= 1.0 and ts > tmax:
            t_fail = self.t_last[a] + self.tau_us[a] * math.log((ts - t0) / (ts - tmax))
            self.failed.add(a)
            self.temp[a], self.t_last[a], self.peak = tmax, t_fail, 1.0
            log.warning("coil of actuator %d failed: overheated", a)
            return t_fail
        self.temp[a], self.t_last[a] = r * tmax, t
        self.peak = max(self.peak, r)
        return None


class GuitarPhysics:
    """The simulated guitar or bass of ``spec`` with hidden parameters ``truth``."""

    def __init__(self, spec: GuitarSpec, truth: GuitarTruth, gap_us: int = GAP_US,
                 spread: bool = SPREAD_DEFAULT) -> None:  # fmt: skip
        truth.check_for(spec)
        self.spec = spec
        self._truth = truth
        self._spread = bool(spread)
        self._spread_seed = truth.spread_seed()
        self._gap_us = int(gap_us)
        self._slider = spec.mechanism is Mechanism.SLIDER
        amap = spec.actuators
        self._coils = {a.index for a in amap.of_kind(ActuatorKind.COIL)}
        self._role: dict[int, tuple[str, int, int]] = {}  # actuator -> (kind, string, fret)
        for a in amap:
            if a.role == "sync_click":
                continue
            parts = a.role.split(":")
            self._role[a.index] = (parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else 0)
        # the hearing's click (a piezo, as the piano's): it sounds delay_us after its
        # output's on-edge, whatever the plan meant (sim/physics.py)
        click = spec.sync_click
        self._click_ch = click.channel if click is not None else -1
        self._click_delay_us = click.delay_us if click is not None else 0
        self.clicks_us: list[int] = []  # the last run's clicks at the microphone (run time)
        self._settle = {amap.by_role(r).index: v for r, v in truth.pressers.items()}
        self._press_sd = {amap.by_role(r).index: truth.press_sd(r) for r in truth.pressers}
        self._car: dict[int, tuple[int, float, float, float]] = {}  # string -> (act, scale, settle, mm/count)
        self._deadband: dict[int, float] = {}  # string -> a servo's dead band, µs
        for r, c in truth.carriages.items():
            a = amap.by_role(r)
            self._car[int(r.split(":")[1])] = (a.index, c.speed_scale, float(c.settle_us),
                                               a.travel_mm / a.pwm_max)  # fmt: skip
            self._deadband[int(r.split(":")[1])] = c.deadband_us
        # string -> a servo carriage's (pulse_min_us, pulse_max_us, travel_mm, mm/s)
        self._servo: dict[int, tuple[float, float, float, float]] = {
            s: (float(cs.pulse_min_us or 0), float(cs.pulse_max_us or 0), cs.travel_mm, cs.max_speed_mm_s)
            for s, st in enumerate(spec.strings)
            if (cs := st.carriage) is not None and cs.drive == "servo"
        }
        scale = spec.neck.scale_length_mm
        self._fret_mm = np.array([fret_distance_mm(scale, n) for n in range(spec.neck.frets + 1)])
        # state, absolute virtual µs
        self._origin_us = 0
        self._duty: dict[int, float] = {}
        self._on_since: dict[int, float] = {}
        self._car_pos: dict[int, float] = {s: 0.0 for s in self._car}  # counts, parked at the nut
        self._car_settled: dict[int, float] = {s: -_INF for s in self._car}
        self._before: dict[int, tuple[float, float]] = {s: (0.0, -_INF) for s in self._car}  # at the run's start
        self._heat = _Heat(spec)
        self._pick_off: dict[int, float] = {}  # picker -> when its coil last went off
        self._presses: dict[int, int] = {}  # coil -> its on-edges so far (the spread's counter)
        self._slur_list: list[dict[str, int]] = []  # this run's slurs (t_us, string, fret)

    @property
    def clock_us(self) -> int:
        return self._origin_us

    def energised(self) -> list[int]:
        return sorted(a for a, d in self._duty.items() if d > 0.0)

    def fret_at_mm(self, x_mm: float) -> int:
        """The fret that sounds when the string is pressed at ``x_mm`` from the nut: the
        first fret wire at or beyond it (0 at the nut; the top fret past the last wire)."""
        if x_mm <= 1e-9:
            return 0
        return min(int(np.searchsorted(self._fret_mm, x_mm - 1e-9)), self.spec.neck.frets)

    # -- the simulation ----------------------------------------------------------------

    def run(self, outputs: OutputColumns,
            steps: Mapping[int, CarriageSteps | ServoPulses] | None = None,
            progress: Progress | None = None) -> tuple[Performance, GuitarNotes]:  # fmt: skip
        """Play the coils' output changes and the carriages' steps (this run's time);
        the notes that sounded come back exact (the microphone adds its noise)."""
        steps = steps or {}
        self._validate(outputs, steps)
        origin = float(self._origin_us)
        tt = (outputs.t_us + self._origin_us).astype(np.float64).tolist()
        aa = outputs.actuator.tolist()
        dd = outputs.duty().tolist()
        n_str = len(self.spec.strings)
        ivs: dict[int, _Intervals] = {}
        picks: list[tuple[float, int, float, float, int]] = []  # (t, actuator, duty, return scale, n)
        pulse_end: dict[int, int] = {}  # picker -> index in picks of its open pulse
        pulses: list[float] = []
        duty, since, heat, presses = self._duty, self._on_since, self._heat, self._presses
        heat.peak = max((heat.ratio_at(a, duty.get(a, 0.0), origin) for a in heat.temp), default=0.0)
        failures: list[dict[str, object]] = []
        clicks: list[int] = []
        for a, d0 in duty.items():  # coils on from the previous run
            if d0 > 0.0 and a != self._click_ch:
                iv = ivs.setdefault(a, _Intervals())
                iv.on.append(since[a])
                iv.off.append(_INF)
                iv.n.append(presses[a] - 1)
        for i, (t, a, d) in enumerate(zip(tt, aa, dd, strict=True)):
            if progress is not None and i % 4096 == 0:
                progress(i / max(1, len(tt)))
            d0 = duty.get(a, 0.0)
            if d == d0 or a in heat.failed:
                continue
            t_fail = heat.change(a, d0, d, t)
            if t_fail is not None:  # burnt open before this change: off from then on
                d, t = 0.0, t_fail
                failures.append({"actuator": a, "role": self.spec.actuators[a].role,
                                 "t_us": int(round(t - origin)), "temp_ratio": 1.0})  # fmt: skip
            duty[a] = d
            if a == self._click_ch:  # the pin's on-edge makes the click
                if d0 == 0.0:
                    clicks.append(int(round(t - origin)) + self._click_delay_us)
                continue
            j = pulse_end.pop(a, None)
            if j is not None:
                pulses[j] = t - picks[j][0]
            if d0 == 0.0:
                since[a] = t
                iv = ivs.setdefault(a, _Intervals())
                iv.on.append(t)
                iv.off.append(_INF)
                n_on = presses.get(a, 0)
                iv.n.append(n_on)
                presses[a] = n_on + 1
                if self._role[a][0] == "pick":
                    ret = self._truth.strings[self._role[a][1]].return_us
                    back = t - self._pick_off.get(a, -_INF)
                    pulse_end[a] = len(picks)
                    picks.append((t, a, d, 1.0 if back >= ret else back / ret, n_on))
                    pulses.append(_INF)
            elif d == 0.0:
                ivs[a].off[-1] = t
                if self._role[a][0] == "pick":
                    self._pick_off[a] = t
        t_last = tt[-1] if tt else origin
        for a in [a for a, d in duty.items() if d > 0.0]:  # coils left on heat until the next run
            t_fail = heat.change(a, duty[a], duty[a], t_last + self._gap_us)
            if t_fail is not None:
                duty[a] = 0.0
                if a in ivs:  # the click's pin keeps no intervals
                    ivs[a].off[-1] = t_fail
                failures.append({"actuator": a, "role": self.spec.actuators[a].role,
                                 "t_us": int(round(t_fail - origin)), "temp_ratio": 1.0})  # fmt: skip
        self.clicks_us = clicks
        moves = self._moves(steps, origin)
        faults = self._faults(moves, ivs, origin)
        notes, counts = self._sound(picks, pulses, ivs, moves, faults, origin)
        t_end = max([tt[-1] if tt else origin] + [m[-1].moving_until for m in moves.values() if m])
        self._origin_us = int(math.ceil(t_end)) + self._gap_us
        travel_frets, travel_mm = 0, 0.0
        for s, ms in moves.items():
            mm_per = self._car[s][3]
            for m in ms:
                travel_mm += abs(m.after - m.before) * mm_per
                travel_frets += abs(self.fret_at_mm(m.after * mm_per) - self.fret_at_mm(m.before * mm_per))
        if progress is not None:
            progress(1.0)
        buzz_list = [
            {"t_us": int(t), "string": int(s), "fret": int(f)}
            for t, s, f in zip(notes.t_us[notes.buzz].tolist(), notes.string[notes.buzz].tolist(),
                               notes.fret[notes.buzz].tolist(), strict=True)  # fmt: skip
        ]
        extra = {
            "picks": len(picks),
            **counts,
            "buzzed_notes": int(notes.buzz.sum()),
            "buzzes": buzz_list[:200],
            "slurs": self._slur_list[:200],
            "carriage_faults": len(faults),
            "faults": [{"t_us": int(t - origin), "string": s, "what": "presser down while its carriage moves"}
                       for s, t in faults[:50]],  # fmt: skip
            "fretter_travel_frets": travel_frets,
            "fretter_travel_mm": round(travel_mm, 1),
            "string_changes": _string_changes(notes, n_str),
            "clock_us": int(origin),
        }
        perf = Performance(extra=extra, coil_failures=failures, max_coil_temp_ratio=heat.peak)
        return perf, notes

    def _validate(self, out: OutputColumns, steps: Mapping[int, CarriageSteps | ServoPulses]) -> None:
        if len(out):
            bad = [a for a in np.unique(out.actuator).tolist() if a not in self._coils]
            if bad:
                raise PlanError(f"output change on actuator {bad[0]}: no such coil in spec "
                                f"{self.spec.name!r}")  # fmt: skip
            if out.t_us[0] < 0 or (len(out) > 1 and (np.diff(out.t_us) < 0).any()):
                raise PlanError("output changes must be sorted by t_us, none negative")
        cars = {v[0] for v in self._car.values()}
        for a, st in steps.items():
            if a not in cars:
                raise PlanError(f"steps of actuator {a}: no such carriage in spec {self.spec.name!r}")
            if len(st.t_us) > 1 and (np.diff(st.t_us) < 0).any():
                raise PlanError(f"steps of carriage {a} are not sorted by t_us")

    def _moves(self, steps: Mapping[int, CarriageSteps | ServoPulses],
               origin: float) -> dict[int, list[_Move]]:  # fmt: skip
        """Each carriage's moves: bursts of steps, stretched by its real speed (a servo's:
        :meth:`_servo_moves`)."""
        out: dict[int, list[_Move]] = {s: [] for s in self._car}
        self._before = {s: (self._car_pos[s], self._car_settled[s]) for s in self._car}
        for s, (act, scale, settle, _mm) in self._car.items():
            st = steps.get(act)
            if st is None or not len(st.t_us):
                continue
            if isinstance(st, ServoPulses):
                out[s] = self._servo_moves(s, st, origin)
                if out[s]:
                    self._car_pos[s] = out[s][-1].after
                    self._car_settled[s] = out[s][-1].settled
                continue
            if s in self._servo:
                raise PlanError(f"steps of actuator {act}: a servo carriage reads pulses, not steps")
            t = st.t_us.astype(np.float64) + origin
            cut = np.flatnonzero(np.diff(t) > MOVE_GAP_US) + 1
            lo = np.r_[0, cut]
            hi = np.r_[cut, len(t)] - 1
            pos = self._car_pos[s]
            for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
                t0 = t[a] - 1.0  # the carriage leaves with its first step
                until = t0 + (t[b] - t0) / scale
                after = int(st.position[b])
                out[s].append(_Move(t0, until, until + settle, pos, after))
                pos = after
            self._car_pos[s] = pos
            self._car_settled[s] = out[s][-1].settled
        return out

    def _servo_moves(self, s: int, p: ServoPulses, origin: float) -> list[_Move]:
        """A servo carriage's moves from its pulses: from the end of each pulse whose
        width differs by more than its dead band (truth) from the one it last moved to,
        at its real speed; a move a new width cuts ends where the carriage got to."""
        _act, scale, settle, mm_per = self._car[s]
        lo, hi, travel_mm, speed = self._servo[s]
        per_us = speed * scale / 1e6 / mm_per  # counts a µs
        band = self._deadband.get(s, 0.0) * travel_mm / (hi - lo) / mm_per  # counts
        ends = (p.t_us + p.width_us).astype(np.float64) + origin
        want = [position_mm(w, lo, hi, travel_mm) / mm_per for w in p.width_us.tolist()]
        pos = asked = self._car_pos[s]
        out: list[_Move] = []
        for t, tgt in zip(ends.tolist(), want, strict=True):
            if abs(tgt - asked) <= band:
                continue
            asked = tgt
            if out and out[-1].moving_until > t:  # still running: it turns where it is
                m = out[-1]
                pos = m.before + (m.after - m.before) * (t - m.t0) / (m.moving_until - m.t0)
                m.after, m.moving_until, m.settled = pos, t, t
            if tgt == pos:
                continue
            until = t + abs(tgt - pos) / per_us
            out.append(_Move(t, until, until + settle, pos, tgt))
            pos = tgt
        return out

    def _press_iv(self, s: int) -> list[int]:
        """The coils that press string ``s`` (its presser, or its fret solenoids)."""
        st = self.spec.strings[s]
        if st.presser is not None:
            return [st.presser.channel]
        return list(st.fret_channels or ())

    def _faults(self, moves: dict[int, list[_Move]], ivs: dict[int, _Intervals],
                origin: float) -> list[tuple[int, float]]:  # fmt: skip
        """(string, time) of every move during which its presser was down."""
        out = []
        for s, ms in moves.items():
            iv = ivs.get(self._press_iv(s)[0])
            if iv is None:
                continue
            for m in ms:
                k = iv.containing(m.t0)
                if k >= 0:
                    out.append((s, m.t0))
                elif iv.next_on(m.t0) < m.moving_until:
                    out.append((s, iv.next_on(m.t0)))
        return sorted(out, key=lambda x: x[1])

    def _carriage_at(self, s: int, t: float, moves: list[_Move], t0s: list[float]
                     ) -> tuple[bool, float, float]:  # fmt: skip
        """(moving, position in counts, settled since) of string ``s``'s carriage at ``t``
        (``t0s``: the moves' start times)."""
        i = bisect.bisect_right(t0s, t) - 1
        if i < 0:
            pos, settled = self._before[s]
            return False, pos, settled
        m = moves[i]
        return t < m.moving_until, m.after, m.settled

    def _contact_changes(self, s: int, ivs: dict[int, _Intervals], moves: dict[int, list[_Move]],
                         starts: dict[int, list[float]]) -> list[tuple[float, int]]:  # fmt: skip
        """(time, fret that sounds from then) at every change of string ``s``'s fret contact
        (0: open): the matrix's highest fret solenoid on; a slider's presser down (the fret
        under its carriage; none while the carriage moves: that is a fault) or up."""
        st = self.spec.strings[s]
        out: list[tuple[float, int]] = []
        if self._slider:
            assert st.presser is not None
            piv = ivs.get(st.presser.channel)
            if piv is None:
                return out
            ms = moves.get(s, [])
            for on, off in zip(piv.on, piv.off, strict=True):
                moving, pos, _ = self._carriage_at(s, on, ms, starts.get(s, []))
                if not moving:
                    out.append((on, self.fret_at_mm(pos * self._car[s][3])))
                if off < _INF:
                    out.append((off, 0))
            return out
        edges: list[tuple[float, int, int]] = []  # (time, fret, +1 on / -1 off)
        for f, ch in enumerate(st.fret_channels or (), start=1):
            fiv = ivs.get(ch)
            if fiv is None:
                continue
            for on, off in zip(fiv.on, fiv.off, strict=True):
                edges.append((on, f, 1))
                if off < _INF:
                    edges.append((off, f, -1))
        edges.sort()
        down: dict[int, int] = {}
        top = 0
        i = 0
        while i < len(edges):
            t = edges[i][0]
            while i < len(edges) and edges[i][0] == t:
                _, f, d = edges[i]
                down[f] = down.get(f, 0) + d
                i += 1
            now = max((f for f, c in down.items() if c > 0), default=0)
            if now != top:
                out.append((t, now))
                top = now
        return out

    def _slurs(self, rows: list[tuple[float, int, float, float, int, int, bool]],
               ivs: dict[int, _Intervals], moves: dict[int, list[_Move]],
               starts: dict[int, list[float]], origin: float, counts: dict[str, int],
               ) -> list[tuple[float, int, float, float, int, int, bool]]:  # fmt: skip
        """The notes with every slur: a note whose string's fret contact changes while it
        rings (before its end, the next pick on its string) ends there, and a note at the
        new fret starts, ``SLUR_LOUDNESS`` as loud (and so on, change by change)."""
        capo = self.spec.neck.capo
        by_string: dict[int, list[int]] = {}
        for i, r in enumerate(rows):
            by_string.setdefault(r[4], []).append(i)
        out = list(rows)
        self._slur_list = []
        for s, idx in by_string.items():
            changes = self._contact_changes(s, ivs, moves, starts)
            if not changes:
                continue
            ct = [c[0] for c in changes]
            idx.sort(key=lambda i: rows[i][0])
            next_pick = [rows[j][0] for j in idx[1:]] + [_INF]
            tuning = self.spec.strings[s].tuning
            for i, nxt in zip(idx, next_pick, strict=True):
                ts, pitch, vel, end, _s, fret, buzz = rows[i]
                ring = min(end, nxt)
                k = bisect.bisect_right(ct, ts)
                t0, f0, v0, bz, first = float(ts), fret, vel, buzz, True
                while k < len(changes) and changes[k][0] < ring:
                    tc, fc = changes[k]
                    k += 1
                    fc = max(capo, fc)
                    if fc == f0:
                        continue
                    row = (round(t0), tuning + f0, v0, tc, s, f0, bz)
                    if first:
                        out[i] = row
                        first = False
                    else:
                        out.append(row)
                    counts["slurred_notes"] += 1
                    self._slur_list.append({"t_us": int(round(tc - origin)), "string": s, "fret": fc})
                    t0, f0, v0, bz = tc, fc, v0 * SLUR_LOUDNESS, False
                if not first:
                    out.append((round(t0), tuning + f0, v0, end, s, f0, bz))
        return out

    def _settle_of(self, ch: int, iv: _Intervals, k: int) -> float:
        """The settle time (µs) of coil ``ch``'s press ``k`` in ``iv``: the truth's, times
        its own deviation with the spread on."""
        settle = float(self._settle[ch])
        if not self._spread:
            return settle
        z, _ = stroke_normals(self._spread_seed, STREAM_PRESS, np.array([ch]), np.array([iv.n[k]]))
        return settle * (1.0 + float(z[0]) * self._press_sd[ch])

    def _sound(self, picks: list[tuple[float, int, float, float, int]], pulses: list[float],
               ivs: dict[int, _Intervals], moves: dict[int, list[_Move]],
               faults: list[tuple[int, float]], origin: float,
               ) -> tuple[GuitarNotes, dict[str, int]]:  # fmt: skip
        spec, truth = self.spec, self._truth
        capo = spec.neck.capo
        empty = _Intervals()
        fault_t: dict[int, list[float]] = {}
        for s, t in faults:
            fault_t.setdefault(s, []).append(t)
        rows: list[tuple[float, int, float, float, int, int, bool]] = []
        counts: dict[str, int] = {"silent_picks": 0, "moving_picks": 0, "damped_picks": 0, "slurred_notes": 0}
        starts = {s: [m.t0 for m in ms] for s, ms in moves.items()}
        if self._spread and picks:  # each pick's own deviation (sim/spread.py), by string
            z_t, z_v = stroke_normals(self._spread_seed, STREAM_PICK,
                                      np.array([self._role[p[1]][1] for p in picks]),
                                      np.array([p[4] for p in picks]))  # fmt: skip
        else:
            z_t = z_v = np.zeros(len(picks))
        for (t, a, d, back, _n), pulse, zt, zv in zip(picks, pulses, z_t.tolist(), z_v.tolist(), strict=True):
            s = self._role[a][1]
            tr = truth.strings[s]
            if back < 0.5:  # the pick was not back in place: it misses the string
                counts["silent_picks"] += 1
                continue
            d_eff = d * min(1.0, pulse / tr.pulse_full_us) * back
            u = (d_eff - tr.threshold) / (1.0 - tr.threshold)
            lat = tr.latency_full_us * u ** (-tr.alpha) if u > 0.0 else _INF
            if lat < _INF:
                lat += zt * math.sqrt(tr.timing_sd_us**2 + (tr.timing_sd_frac * lat) ** 2)
            if lat > MAX_LATENCY_US:
                counts["silent_picks"] += 1
                continue
            ts = t + lat
            st = spec.strings[s]
            ld = tr.damper_latency_us
            div = ivs.get(st.damper.channel, empty)
            if div.containing(ts - ld) >= 0:
                counts["damped_picks"] += 1
                continue
            end = div.next_on(ts - ld) + ld
            fret, contact, settle, buzz = 0, -_INF, 0.0, False
            if self._slider:
                ms = moves.get(s, [])
                moving, pos, settled = self._carriage_at(s, ts, ms, starts[s])
                assert st.presser is not None
                piv = ivs.get(st.presser.channel, empty)
                k = piv.containing(ts)
                # with its presser up the carriage does not touch the string: the open
                # string sounds and rings while the carriage moves past
                if moving and k >= 0:
                    counts["moving_picks"] += 1
                    continue
                if k >= 0:  # (a move with the presser down is a fault: that ends the note)
                    fret = self.fret_at_mm(pos * self._car[s][3])
                    contact = max(piv.on[k], settled)
                    settle = self._settle_of(st.presser.channel, piv, k)
            else:
                for f in range(len(st.fret_channels or ()), 0, -1):
                    ch = (st.fret_channels or ())[f - 1]
                    fiv = ivs.get(ch)
                    k = fiv.containing(ts) if fiv is not None else -1
                    if fiv is not None and k >= 0:
                        fret, contact, settle = f, fiv.on[k], self._settle_of(ch, fiv, k)
                        break
            if fret > 0:
                buzz = ts < contact + settle
            for ft in fault_t.get(s, ()):
                if ft > ts:
                    end = min(end, ft)
                    break
            vel = tr.gain * (tr.v0 + (1.0 - tr.v0) * (1.0 - math.exp(-tr.k * u)) / (1.0 - math.exp(-tr.k)))
            vel *= 1.0 + zv * tr.loudness_sd
            if buzz:
                vel *= BUZZ_LOUDNESS
            rows.append((round(ts), st.tuning + max(capo, fret), vel, end, s, max(capo, fret), buzz))
        rows = self._slurs(rows, ivs, moves, starts, origin, counts)
        rows.sort()
        # the next pick that sounds on a string ends the note before it
        last: dict[int, int] = {}
        out = [list(r) for r in rows]
        for i, r in enumerate(out):
            j = last.get(int(r[4]))
            if j is not None and out[j][3] > r[0]:
                out[j][3] = float(r[0])
            last[int(r[4])] = i
        if not out:
            z = np.zeros(0, dtype=np.int64)
            return GuitarNotes(z, z, z.astype(float), z.astype(float), z, z, z.astype(bool)), counts
        cols = list(zip(*out, strict=True))
        notes = GuitarNotes(
            t_us=np.asarray(cols[0], dtype=np.int64) - int(origin),
            pitch=np.asarray(cols[1], dtype=np.int64),
            velocity=np.asarray(cols[2], dtype=np.float64),
            end_us=np.asarray(cols[3], dtype=np.float64) - origin,
            string=np.asarray(cols[4], dtype=np.int64),
            fret=np.asarray(cols[5], dtype=np.int64),
            buzz=np.asarray(cols[6], dtype=bool),
        )
        o = np.lexsort((notes.pitch, notes.t_us))
        return GuitarNotes(*(getattr(notes, f)[o] for f in
                             ("t_us", "pitch", "velocity", "end_us", "string", "fret", "buzz"))), counts  # fmt: skip


def _string_changes(notes: GuitarNotes, n_strings: int) -> int:
    """Notes on a string the previous onset (notes within ``CHORD_US``) did not use."""
    changes = 0
    prev: set[int] = set()
    cur: set[int] = set()
    t0 = -_INF
    for t, s in zip(notes.t_us.tolist(), notes.string.tolist(), strict=True):
        if t - t0 > CHORD_US:
            prev, cur, t0 = (cur or prev), set(), t
        cur.add(s)
        if prev and s not in prev:
            changes += 1
    return changes


__all__ = ["BUZZ_LOUDNESS", "CarriageSteps", "GuitarNotes", "GuitarPhysics", "MAX_LATENCY_US",
           "SLUR_LOUDNESS", "ServoPulses"]

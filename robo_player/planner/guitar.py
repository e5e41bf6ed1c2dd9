"""The guitar and bass planner: a string and a fret for every note, then the commands.

    from robo_player.planner import plan
    the_plan, report = plan(score, load_spec("guitar-slider"))
    report.fingering[i]          # (string, fret) of score note i (fret 0: open)

Steps:

1. **Timing and loudness** through the pickers' nominal curves: velocity -> drive (the
   inverse of the velocity curve, clamped to the table), and the latency at that drive;
   the picker fires ``latency`` before the note must sound (``onset +
   timing.pipeline_delay_us``). Calibration of pickers comes later; a calibration
   passed in is ignored and the report says ``calibrated: false``.
2. **What cannot be fingered**, by policy (``PlanOptions.out_of_range``): a pitch no
   string reaches is moved by octaves into reach (``transpose``) or dropped (``drop``);
   a chord note that finds no free string (a 7-note chord, two notes only one string
   has) is transposed by an octave onto a free string or dropped. Each is reported.
3. **Assignment** by the Viterbi search of :mod:`robo_player.planner.fingering`
   (carriage travel time, string changes, cuts; hard constraints as infeasibility).
4. **Commands** (plan v2), per string in time order: a ringing note is ended by its
   damper (``PULSE_HOLD`` for ``damp_us``); a presser (or the matrix's fret solenoid)
   is released ``damp_us`` later (``RELEASE``); the carriage then moves at once to the
   string's next fret (``MOVE`` with ``position`` in counts of its travel:
   pre-positioning, so travel hides in rests); the fret is pressed ``fret_settle_us``
   before the pick (``PULSE_HOLD``: full pulse, then the hold duty); the picker fires
   (``PULSE_HOLD``, hold 0). A note that rings into the next one on its string is cut
   there and reported (``changes.duration_us``); a note whose carriage, fret or
   picker cannot be ready in time is dropped with the reason.
5. **Shared rules** (:mod:`robo_player.planner.rules`): pulses that overlap beyond
   ``power.max_simultaneous_strikes`` or the supply's current are counted as supply
   overloads; every hold stays within ``thermal.max_on_us`` (a note is cut to fit).

Report keys beyond the piano's: ``fretter_travel_frets`` (sum over carriages of the
distance moved, in frets), ``fretter_travel_mm``, ``string_changes`` (notes on a string
the previous onset did not use), ``cut_notes``, and ``fingering``.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field

from ..plan import Command, Op, Plan
from ..score import Score
from ..spec.actuators import ActuatorKind
from ..spec.calibration import KeyCurve
from ..spec.guitar import GuitarSpec, Mechanism
from ..spec.schema import pitch_to_note
from . import rules
from .constraints import PlanOptions
from .fingering import (
    NEG,
    Costs,
    Layout,
    Onset,
    Slot,
    StringState,
    fingerings,
    search,
    transition,
)
from .report import Fate, NoteOutcome, PlanReport

log = logging.getLogger(__name__)

__all__ = ["GuitarPlanReport", "plan_guitar"]


@dataclass(slots=True)
class GuitarPlanReport(PlanReport):
    fretter_travel_frets: int = 0
    fretter_travel_mm: float = 0.0
    string_changes: int = 0
    cut_notes: int = 0
    heat_overloads: int = 0  # coils whose nominal temperature passed its limit
    fingering: dict[int, tuple[int, int]] = field(default_factory=dict)  # note -> (string, fret)

    def to_json(self, outcomes: bool = False) -> dict[str, object]:
        d = PlanReport.to_json(self, outcomes)
        d["fretter_travel_frets"] = self.fretter_travel_frets
        d["fretter_travel_mm"] = round(self.fretter_travel_mm, 1)
        d["string_changes"] = self.string_changes
        d["cut_notes"] = self.cut_notes
        d["heat_overloads"] = self.heat_overloads
        return d


class _Curve:
    """Velocity -> (drive fraction, latency µs, predicted velocity), tabulated for 1..127:
    the spec's nominal picker, or a picker's calibrated curve (``curve``, a
    :class:`~robo_player.spec.calibration.KeyCurve`)."""

    def __init__(self, spec: GuitarSpec, curve: KeyCurve | None = None) -> None:
        n = spec.nominal
        drive = curve.drive if curve is not None else n.drive
        vel = curve.velocity if curve is not None else n.velocity
        lat_us = [float(x) for x in (curve.latency_us if curve is not None else n.latency_us)]
        self.table: list[tuple[float, int, float]] = [(0.0, 0, 0.0)] * 128
        for v in range(1, 128):
            d = _interp(float(v), vel, drive)
            lat = round(_interp(d, drive, lat_us))
            self.table[v] = (d, lat, _interp(d, drive, vel))


def _string_curves(spec: GuitarSpec, calibration: object
                   ) -> tuple[list[tuple[float, int, float]], list[list[tuple[float, int, float]]]]:  # fmt: skip
    """Per string its picker's table (calibrated where ``calibration`` has the string),
    and the table the search plans with: per velocity the slowest string's latency, so
    every string can pick at or after the time the search assumed."""
    pickers = getattr(calibration, "pickers", None) or {}
    per = [_Curve(spec, pickers.get(s)).table for s in range(len(spec.strings))]
    merged = [max((t[v] for t in per), key=lambda x: x[1]) for v in range(128)]
    return merged, per


def _interp(x: float, xs: tuple[float, ...] | list[float], ys: tuple[float, ...] | list[float]) -> float:
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, x)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _reach(spec: GuitarSpec, pitch: int, policy: str) -> tuple[int, str | None]:
    """The pitch to play (moved by octaves under ``transpose``) or a reason to drop."""
    if spec.positions(pitch):
        return pitch, None
    lo, hi = spec.lowest, spec.highest
    where = f"below the lowest string ({pitch_to_note(lo)})" if pitch < lo else (
        f"above the highest fret ({pitch_to_note(hi)})")  # fmt: skip
    if policy == "transpose":
        q = pitch
        while q < lo:
            q += 12
        while q > hi:
            q -= 12
        if spec.positions(q):
            return q, None
    return pitch, f"pitch {pitch_to_note(pitch)} is {where}; policy {policy!r}"


def _place_chord(spec: GuitarSpec, pitches: list[int], policy: str
                 ) -> tuple[list[int | None], list[str | None]]:  # fmt: skip
    """Per note: the pitch it plays in the chord (None: dropped) and the drop reason.
    Notes are added highest first, then lowest, then inner voices; one that finds no
    free string is moved an octave (``transpose``) or dropped."""
    n = len(pitches)
    if n == 1:
        return [pitches[0]], [None]
    order = sorted(range(n), key=lambda i: -pitches[i])
    if n > 2:
        order = [order[0], order[-1], *order[1:-1]]
    chosen: list[int | None] = [None] * n
    reasons: list[str | None] = [None] * n
    kept: list[list[tuple[int, int]]] = []
    for i in order:
        tries = [pitches[i]]
        if policy == "transpose":
            tries += [pitches[i] + 12, pitches[i] - 12]
        for q in tries:
            opts = spec.positions(q)
            if opts and fingerings([*kept, opts]):
                chosen[i] = q
                kept.append(opts)
                break
        if chosen[i] is None:
            reasons[i] = (f"chord of {n} notes: no free string for {pitch_to_note(pitches[i])} "
                          f"({len(spec.strings)} strings); policy {policy!r}")  # fmt: skip
    return chosen, reasons


def plan_guitar(score: Score, spec: GuitarSpec, calibration: object = None,
                options: PlanOptions | None = None, beam: int = 8, window: float = 300.0,
                costs: Costs | None = None, fingering: str = "search",
                ) -> tuple[Plan, GuitarPlanReport]:  # fmt: skip
    """Plan ``score`` on a guitar or bass spec (every note ends in the report once).

    ``beam``: states kept per onset by the fingering search (exact below it).
    ``fingering="lowest"``: the greedy baseline instead of the search (every note on
    the string with the lowest fret; bench/bench_guitar.py compares the two)."""
    opts = options or PlanOptions()
    delay = spec.timing.pipeline_delay_us
    curve, per_string = _string_curves(spec, calibration)
    notes = score.notes
    report = GuitarPlanReport(spec_name=spec.name,
                              calibrated=bool(getattr(calibration, "pickers", None)))  # fmt: skip
    outcomes: list[NoteOutcome | None] = [None] * len(notes)
    onsets, play_pitch = prepare(spec, score, opts.out_of_range, curve, outcomes)
    layout = Layout(spec)
    if fingering == "lowest":
        choice = [_lowest(o) for o in onsets]
    else:
        choice, _ = search(layout, onsets, costs, beam=beam, window=window)
    emitter = _Emitter(spec, layout, notes, play_pitch, curve, outcomes, report)
    emitter.per_string = per_string
    commands = emitter.run(onsets, choice, costs or Costs())
    report.outcomes = [o for o in outcomes if o is not None]
    assert len(report.outcomes) == len(notes), "a note without an outcome"
    plan = Plan(commands=commands, pipeline_delay_us=delay, spec_name=spec.name,
                spec_hash=spec.spec_hash)  # fmt: skip
    plan.sort()
    report.supply_overloads = supply_overloads(spec, plan)
    report.heat_overloads = heat_overloads(spec, plan)
    return plan, report


def _lowest(onset: Onset) -> int:
    """The fingering with the lowest frets (the greedy baseline)."""
    sums = [sum(f for _, f in fg) for fg in onset.fingerings]
    return sums.index(min(sums))


def prepare(spec: GuitarSpec, score: Score, policy: str = "transpose",
            curve: list[tuple[float, int, float]] | None = None,
            outcomes: list[NoteOutcome | None] | None = None) -> tuple[list[Onset], list[int]]:  # fmt: skip
    """The search's input: the onsets (notes with their timing and every (string, fret)
    they may take) and the pitch each note plays; notes that cannot be fingered get
    their DROPPED outcome in ``outcomes``."""
    curve = curve or _Curve(spec).table
    notes = score.notes
    delay = spec.timing.pipeline_delay_us
    if outcomes is None:
        outcomes = [None] * len(notes)
    play_pitch: list[int] = [n.pitch for n in notes]

    def drop(i: int, reason: str, pitch_out: int | None = None) -> None:
        n = notes[i]
        at = n.onset_us + delay
        outcomes[i] = NoteOutcome(i, n.pitch, n.pitch if pitch_out is None else pitch_out,
                                  Fate.DROPPED, at, at, n.velocity, None, {}, reason)  # fmt: skip

    # -- group by onset; resolve what cannot be fingered --------------------------------
    onsets: list[Onset] = []
    i = 0
    while i < len(notes):
        j = i
        while j < len(notes) and notes[j].onset_us == notes[i].onset_us:
            j += 1
        group = []
        for k in range(i, j):
            q, why = _reach(spec, notes[k].pitch, policy)
            if why is not None:
                drop(k, why)
            else:
                play_pitch[k] = q
                group.append(k)
        chosen, reasons = _place_chord(spec, [play_pitch[k] for k in group], policy)
        slots = []
        for k, qc, why in zip(group, chosen, reasons, strict=True):
            if qc is None:
                drop(k, why or "no free string")
                continue
            q = play_pitch[k] = qc
            n = notes[k]
            _, lat, _ = curve[max(1, min(127, n.velocity))]
            sound = n.onset_us + delay
            slots.append(Slot(k, sound - lat, sound, sound + max(1, n.duration_us),
                              tuple(spec.positions(q))))  # fmt: skip
        if slots:
            fg = fingerings([s.options for s in slots])
            onsets.append(Onset(tuple(slots), tuple(fg)))
        i = j

    return onsets, play_pitch


@dataclass(slots=True)
class _Ringing:
    """The last note on a string, until it is ended."""

    note: int
    fret: int
    sound_us: int
    end_us: int  # written end (performance time)
    press_us: int | None  # when its fret was pressed (None: open, or held from before)
    press_act: int | None  # the presser / fret solenoid holding it


class _Emitter:
    def __init__(self, spec: GuitarSpec, layout: Layout, notes: list, play_pitch: list[int],  # type: ignore[type-arg]
                 curve: list[tuple[float, int, float]], outcomes: list[NoteOutcome | None],
                 report: GuitarPlanReport) -> None:  # fmt: skip
        self.spec, self.layout, self.notes = spec, layout, notes
        self.play_pitch, self.curve, self.outcomes, self.report = play_pitch, curve, outcomes, report
        self.cmds: list[Command] = []
        amap = spec.actuators
        self.amap = amap
        self.t = spec.timing
        self.slider = spec.mechanism is Mechanism.SLIDER
        self.delay = spec.timing.pipeline_delay_us
        self.per_string = [curve] * len(spec.strings)  # each picker's table

    # -- per string actuators ------------------------------------------------------------
    def press_act(self, s: int, fret: int) -> int:
        st = self.spec.strings[s]
        if st.presser is not None:
            return st.presser.channel
        assert st.fret_channels is not None
        return st.fret_channels[fret - 1]

    def end(self, s: int, r: _Ringing, at: int, cut: int, release: bool) -> None:
        """End note ``r`` on string ``s``: damper at ``at``, its fret released after it."""
        t = self.t
        if r.press_us is not None and release:
            limit = r.press_us + self.amap[r.press_act or 0].max_on_us - t.damp_us - 1
            if at > limit:  # the coil's on-time limit ends it first
                cut += at - max(limit, r.sound_us)
                at = max(limit, r.sound_us)
        damper = self.spec.strings[s].damper.channel
        self.cmds.append(Command(at, Op.PULSE_HOLD, damper, self.amap[damper].pwm_max,
                                 t.damp_us, 0, r.note))  # fmt: skip
        if release and r.fret > 0 and r.press_act is not None:
            self.cmds.append(Command(at + t.damp_us, Op.RELEASE, r.press_act, note=r.note))
        self.outcome(r.note, cut)

    def outcome(self, i: int, cut: int) -> None:
        n = self.notes[i]
        s = self.report.fingering.get(i, (0, 0))[0]
        _, _, v_target = self.per_string[s][max(1, min(127, n.velocity))]
        changes: dict[str, int | float] = {}
        if self.play_pitch[i] != n.pitch:
            changes["pitch"] = self.play_pitch[i] - n.pitch
        if abs(v_target - n.velocity) >= 0.5:
            changes["velocity"] = round(v_target - n.velocity, 1)
        if cut > 0:
            changes["duration_us"] = -cut
            self.report.cut_notes += 1
        at = n.onset_us + self.delay
        fate = Fate.ALTERED if changes else Fate.PLAYED
        reason = None
        if changes:
            parts = []
            if "pitch" in changes:
                parts.append("moved by octaves to a string that reaches it")
            if "duration_us" in changes:
                parts.append("cut where its string is needed next")
            if "velocity" in changes:
                parts.append("velocity outside the picker's range")
            reason = "; ".join(parts)
        self.outcomes[i] = NoteOutcome(i, n.pitch, self.play_pitch[i], fate, at, at, n.velocity,
                                       round(v_target, 2), changes, reason)  # fmt: skip

    # -- the walk -----------------------------------------------------------------------
    def run(self, onsets: list[Onset], choice: list[int], costs: Costs) -> list[Command]:
        lay, spec = self.layout, self.spec
        nstr = len(spec.strings)
        state: list[StringState] = [(0, -1, NEG, NEG, NEG)] * nstr
        ringing: list[_Ringing | None] = [None] * nstr
        prev_mask = 0
        for onset, k in zip(onsets, choice, strict=True):
            mask = 0
            for slot, (s, f) in zip(onset.slots, onset.fingerings[k], strict=True):
                new, _, why, cut = transition(lay, state[s], s, slot, f, costs)
                if why is not None:
                    n = self.notes[slot.note]
                    at = n.onset_us + self.delay
                    where = f"string {s} fret {f}" if f else f"open string {s}"
                    self.outcomes[slot.note] = NoteOutcome(
                        slot.note, n.pitch, self.play_pitch[slot.note], Fate.DROPPED, at, at,
                        n.velocity, None, {}, f"{where}: {why}")  # fmt: skip
                    continue
                self.place(s, f, slot, state[s], ringing, cut)
                state[s] = new
                mask |= 1 << s
                if prev_mask and not prev_mask >> s & 1:
                    self.report.string_changes += 1
                self.report.fingering[slot.note] = (s, f)
            if mask:
                prev_mask = mask
        for s, r in enumerate(ringing):
            if r is not None:
                self.end(s, r, r.end_us, 0, release=True)
        return self.cmds

    def place(self, s: int, f: int, slot: Slot, ss: StringState, ringing: list[_Ringing | None],
              cut: int) -> None:  # fmt: skip
        lay, t = self.layout, self.t
        car = ss[0]
        r = ringing[s]
        d, lat, _ = self.per_string[s][max(1, min(127, self.notes[slot.note].velocity))]
        p = max(slot.pick_us, slot.sound_us - lat)  # this string's picker's latency
        need_press = f > 0
        press_from: int | None = None
        if r is not None and r.fret == f:
            if f > 0:
                gap = t.damp_us + t.release_us + t.fret_settle_us
            else:
                gap = t.damp_us
            if r.end_us + gap <= p:
                self.end(s, r, r.end_us, 0, release=True)
            elif r.end_us + t.damp_us <= p:
                self.end(s, r, r.end_us, 0, release=False)
                need_press, press_from = False, r.press_us
            else:
                self.outcome(r.note, cut)
                need_press, press_from = False, r.press_us
        else:
            need = lay.needed_us(s, r.fret if r is not None else -1, car, f)
            start = p - need
            silent = 0
            if r is not None:
                e = min(r.end_us, start)
                self.end(s, r, e, cut, release=True)
                silent = e + t.damp_us + (t.release_us if r.fret > 0 else 0)
            if self.slider and f > 0 and car != f:
                c = self.spec.strings[s].carriage
                assert c is not None
                pos = round(lay.pos_mm[f] / c.travel_mm * self.amap[c.channel].pwm_max)
                self.cmds.append(Command(silent, Op.MOVE, c.channel, note=slot.note, position=pos))
                self.report.fretter_travel_frets += abs(f - car)
                self.report.fretter_travel_mm += abs(lay.pos_mm[f] - lay.pos_mm[car])
        press_act = self.press_act(s, f) if f > 0 else None
        if need_press and press_act is not None:
            a = self.amap[press_act]
            press_from = p - t.fret_settle_us
            self.cmds.append(Command(press_from, Op.PULSE_HOLD, press_act, a.pwm_max,
                                     t.press_pulse_us, a.hold_counts, slot.note))  # fmt: skip
        picker = self.spec.strings[s].picker.channel
        pm = self.amap[picker].pwm_max
        self.cmds.append(Command(p, Op.PULSE_HOLD, picker, max(1, round(d * pm)), t.pick_pulse_us,
                                 0, slot.note))  # fmt: skip
        ringing[s] = _Ringing(slot.note, f, slot.sound_us, slot.end_us,
                              press_from if f > 0 else None, press_act)  # fmt: skip


def supply_overloads(spec: GuitarSpec, plan: Plan) -> int:
    """Pulses that start while more than ``max_simultaneous_strikes`` pulses run, or
    while the pulsing coils draw more than the supply gives (the shared rules)."""
    amap = spec.actuators
    active: list[tuple[int, float]] = []  # (end, amps)
    over = 0
    for c in plan.commands:
        if c.op is not Op.PULSE_HOLD or c.pulse_us <= 0:
            continue
        a = amap.get(c.actuator)
        if a is None or not a.on_supply:
            continue
        active = [x for x in active if x[0] > c.t_us]
        active.append((c.t_us + c.pulse_us, rules.amps(a, c.drive)))
        if not rules.fits_concurrency(amap, len(active)) or not rules.fits_supply(
            amap, sum(x[1] for x in active)
        ):
            over += 1
    return over


def heat_overloads(spec: GuitarSpec, plan: Plan) -> int:
    """Coils whose nominal temperature rise passes ``coil_max_rise_k`` somewhere in the
    plan (the shared :class:`~robo_player.planner.rules.CoilHeat`): each pulse at its
    drive, then its hold level until the next command on that coil."""
    amap = spec.actuators
    heat = rules.CoilHeat(amap)
    last: dict[int, tuple[int, int]] = {}  # coil -> (hold from, hold level)
    hot: set[int] = set()
    run = heat.run
    for c in plan.commands:
        a = amap.get(c.actuator)
        if a is None or a.kind is not ActuatorKind.COIL:
            continue
        limit = rules.heat_limit_k(a)
        prev = last.pop(c.actuator, None)
        # the rise peaks at the end of a pulse or a hold (it only falls while off)
        if prev is not None and prev[1] > 0 and c.t_us > prev[0]:
            if run(c.actuator, prev[0], c.t_us, prev[1]) > limit:
                hot.add(c.actuator)
        if c.op is Op.PULSE_HOLD:
            end = c.t_us + c.pulse_us
            if run(c.actuator, c.t_us, end, c.drive) > limit:
                hot.add(c.actuator)
            last[c.actuator] = (end, c.hold)
    return len(hot)

"""The guitar and bass planner: a string and a fret for every note, then the commands.

    from robo_player.planner import plan
    the_plan, report = plan(score, load_spec("guitar-slider"))
    report.fingering[i]          # (string, fret) of score note i (fret 0: open)

Steps:

1. **Timing and loudness** through each picker's curve (calibrated per string where a
   calibration has it, else the spec's nominal): velocity -> drive (the inverse of the
   velocity curve, clamped to the table), and the latency at that drive; the picker
   fires ``latency`` before the note must sound (``onset + delay``, where ``delay`` is
   ``timing.pipeline_delay_us``, grown when a calibrated picker is slower than the
   nominal one). The search plans with the slowest picker's latency per velocity.
2. **What cannot be fingered**, by policy (``PlanOptions.out_of_range``): a pitch no
   string reaches is moved by octaves into reach (``transpose``) or dropped (``drop``);
   a chord note that finds no free string (a 7-note chord, two notes only one string
   has) is transposed by an octave onto a free string or dropped; where the search's
   path must drop a chord note (no string ready in time), that chord's notes are offered
   an octave off too and the search runs again. Each is reported.
3. **Assignment** by the Viterbi search of :mod:`robo_player.planner.fingering`
   (carriage travel time, string changes, cuts; hard constraints as infeasibility).
4. **Commands** (plan v2), per string in time order: a ringing note is ended by its
   damper (``PULSE_HOLD`` for ``damp_us``); a presser (or the matrix's fret solenoid)
   is released ``damp_us`` later (``RELEASE``); the carriage then moves at once to the
   string's next fret (``MOVE`` with ``position`` in counts of its travel:
   pre-positioning, so travel hides in rests; on the matrix the old fret is released
   as the new one is pressed); the fret is pressed its settle before the note's ready
   time (``PULSE_HOLD``: full pulse, then the hold duty): the pick's expected sound
   less a margin with a calibration that measured every contact (each contact's own
   settle), else the pick command and ``fret_settle_us`` (:class:`~.fingering.Layout`);
   the picker fires (``PULSE_HOLD``, hold 0). A note that rings into the next one on its string is cut
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
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..plan import Command, Op, Plan
from ..score import Score
from ..spec.calibration import KeyCurve
from ..spec.guitar import GuitarSpec, Mechanism
from ..spec.schema import pitch_to_note
from .commands import CommandBuffer, make_command
from .constraints import PlanOptions
from .fingering import (
    BEAM,
    FRESH,
    WINDOW,
    Costs,
    Layout,
    Onset,
    Slot,
    StringState,
    changeover_us,
    fingerings,
    make_transition,
    search,
)
from .guitar_checks import heat_count, heat_overloads, supply_count, supply_overloads
from .report import Fate, NoteOutcome, PlanReport

log = logging.getLogger(__name__)

__all__ = ["GuitarPlanReport", "heat_overloads", "plan_guitar", "supply_overloads"]


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
                options: PlanOptions | None = None, beam: int = BEAM, window: float | None = None,
                costs: Costs | None = None, fingering: str = "search",
                ) -> tuple[Plan, GuitarPlanReport]:  # fmt: skip
    """Plan ``score`` on a guitar or bass spec (every note ends in the report once).

    ``beam``: states kept per onset by the fingering search (exact below it);
    ``window``: how far above the cheapest a kept state's cost may lie (default
    :data:`~.fingering.WINDOW` plus ``costs.transpose_ms``: a path that moved a note an
    octave stays in the beam, see :func:`~.fingering.search`).
    ``fingering="lowest"``: the greedy baseline instead of the search (every note on
    the string with the lowest fret; bench/bench_guitar.py compares the two).

    The cyclic garbage collector is paused while it runs: planning makes no cycles, only
    many small tuples, and the collector's passes over them cost about a quarter of the
    time (bench/bench_guitar.py)."""
    if costs is None and spec.mechanism is Mechanism.MATRIX:
        costs = MATRIX_COSTS
    if window is None:
        window = WINDOW + (costs or Costs()).transpose_ms
    was = gc.isenabled()
    gc.disable()
    try:
        return _plan_guitar(score, spec, calibration, options, beam, window, costs, fingering)
    finally:
        if was:
            gc.enable()


# Under policy transpose a note may also be played an octave off (below, else above), at a
# cost (Costs.transpose_ms) far above any travel and far below a drop: every single note
# (the search's bound skips those options unless the written pitch cannot be placed), and
# a chord note that fewer than OCTAVE_OPTIONS_BELOW strings reach (chords' fingerings
# multiply). bench/bench_guitar.py: 27 of Ryan's and 14 of O'Neill's notes dropped with
# octave options only below 2 strings, 1 and 2 with them on every single note.
OCTAVE_OPTIONS_BELOW = 2


def _with_octave(positions: Callable[[int], list[tuple[int, int]]], q: int,
                 opts: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:  # fmt: skip
    """``opts`` (pitch ``q``'s) and the positions of the octave below, else above."""
    return opts + tuple(positions(q - 12) or positions(q + 12))

# No carriage on the matrix: what is left to weigh is notes cut (each cut note counts,
# not its length) against nothing else; the ties this leaves fall to the search's order
# (bench/bench_guitar.py, 20 chorales: 41 % of notes unaltered with the slider's weights,
# 76.2 % with string changes 1 and cuts 0.5/ms, 78.1 % with these).
MATRIX_COSTS = Costs(change_ms=0.0, cut_ms_weight=0.0, fret_ms=0.0, cut_note_ms=100.0)


def _plan_guitar(score: Score, spec: GuitarSpec, calibration: object, options: PlanOptions | None,
                 beam: int, window: float, costs: Costs | None, fingering: str,
                 ) -> tuple[Plan, GuitarPlanReport]:  # fmt: skip
    opts = options or PlanOptions()
    curve, per_string = _string_curves(spec, calibration)
    # a calibrated picker may be slower than the spec's nominal one: the pipeline delay
    # then grows so that its pick and the fret's settle still fit before the note
    delay = max(spec.timing.pipeline_delay_us,
                max(row[1] for row in curve[1:]) + spec.timing.fret_settle_us)  # fmt: skip
    notes = score.notes
    report = GuitarPlanReport(spec_name=spec.name,
                              calibrated=bool(getattr(calibration, "pickers", None)))  # fmt: skip
    outcomes: list[NoteOutcome | None] = [None] * len(notes)
    onsets, play_pitch = prepare(spec, score, opts.out_of_range, curve, outcomes, delay)
    layout = Layout(spec, calibration)
    if fingering == "lowest":
        choice = [_lowest(o) for o in onsets]
    else:
        choice, _ = search(layout, onsets, costs, beam=beam, window=window)
        if opts.out_of_range == "transpose":
            wider = _octaves_where_dropped(spec, layout, onsets, choice, play_pitch)
            if wider is not None:  # searched again: the rest of the path may change too
                onsets = wider
                choice, _ = search(layout, onsets, costs, beam=beam, window=window)
    emitter = _Emitter(spec, layout, notes, play_pitch, curve, outcomes, report, per_string)
    emitter.delay = delay
    commands = emitter.run(onsets, choice, costs or Costs())
    report.outcomes = [o for o in outcomes if o is not None]
    assert len(report.outcomes) == len(notes), "a note without an outcome"
    report.supply_overloads = supply_count(spec, commands)
    report.heat_overloads = heat_count(spec, commands)
    plan = Plan(commands=commands, pipeline_delay_us=delay, spec_name=spec.name, spec_hash=spec.spec_hash)
    return plan, report


def _octaves_where_dropped(spec: GuitarSpec, layout: Layout, onsets: list[Onset], choice: list[int],
                           play_pitch: list[int]) -> list[Onset] | None:  # fmt: skip
    """``onsets`` with an octave option for every note of each chord where the chosen
    path must drop one (no string ready in time), or None where it drops none. Chord notes
    that two or more strings have get no octave option up front: with them everywhere
    the search takes octave moves for travel (bench/bench_guitar.py, docs/guitar.md);
    offered only where the path would drop a note, an octave off beats a lost note."""
    tr = make_transition(layout, Costs())
    state: list[StringState] = [FRESH] * layout.strings
    wider: list[Onset] | None = None
    for i, (onset, k) in enumerate(zip(onsets, choice, strict=True)):
        dropped = False
        for slot, (s, f) in zip(onset.slots, onset.fingerings[k], strict=True):
            new, _, why, _ = tr(state[s], s, slot, f)
            if why is None:
                state[s] = new
            else:
                dropped = True
        if dropped and len(onset.slots) > 1:
            slots = tuple(Slot(sl.note, sl.pick_us, sl.sound_us, sl.end_us,
                               _with_octave(spec.positions, play_pitch[sl.note], sl.options), sl.pitch)
                          for sl in onset.slots)  # fmt: skip
            wider = list(onsets) if wider is None else wider
            wider[i] = Onset(slots, tuple(fingerings([sl.options for sl in slots])))
    return wider


def _lowest(onset: Onset) -> int:
    """The fingering with the lowest frets (the greedy baseline)."""
    sums = [sum(f for _, f in fg) for fg in onset.fingerings]
    return sums.index(min(sums))


def prepare(spec: GuitarSpec, score: Score, policy: str = "transpose",
            curve: list[tuple[float, int, float]] | None = None,
            outcomes: list[NoteOutcome | None] | None = None,
            delay: int | None = None) -> tuple[list[Onset], list[int]]:  # fmt: skip
    """The search's input: the onsets (notes with their timing and every (string, fret)
    they may take) and the pitch each note plays; notes that cannot be fingered get
    their DROPPED outcome in ``outcomes``."""
    curve = curve or _Curve(spec).table
    notes = score.notes
    if delay is None:
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
    reach: dict[int, tuple[int, str | None]] = {}  # per pitch (cached)
    single: dict[int, tuple[tuple[tuple[int, int], ...], tuple[tuple[tuple[int, int], ...], ...]]] = {}
    positions = spec.positions
    i = 0
    nn = len(notes)
    while i < nn:
        on = notes[i].onset_us
        j = i + 1
        while j < nn and notes[j].onset_us == on:
            j += 1
        group = []
        for k in range(i, j):
            p = notes[k].pitch
            r = reach.get(p)
            if r is None:
                r = reach[p] = _reach(spec, p, policy)
            q, why = r
            if why is not None:
                drop(k, why)
            else:
                play_pitch[k] = q
                group.append(k)
        if len(group) == 1:  # one note: its options and fingerings per pitch, cached
            k = group[0]
            q = play_pitch[k]
            c = single.get(q)
            if c is None:
                opts = tuple(positions(q))
                if policy == "transpose":  # a costly alternative to a drop
                    opts = _with_octave(positions, q, opts)
                c = single[q] = (opts, tuple(fingerings([opts])))
            n = notes[k]
            lat = curve[max(1, min(127, n.velocity))][1]
            sound = on + delay
            onsets.append(Onset((Slot(k, sound - lat, sound, sound + max(1, n.duration_us), c[0], q),), c[1]))
            i = j
            continue
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
            opts = tuple(positions(q))
            if policy == "transpose" and len(opts) < OCTAVE_OPTIONS_BELOW:
                opts = _with_octave(positions, q, opts)
            slots.append(Slot(k, sound - lat, sound, sound + max(1, n.duration_us), opts, q))
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
    """Walks the chosen fingering string by string and writes the commands (into a
    :class:`~robo_player.planner.commands.CommandBuffer`) and every note's outcome.
    Per-string channels, per-velocity drives and each command's sort-key base are
    looked up once."""

    def __init__(self, spec: GuitarSpec, layout: Layout, notes: list, play_pitch: list[int],  # type: ignore[type-arg]
                 curve: list[tuple[float, int, float]], outcomes: list[NoteOutcome | None],
                 report: GuitarPlanReport,
                 per_string: list[list[tuple[float, int, float]]] | None = None) -> None:  # fmt: skip
        self.spec, self.layout, self.notes = spec, layout, notes
        self.play_pitch, self.curve, self.outcomes, self.report = play_pitch, curve, outcomes, report
        self.buf = buf = CommandBuffer(max(a.index for a in spec.actuators))
        self.keys, self.cmds, self.t_scale = buf.keys, buf.commands, buf.t_scale
        acts = range(max(a.index for a in spec.actuators) + 1)
        self.pulse_base = [buf.base(Op.PULSE_HOLD, a) for a in acts]  # per actuator
        self.release_base = [buf.base(Op.RELEASE, a) for a in acts]
        self.octave_for_time: set[int] = set()  # notes played an octave off for timing
        amap = spec.actuators
        self.amap = amap
        self.max_on = [amap[a].max_on_us if a in amap else 0 for a in range(max(x.index for x in amap) + 1)]
        self.t = spec.timing
        self.slider = spec.mechanism is Mechanism.SLIDER
        self.delay = spec.timing.pipeline_delay_us
        self.damper = [(st.damper.channel, amap[st.damper.channel].pwm_max) for st in spec.strings]
        # per string: when its presser is clear (released and lifted), as commanded; the
        # search's ``free`` counts from its own pick time (the slowest picker's), which a
        # string with a quicker picker commands later, so a carriage leaves at the later
        self.clear_at = [0] * len(spec.strings)
        self.picker = [st.picker.channel for st in spec.strings]
        # each picker's table (calibrated per string where there is a calibration)
        self.per_string = per_string or [curve] * len(spec.strings)
        # the picker's drive (counts) and latency (µs) per velocity, per string
        self.drive = [[max(1, round(tab[max(1, min(127, v))][0] * amap[ch].pwm_max)) for v in range(128)]
                      for ch, tab in zip(self.picker, self.per_string, strict=True)]  # fmt: skip
        self.latency = [[tab[max(1, min(127, v))][1] for v in range(128)] for tab in self.per_string]
        # the press actuator per string and fret: (channel, pwm_max, hold counts)
        self.press: list[list[tuple[int, int, int] | None]] = []
        for st in spec.strings:
            row: list[tuple[int, int, int] | None] = [None]
            for f in range(1, spec.neck.frets + 1):
                ch = st.presser.channel if st.presser is not None else (st.fret_channels or ())[f - 1]
                row.append((ch, amap[ch].pwm_max, amap[ch].hold_counts))
            self.press.append(row)
        # per string and velocity: the velocity the curve predicts, and whether it differs
        self.vel = [[(round(tab[max(1, min(127, v))][2], 2), abs(tab[max(1, min(127, v))][2] - v) >= 0.5)
                     for v in range(128)] for tab in self.per_string]  # fmt: skip

    def add(self, t: int, base: int, op: Op, act: int, drive: int, pulse: int, hold: int, note: int,
            position: int = 0) -> None:  # fmt: skip
        """One command (``base``: its key's part from op and actuator, CommandBuffer.base)."""
        keys = self.keys
        keys.append(t * self.t_scale + base + len(keys))
        self.cmds.append(make_command(t, op, act, drive, pulse, hold, note, position))

    def end(self, s: int, r: _Ringing, at: int, cut: int, release: bool) -> None:
        """End note ``r`` on string ``s``: damper at ``at``, its fret released after it."""
        t = self.t
        if r.press_us is not None and release:
            limit = r.press_us + self.max_on[r.press_act or 0] - t.damp_us - 1
            if at > limit:  # the coil's on-time limit ends it first
                cut += at - max(limit, r.sound_us)
                at = max(limit, r.sound_us)
        damper, pm = self.damper[s]
        self.add(at, self.pulse_base[damper], _PULSE, damper, pm, t.damp_us, 0, r.note)
        if release and r.fret > 0 and r.press_act is not None:
            act = r.press_act
            self.add(at + t.damp_us, self.release_base[act], _RELEASE, act, 0, 0, 0, r.note)
            self.clear_at[s] = at + t.damp_us + t.release_us
        self.outcome(r.note, cut, s)

    def outcome(self, i: int, cut: int, s: int) -> None:
        """Note ``i`` (on string ``s``) ends, ``cut`` µs short of its written end."""
        n = self.notes[i]
        v_target, v_changed = self.vel[s][n.velocity]
        q = self.play_pitch[i]
        at = n.onset_us + self.delay
        if q == n.pitch and not v_changed and cut <= 0:
            self.outcomes[i] = NoteOutcome(i, n.pitch, q, Fate.PLAYED, at, at, n.velocity, v_target, {}, None)
            return
        changes: dict[str, int | float] = {}
        parts = []
        if q != n.pitch:
            changes["pitch"] = q - n.pitch
            parts.append("moved an octave: no string that has it could be ready in time"
                         if i in self.octave_for_time else "moved by octaves to a string that reaches it")  # fmt: skip
        if v_changed:
            changes["velocity"] = round(v_target - n.velocity, 1)
        if cut > 0:
            changes["duration_us"] = -cut
            self.report.cut_notes += 1
            parts.append("cut where its string is needed next")
        if v_changed:
            parts.append("velocity outside the picker's range")
        self.outcomes[i] = NoteOutcome(i, n.pitch, q, Fate.ALTERED, at, at, n.velocity, v_target,
                                       changes, "; ".join(parts))  # fmt: skip

    # -- the walk -----------------------------------------------------------------------
    def run(self, onsets: list[Onset], choice: list[int], costs: Costs) -> list[Command]:
        """The commands, in :meth:`Plan.sort`'s order."""
        lay, spec = self.layout, self.spec
        nstr = len(spec.strings)
        state: list[StringState] = [FRESH] * nstr
        ringing: list[_Ringing | None] = [None] * nstr
        prev_mask = 0
        tr = make_transition(lay, costs)
        report = self.report
        fingering = report.fingering
        for onset, k in zip(onsets, choice, strict=True):
            mask = 0
            for slot, (s, f) in zip(onset.slots, onset.fingerings[k], strict=True):
                new, _, why, cut = tr(state[s], s, slot, f)
                if why is not None:
                    n = self.notes[slot.note]
                    at = n.onset_us + self.delay
                    where = f"string {s} fret {f}" if f else f"open string {s}"
                    self.outcomes[slot.note] = NoteOutcome(
                        slot.note, n.pitch, self.play_pitch[slot.note], Fate.DROPPED, at, at,
                        n.velocity, None, {}, f"{where}: {why}")  # fmt: skip
                    continue
                q = lay.pitch_at[s][f]
                if q != self.play_pitch[slot.note]:  # the octave alternative
                    self.play_pitch[slot.note] = q
                    self.octave_for_time.add(slot.note)
                self.place(s, f, slot, state[s], ringing, cut)
                state[s] = new
                mask |= 1 << s
                if prev_mask and not prev_mask >> s & 1:
                    report.string_changes += 1
                fingering[slot.note] = (s, f)
            if mask:
                prev_mask = mask
        for s, r in enumerate(ringing):
            if r is not None:
                self.end(s, r, r.end_us, 0, release=True)
        return self.buf.sorted()

    def move(self, s: int, car: int, f: int, at: int, note: int) -> None:
        """The carriage of string ``s`` leaves fret ``car`` for fret ``f`` at ``at``."""
        lay = self.layout
        c = self.spec.strings[s].carriage
        assert c is not None
        pos = round(lay.pos_mm[f] / c.travel_mm * self.amap[c.channel].pwm_max)
        self.buf.emit(at, Op.MOVE, c.channel, 0, 0, 0, note, pos)
        self.report.fretter_travel_frets += abs(f - car)
        self.report.fretter_travel_mm += abs(lay.pos_mm[f] - lay.pos_mm[car])

    def place(self, s: int, f: int, slot: Slot, ss: StringState, ringing: list[_Ringing | None],
              cut: int) -> None:  # fmt: skip
        """The commands of note ``slot`` on string ``s`` at fret ``f``, the changeover
        from the string's last note first (:func:`~.fingering.changeover_us`, the
        search's own rule, back from the ready time: the fret settled, the damper lifted,
        before the pick sounds less the layout's margin, or before the pick command
        without a calibration)."""
        lay, t = self.layout, self.t
        damp, release, lift = t.damp_us, t.release_us, lay.lift_us
        settle = lay.settle_at[s][f]  # the contact's (measured, with a calibration)
        car = ss[0]
        r = ringing[s]
        # this string's picker's latency (the search planned with the slowest one)
        p = max(slot.pick_us, slot.sound_us - self.latency[s][self.notes[slot.note].velocity])
        ready = max(p, slot.sound_us - lay.margin_us)
        need_press = f > 0
        press_from: int | None = None
        if r is not None and r.fret == f:
            if f > 0:  # damped, released, pressed again and settled, the felt lifted
                gap = damp + max(release + settle, lift)
            else:
                gap = damp + lift
            if r.end_us + gap <= ready:
                self.end(s, r, r.end_us, 0, release=True)
            elif r.end_us + damp + lift <= ready:  # damped, the fret kept down
                self.end(s, r, r.end_us, 0, release=False)
                need_press, press_from = False, r.press_us
            else:
                self.outcome(r.note, cut, s)
                need_press, press_from = False, r.press_us
        elif r is not None and r.fret > 0:  # from a pressed fret: damp, release (move), press
            mv = lay.move_us[s][car][f] if f > 0 else 0
            e = min(r.end_us, ready - changeover_us(lay, s, r.fret, f, mv))
            self.end(s, r, e, cut, release=True)
            if mv:
                self.move(s, car, f, e + damp + release, slot.note)
        elif f > 0:  # from an open (or fresh) string: the carriage left when it was free
            if r is not None:
                self.end(s, r, min(r.end_us, ready - changeover_us(lay, s, 0, f, 0)), cut, release=True)
            if self.slider and car != f:
                self.move(s, car, f, max(ss[5], self.clear_at[s]), slot.note)
        pr = self.press[s][f]
        press_act = pr[0] if pr is not None else None
        if need_press and pr is not None:
            press_from = ready - settle
            self.add(press_from, self.pulse_base[pr[0]], _PULSE, pr[0], pr[1], t.press_pulse_us, pr[2], slot.note)
        pick = self.picker[s]
        self.add(p, self.pulse_base[pick], _PULSE, pick, self.drive[s][self.notes[slot.note].velocity],
                 t.pick_pulse_us, 0, slot.note)  # fmt: skip
        ringing[s] = _Ringing(slot.note, f, slot.sound_us, slot.end_us,
                              press_from if f > 0 else None, press_act)  # fmt: skip


_PULSE, _RELEASE = Op.PULSE_HOLD, Op.RELEASE

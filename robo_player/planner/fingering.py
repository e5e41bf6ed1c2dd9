"""Where to play every note on a guitar or bass: a Viterbi search over fingerings.

At every onset each candidate *fingering* gives each of its notes a distinct string
and a fret (0 = open). The search walks the onsets in order and keeps, per distinct
*state*, the cheapest path to it. A state is everything the future depends on, per
string: the carriage's fret, the fret of the last note, that note's pick time, sound
time and written end (see :class:`Layout` for the times), plus the set of strings the
previous onset used. Times that can no longer matter to any later note (older than
:attr:`Layout.horizon_us` before the onset) are folded into one value, so states that
differ only in the distant past merge: the search is exact (equal to enumerating every
path, ``brute_force``) as long as no layer holds more than ``beam`` states; past that,
the cheapest ``beam`` states are kept.

Cost of a path (lower is better), summed over its transitions:

- carriage travel time in ms (the padded move, :func:`~robo_player.spec.guitar.carriage_move_us`);
- ``change_ms`` per note on a string the previous onset did not use (string changes);
- ``cut_ms_weight`` per ms a ringing note is cut short to make room, and ``cut_note_ms``
  per note cut (the matrix weighs only these);
- ``fret_ms`` per fret (a slight pull toward the nut, as a player's first position);
- ``INFEASIBLE`` per note whose carriage, presser or picker cannot be ready in time:
  that note is not played (the planner drops it with the reason) and its string keeps
  its state.

Times are performance µs: ``pick_us`` is when the picker fires; ``sound_us`` when the
note sounds (``pick_us`` + the picker's latency); ``end_us`` the written end. A
changeover is timed back from the note's *ready* time, ``max(pick_us, sound_us -
margin_us)`` (:class:`Layout`): with calibrated pickers and fret contacts the fret
needs settling only before the pick *sounds* (less a margin for the calibration's
error); without, the planner cannot know when a pick sounds and counts from the pick
command.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..spec.guitar import (
    GuitarSpec,
    Mechanism,
    carriage_move_us,
    damper_lift_us,
    press_position_mm,
)


def _load_c() -> Any:
    """The search in C, where ``pip install`` built it (setup.py), else None: no compiler
    at install time, ``ROBO_PLAYER_PURE_PYTHON`` set, or a build older than its source
    beside it (an editable install not rebuilt: a warning says so)."""
    if os.environ.get("ROBO_PLAYER_PURE_PYTHON"):
        return None
    try:
        mod = importlib.import_module("._fingering_c", __package__)
    except ImportError:
        return None
    src = Path(__file__).with_name("_fingering_c.c")
    if src.is_file() and hashlib.sha256(src.read_bytes()).hexdigest() != mod.SOURCE_SHA256:
        warnings.warn(f"{mod.__file__} was built from another {src.name}: the fingering search runs in "
                      f"Python until it is rebuilt (pip install -e .)", stacklevel=2)  # fmt: skip
        return None
    return mod


_fingering_c: Any = _load_c()

__all__ = [
    "INFEASIBLE",
    "BEAM",
    "CAL_MARGIN_US",
    "NEG",
    "WINDOW",
    "Costs",
    "Layout",
    "Onset",
    "Slot",
    "brute_force",
    "calibrated_settle_us",
    "changeover_us",
    "fingerings",
    "make_transition",
    "search",
    "step",
]

NEG = -(1 << 60)  # "long ago": a time that constrains nothing
INFEASIBLE = 1e6  # cost of one note that cannot be played where the path puts it
MAX_FINGERINGS = 96  # per onset (a 6-note chord has few; wide unisons could have many)
# States kept per onset by default. Since the search runs in C, beam 32 plans ~65,000
# notes/s on the slider (>= 2x the 20,000 target) and takes the folk tunes' travel ratio
# from 0.742 (beam 8) to 0.697 (bench/bench_guitar.py; docs/guitar.md "Measured").
BEAM = 32
# The search's slack (cost, ~ms of travel) above the cheapest state, on top of the octave's
# price: plan_guitar's window is WINDOW + Costs.transpose_ms (docs/guitar.md "Planner").
WINDOW = 300.0


@dataclass(slots=True)
class Slot:
    """One note to place: its timing and the (string, fret) it may take."""

    note: int  # index into score.notes
    pick_us: int
    sound_us: int
    end_us: int
    options: tuple[tuple[int, int], ...]  # (string, fret)
    pitch: int = -1  # the written pitch: an option sounding another costs ``transpose_ms``


@dataclass(slots=True)
class Onset:
    slots: tuple[Slot, ...]
    fingerings: tuple[tuple[tuple[int, int], ...], ...]  # per fingering: (string, fret) per slot


@dataclass(frozen=True, slots=True)
class Costs:
    change_ms: float = 8.0
    cut_ms_weight: float = 0.05
    fret_ms: float = 0.5
    travel_ms_weight: float = 1.0
    fret_move_ms: float = 0.0
    transpose_ms: float = 2000.0  # a note played an octave off (rather than dropped)
    cut_note_ms: float = 0.0  # per note cut (on top of ``cut_ms_weight`` per ms)


# With a calibration (pickers and every fret contact's settle time measured), a fret
# must be settled this long before its pick is expected to sound: the calibrated
# latency's error (onset p99 0.5 ms on the simulator, bench/bench_guitar_sim.py) and
# the carriage's settle, which the travel margin covers but nothing measures.
CAL_MARGIN_US = 3_000
UNCALIBRATED = 1 << 40  # margin_us without a calibration: ready = the pick command


def calibrated_settle_us(spec: GuitarSpec, calibration: object) -> list[list[int]] | None:
    """Per string and fret (0: open, 0) the measured settle of the contact that presses it
    (the slider's presser, the matrix's fret solenoid), if ``calibration`` has the
    pickers of every string and every contact's settle (then a changeover counts back
    from the pick's expected sound), else None."""
    pickers = getattr(calibration, "pickers", None) or {}
    settle = getattr(calibration, "settle_us", None) or {}
    if any(s not in pickers for s in range(len(spec.strings))):
        return None
    out: list[list[int]] = []
    for s, st in enumerate(spec.strings):
        row = [0]
        for f in range(1, spec.neck.frets + 1):
            role = f"press:{s}" if st.presser is not None else f"fret:{s}:{f}"
            if role not in settle:
                return None
            row.append(int(settle[role]))
        out.append(row)
    return out


class Layout:
    """What the search needs of a spec, as flat tables (µs).

    ``margin_us``: a changeover is timed back from ``max(pick, sound - margin_us)``, the
    note's *ready* time; :data:`CAL_MARGIN_US` with a calibration that measured the
    pickers and every fret contact (``settle_at[s][f]`` is then the measured settle of
    the contact that presses fret ``f`` of string ``s``, ``settle_us`` the slowest),
    else :data:`UNCALIBRATED` (the pick command; every settle the spec's
    ``fret_settle_us``). ``lift_us``: a damper's lift (the spec's ``timing.damper_lift_us``,
    by default 8 ms: :func:`~robo_player.spec.guitar.damper_lift_us`)."""

    __slots__ = (
        "strings", "frets", "slider", "move_us", "damp_us", "release_us", "settle_us",
        "min_sound_us", "min_repeat_us", "max_change_us", "horizon_us", "pos_mm", "_travel",
        "_last", "pitch_at", "margin_us", "lift_us", "settle_at",
    )  # fmt: skip

    def __init__(self, spec: GuitarSpec, calibration: object = None) -> None:
        t, neck = spec.timing, spec.neck
        self.strings = len(spec.strings)
        self.frets = neck.frets
        self.slider = spec.mechanism is Mechanism.SLIDER
        self.pos_mm = [press_position_mm(neck.scale_length_mm, f) for f in range(neck.frets + 1)]
        # pitch_at[s][f]: what string s sounds with fret f down (0: open, with the capo)
        self.pitch_at = [[st.tuning + (f if f > 0 else neck.capo) for f in range(neck.frets + 1)]
                         for st in spec.strings]  # fmt: skip
        self.damp_us = t.damp_us
        self.release_us = t.release_us
        cal_settle = calibrated_settle_us(spec, calibration)
        n = neck.frets + 1
        if cal_settle is None:
            self.settle_at = [[0] + [t.fret_settle_us] * neck.frets for _ in spec.strings]
            self.margin_us = UNCALIBRATED
        else:
            self.settle_at = cal_settle
            self.margin_us = CAL_MARGIN_US
        self.settle_us = max(max(row) for row in self.settle_at)
        self.lift_us = damper_lift_us(spec)
        self.min_sound_us = t.min_sound_us
        self.min_repeat_us = t.min_repeat_us
        # move_us[s][a][b]: carriage of string s from fret a to fret b, padded, + settle
        self.move_us: list[list[list[int]]] = []
        for st in spec.strings:
            c = st.carriage
            table = [[0] * n for _ in range(n)]
            if self.slider and c is not None:
                for a in range(n):
                    for b in range(n):
                        if a != b:
                            d = abs(self.pos_mm[a] - self.pos_mm[b])
                            mv = carriage_move_us(c, d)
                            table[a][b] = round(mv * (1.0 + t.travel_margin)) + c.settle_us
            self.move_us.append(table)
        most = max((max(map(max, tb)) for tb in self.move_us), default=0)
        self.max_change_us = t.damp_us + t.release_us + most + max(self.settle_us, t.fret_settle_us, self.lift_us)
        self.horizon_us = max(t.min_repeat_us, t.min_sound_us + self.max_change_us) + 1
        self._travel: dict[Costs, list[list[list[float]]]] = {}
        self._last: tuple[Costs | None, list[list[list[float]]]] = (None, [])

    def travel_cost(self, costs: Costs) -> list[list[list[float]]]:
        """Per string, the cost of a carriage move from fret a to fret b."""
        if self._last[0] is costs:
            return self._last[1]
        tb = self._travel.get(costs)
        if tb is None:
            w, wf = costs.travel_ms_weight, costs.fret_move_ms
            tb = [[[mv / 1000.0 * w + abs(a - b) * wf if mv else 0.0 for b, mv in enumerate(row)]
                   for a, row in enumerate(table)] for table in self.move_us]  # fmt: skip
            self._travel[costs] = tb
        self._last = (costs, tb)
        return tb


# A string's state: (carriage fret, last fret (-1 none), last pick, last sound, written
# end, free): ``free`` is when the carriage may leave (its presser is clear) while the
# string rings open or has not sounded; NEG once a fretted note holds the carriage.
StringState = tuple[int, int, int, int, int, int]
State = tuple[tuple[StringState, ...], int]  # (per string, mask of the previous onset's strings)
FRESH: StringState = (0, -1, NEG, NEG, NEG, 0)


def initial_state(layout: Layout) -> State:
    return (tuple(FRESH for _ in range(layout.strings)), 0)


Transition = Callable[[StringState, int, Slot, int], tuple[StringState, float, str | None, int]]


def transition(layout: Layout, ss: StringState, s: int, slot: Slot, fret: int,
               costs: Costs) -> tuple[StringState, float, str | None, int]:  # fmt: skip
    """One note on string ``s`` at ``fret``: (new string state, cost, why infeasible, cut µs).
    (:func:`make_transition` gives the same as a function of the last four, for loops.)

    The changeover on a string, back from the note's ready time ``r = max(p, sound -
    margin_us)`` (``p`` the pick; see :class:`Layout`); a fret is lifted or pressed only
    on a silent string (``damp_us`` after its damper: else a pull-off or hammer-on
    sounds), and a damper lifts ``lift_us`` after its coil:

    - same fret: nothing moves; the pick takes over (a note still ringing is cut there);
    - from a pressed fret to another with no carriage move (the matrix): damper, then
      the old fret released and the new one pressed together; ``r`` is
      ``max(settle_us, release_us, lift_us)`` after the damper's pulse;
    - from a pressed fret, with a carriage move: damper, presser release
      (``release_us``), the carriage's move (with its settle), the fret's settle --
      one after the other, and at least ``lift_us`` after the damper's pulse;
    - from a pressed fret to the open string: damper, release, ``r`` once the fret is
      clear and the damper lifted; the old note rings at least ``min_sound_us``;
    - from an open string or a fresh one: the carriage has been free since ``free``
      and moves then (pre-positioning: its travel hides under the open note); the
      fret is pressed ``settle_us`` before ``r``, the open note damped just before.
    """
    return make_transition(layout, costs)(ss, s, slot, fret)


def make_transition(layout: Layout, costs: Costs) -> Transition:
    """:func:`transition` with ``layout`` and ``costs`` fixed (read once, here: a layout
    changed afterwards needs a new one)."""
    core = make_core(layout, costs)
    pitch_at = layout.pitch_at
    fret_ms, transpose_ms = costs.fret_ms, costs.transpose_ms

    def tr(ss: StringState, s: int, slot: Slot, fret: int) -> tuple[StringState, float, str | None, int]:
        cost = fret * fret_ms
        if slot.pitch >= 0 and pitch_at[s][fret] != slot.pitch:
            cost += transpose_ms
        new, cost, why, cut = core(ss, s, fret, slot.pick_us, slot.sound_us, slot.end_us, cost)
        if why is None or why is REPEAT:
            return new, cost, why, cut if why is None else 0
        return new, cost, f"{why} needs {cut / 1000:.0f} ms before the pick", 0

    return tr


def changeover_us(layout: Layout, s: int, old: int, fret: int, mv: int) -> int:
    """The changeover on string ``s`` from a note on fret ``old`` (0: open) to one on
    another ``fret``: µs from the old note's damper to the new note's ready time
    (:func:`transition`'s rule; docs/guitar.md "The changeover from the ready time").
    ``mv``: the carriage's move with its settle (``move_us[s][car][fret]``; 0 for none,
    and from an open string the carriage moves under the open note, so it is not
    counted). The search (:func:`make_core`) and the planner's commands
    (``planner.guitar``) both time a changeover by this; the C search holds its twin."""
    damp, lift, settle = layout.damp_us, layout.lift_us, layout.settle_at[s][fret]
    if old == 0:  # the open note damped: silent at the press, the damper lifted by ready
        return damp + (settle if settle > lift else lift)
    if mv:  # damper, presser release, move, settle, one after the other; the felt lifted
        moved = layout.release_us + mv + settle
        return damp + (moved if moved > lift else lift)
    clear = layout.release_us if layout.release_us > lift else lift  # old fret clear, damper lifted
    if fret > 0:  # damper, then the frets swapped: the new one settled, the old one clear
        return damp + (settle if settle > clear else clear)
    return damp + clear  # to the open string


REPEAT = "picker repetition limit"
Core = Callable[[StringState, int, int, int, int, int, float], tuple[StringState, float, str | None, int]]


def make_core(layout: Layout, costs: Costs) -> Core:
    """The transition as the search calls it: ``core(ss, s, fret, pick, sound, end, cost)``
    with the slot's times, and ``cost`` the fret's pull and the octave's price (the same
    sum :func:`transition` starts from). An infeasible note gives ``(ss, INFEASIBLE,
    what, need)``: ``what`` is :data:`REPEAT`, ``"carriage move"`` or ``"fret change"``,
    ``need`` the µs it needs before the pick (:func:`make_transition` words it)."""
    min_repeat, min_sound = layout.min_repeat_us, layout.min_sound_us
    changeover = layout.damp_us + layout.release_us  # from the damper until the presser is clear
    margin, settle_at = layout.margin_us, layout.settle_at
    slider, move_us = layout.slider, layout.move_us
    travel = layout.travel_cost(costs)
    cut_w, cut_note = costs.cut_ms_weight, costs.cut_note_ms

    def core(ss: StringState, s: int, fret: int, p: int, sound: int, end: int,
             cost: float) -> tuple[StringState, float, str | None, int]:  # fmt: skip
        car, pf, lp, ls, lend, free = ss
        if p - lp < min_repeat:
            return ss, INFEASIBLE, REPEAT, 0
        r = sound - margin
        if r < p:
            r = p
        cut = 0
        if pf == fret:
            # same fret: the new pick takes over; a note still ringing then is cut there
            if lend > sound:
                cut = lend - sound
            new: StringState = (car, fret, p, sound, end, free)
        elif pf > 0:
            mv = move_us[s][car][fret] if fret > 0 else 0
            start = r - changeover_us(layout, s, pf, fret, mv)  # the damper goes on here
            off = lend
            if lend > start:
                if start < ls + min_sound:
                    return ss, INFEASIBLE, "carriage move" if mv else "fret change", p - start
                cut = lend - start
                off = start
            if fret > 0:
                if mv:
                    cost += travel[s][car][fret]
                new = (fret if slider else 0, fret, p, sound, end, NEG)
            else:  # open: the carriage is free once the presser is clear
                new = (car, 0, p, sound, end, off + changeover)
        elif fret == 0:  # a fresh string, open
            new = (car, 0, p, sound, end, free)
        else:  # from an open or fresh string to a fret
            st = settle_at[s][fret]
            press = r - st
            if pf == 0:  # the open note damped; silent at the press, the damper lifted by r
                damp_at = r - changeover_us(layout, s, 0, fret, 0)
                if lend > damp_at:
                    if damp_at < ls + min_sound:
                        return ss, INFEASIBLE, "fret change", p - damp_at
                    cut = lend - damp_at
            if slider and car != fret:
                mv = move_us[s][car][fret]
                if free + mv > press:
                    return ss, INFEASIBLE, "carriage move", p - press + mv
                cost += travel[s][car][fret]
            new = (fret if slider else 0, fret, p, sound, end, NEG)
        if cut:
            cost += cut / 1000.0 * cut_w + cut_note
        return new, cost, None, cut

    return core


def step(layout: Layout, state: State, onset: Onset, k: int,
         costs: Costs) -> tuple[State, float]:  # fmt: skip
    """Apply fingering ``k`` of ``onset`` to ``state``: (next state, cost)."""
    strings = list(state[0])
    prev_mask = state[1]
    cost = 0.0
    mask = 0
    tr = make_transition(layout, costs)
    for slot, (s, f) in zip(onset.slots, onset.fingerings[k], strict=True):
        new, c, why, _ = tr(strings[s], s, slot, f)
        if why is None:
            strings[s] = new
            mask |= 1 << s
            if prev_mask and not prev_mask >> s & 1:
                c += costs.change_ms
        cost += c
    return (tuple(strings), mask or prev_mask), cost


class _Interner:
    """String states as small ints (a search state is a tuple of them and the mask):
    cheap to hash, and each one's fold (all its times forgotten) computed once."""

    __slots__ = ("ids", "ss", "last", "fold")

    def __init__(self) -> None:
        self.ids: dict[StringState, int] = {}
        self.ss: list[StringState] = []
        self.last: list[int] = []  # the latest time it holds (FOLDED: none)
        self.fold: list[int] = []  # its folded id (-1: not made yet)

    def get(self, ss: StringState) -> int:
        i = self.ids.get(ss)
        return self.add(ss) if i is None else i

    def add(self, ss: StringState) -> int:
        """The id of ``ss``, one not interned yet."""
        i = self.ids[ss] = len(self.ss)
        self.ss.append(ss)
        last = max(ss[2], ss[3], ss[4], ss[5])
        self.last.append(FOLDED if last == NEG else last)
        self.fold.append(i if last == NEG else -1)
        return i

    def folded(self, i: int) -> int:
        f = self.fold[i]
        if f < 0:
            car, pf = self.ss[i][0], self.ss[i][1]
            f = self.fold[i] = self.get((car, pf, NEG, NEG, NEG, NEG))
        return f


FOLDED = 1 << 62  # "last" of a string state that holds no time (nothing to fold)
Key = tuple[int, ...]  # interned string states, then the previous onset's mask
# (cost, back index, fingering, string, state): for a note placed on string s >= 0 the
# state is the back entry's with that string's new state ``x`` (a StringState, interned
# only for the candidates kept); for s = -1, ``x`` is the state itself (a Key)
Cand = tuple[float, int, int, int, Any]


def search(layout: Layout, onsets: Sequence[Onset], costs: Costs | None = None,
           beam: int = BEAM, window: float = math.inf) -> tuple[list[int], float]:  # fmt: skip
    """The cheapest fingering index per onset, and its cost (Viterbi with a beam: at most
    ``beam`` states per onset, none costlier than the cheapest + ``window``). The octave
    options of a one-note onset whose written pitch two or more strings have are a last
    resort: their window is ``window`` less ``costs.transpose_ms`` (plan_guitar's window,
    WINDOW + transpose_ms, leaves them WINDOW), while those of a pitch one string has get
    the whole window, so that of two such notes too close on that string the search
    weighs moving either. With no window (``math.inf``) every path is weighed: exact
    below the beam.

    Runs in C (:mod:`._fingering_c`, built by ``pip install``) where it was built, else
    in Python (:func:`_search_py`): the same choice and total either way."""
    if _fingering_c is not None and layout.strings <= _fingering_c.MAX_STRINGS:
        return _search_c(layout, onsets, costs, beam, window)
    return _search_py(layout, onsets, costs, beam, window)


def _search_c(layout: Layout, onsets: Sequence[Onset], costs: Costs | None = None,
              beam: int = BEAM, window: float = math.inf) -> tuple[list[int], float]:  # fmt: skip
    """:func:`_search_py` in C (the extension must be built)."""
    assert _fingering_c is not None, "robo_player.planner._fingering_c is not built"
    costs = costs or Costs()
    if not onsets:
        return [], 0.0
    choice, total = _fingering_c.search(
        layout, onsets, layout.travel_cost(costs), fold_limits(layout, onsets), costs.fret_ms,
        costs.transpose_ms, costs.cut_ms_weight, costs.cut_note_ms, costs.change_ms, INFEASIBLE,
        beam, window)  # fmt: skip
    return choice, total


def _search_py(layout: Layout, onsets: Sequence[Onset], costs: Costs | None = None,
               beam: int = BEAM, window: float = math.inf) -> tuple[list[int], float]:  # fmt: skip
    """:func:`search` in Python. Its C twin (``_fingering_c.c``) repeats this function,
    :func:`make_core`, :func:`_expand_single` and :func:`_expand_multi` step for step: a
    change to what they compute, or to the order of their sums, goes into both
    (``tests/test_fingering_c.py`` holds them equal)."""
    costs = costs or Costs()
    if not onsets:
        return [], 0.0
    it = _Interner()
    n = layout.strings
    fresh = it.get(FRESH)
    # the layer (the states kept at the last onset, cheapest first) as columns: state,
    # its path's cost, and a time no later than the earliest any of its strings holds
    # (FOLDED: none): a candidate whose entry and new string state are both past the
    # fold limit has nothing to fold
    states: list[Key] = [(fresh,) * n + (0,)]
    base = [0.0]
    mins = [it.last[fresh]]
    history: list[tuple[list[int], list[int]]] = []  # per onset: back index and fingering per state
    limits = fold_limits(layout, onsets)
    last, folded, ids = it.last, it.folded, it.ids
    at = last.__getitem__
    tr = make_transition(layout, costs)
    core = make_core(layout, costs)
    # per string, per mask of the previous onset's strings: the string change's cost
    change = costs.change_ms
    pens = [[change if m and not m >> s & 1 else 0.0 for m in range(1 << n)] for s in range(n)]
    # per one-note fingering table (shared by the onsets of one pitch): its order
    orders: dict[tuple[int, int], list[tuple[float, int, int, int, float]]] = {}
    for i, onset in enumerate(onsets):
        if len(onset.slots) == 1:
            cands = _expand_single(layout, states, base, onset, costs, window, it, orders, core, pens)
        else:
            cands = _expand_multi(states, base, onset, costs, it, tr)
        # the cheapest entry per state, cheapest first, at most ``beam``, within the window
        # ((cost, j, k) is unique per candidate: the sort never compares states); a state's
        # times that no later note sees are folded first, so states equal but for them
        # are one (the first, cheapest, is kept)
        cands.sort()
        top = cands[0][0] + window
        limit = limits[i]
        nstates: list[Key] = []
        nbase: list[float] = []
        nmins: list[int] = []
        backs: list[int] = []
        ks: list[int] = []
        seen: set[Key] = set()
        # per back entry with a time past the limit: its state with those strings folded, its min
        backed: dict[int, tuple[Key, int]] = {}
        for c, j, k, s, x in cands:
            if c > top:
                break
            if s >= 0:  # string s of the state j now x, the mask s alone
                xi = ids.get(x)
                if xi is None:
                    xi = it.add(x)
                m = last[xi]
                if m < limit:
                    xi = folded(xi)
                    m = FOLDED
                mb = mins[j]
                if mb < limit:
                    b = backed.get(j)
                    if b is None:
                        lst = [y if last[y] >= limit else folded(y) for y in states[j][:n]]
                        b = backed[j] = (*lst, 0), min(map(at, lst))
                    lst = list(b[0])
                    mb = b[1]
                else:
                    lst = list(states[j])
                lst[s] = xi
                lst[-1] = 1 << s
                if mb < m:
                    m = mb
            else:  # a chord's state, or j's kept as it was (the note cannot be played)
                lst = list(x)
                for y in range(n):
                    if last[lst[y]] < limit:
                        lst[y] = folded(lst[y])
                m = min(map(at, lst[:n]))
            st = tuple(lst)
            size = len(seen)
            seen.add(st)  # one hash of st, not two
            if len(seen) == size:
                continue
            nstates.append(st)
            nbase.append(c)
            nmins.append(m)
            backs.append(j)
            ks.append(k)
            if len(nstates) == beam:
                break
        history.append((backs, ks))
        states, base, mins = nstates, nbase, nmins
    j = min(range(len(base)), key=base.__getitem__)
    total = base[j]
    choice = [0] * len(onsets)
    for i in range(len(onsets) - 1, -1, -1):
        backs, ks = history[i]
        choice[i] = ks[j]
        j = backs[j]
    return choice, total


def _expand_single(layout: Layout, states: list[Key], base: list[float], onset: Onset, costs: Costs,
                   window: float, it: _Interner, orders: dict[tuple[int, int], list[tuple[float, int, int, int, float]]],
                   core: Core, pens: list[list[float]]) -> list[Cand]:  # fmt: skip
    """:func:`step` for an onset of one note, on interned states (the common case; the
    same arithmetic, so the search still equals :func:`brute_force`). A path already
    more than ``window`` above the cheapest so far is skipped: the window would cut it."""
    slot = onset.slots[0]
    p, sound, end = slot.pick_us, slot.sound_us, slot.end_us
    sss = it.ss
    base0 = base[0]  # the lowest: the layer is kept cheapest first
    # a lower bound of each fingering's cost (its fret's pull, and the octave's price:
    # the sum the transition starts from), cheapest first: a fingering whose bound is
    # past ``cap`` is not computed at all
    key = (id(onset.fingerings), slot.pitch)
    order = orders.get(key)
    if order is None:
        at, pitch, fret_ms, tp = layout.pitch_at, slot.pitch, costs.fret_ms, costs.transpose_ms
        # the octave options of a pitch that two or more strings have are a last resort:
        # their window is ``window`` less their price (``last``); those of a pitch that
        # one string has are a choice (two such notes close on that string: which moves)
        octave = [pitch >= 0 and at[s][f] != pitch for (s, f), in onset.fingerings]
        last = tp if len(octave) - sum(octave) > 1 else 0.0
        order = orders[key] = sorted((f * fret_ms + (tp if octave[k] else 0.0), k, s, f, last if octave[k] else 0.0)
                                     for k, ((s, f),) in enumerate(onset.fingerings))  # fmt: skip
    cap = math.inf
    cands: list[Cand] = []
    add = cands.append
    masks = [st[-1] for st in states]
    for lb, k, s, f, last_resort in order:
        lim = cap - last_resort
        if base0 + lb > lim:
            if last_resort:
                continue
            break
        col = [st[s] for st in states]
        res = {sid: core(sss[sid], s, f, p, sound, end, lb) for sid in set(col)}
        pen = pens[s]
        best = math.inf
        for j, sid in enumerate(col):
            x, c, why, _ = res[sid]
            if why is None:
                total = base[j] + (c + pen[masks[j]])
                if total <= lim:  # past it, past the window: never kept
                    add((total, j, k, s, x))
            else:
                total = base[j] + c
                if total <= lim:
                    add((total, j, k, -1, states[j]))
            if total < best:
                best = total
        if best + window < cap:
            cap = best + window
    return cands


def _expand_multi(states: list[Key], base: list[float], onset: Onset, costs: Costs, it: _Interner,
                  tr: Transition) -> list[Cand]:  # fmt: skip
    """:func:`step` for a chord, on interned states (transitions cached per onset)."""
    change = costs.change_ms
    sss, intern = it.ss, it.get
    seen: dict[tuple[int, int, int, int], tuple[int, float]] = {}
    slots = onset.slots
    cands: list[Cand] = []
    for j, (state, c0) in enumerate(zip(states, base, strict=True)):
        prev = state[-1]
        for k, fg in enumerate(onset.fingerings):
            lst = list(state)
            cost = 0.0
            mask = 0
            for si, (s, f) in enumerate(fg):
                key = (lst[s], si, s, f)
                r = seen.get(key)
                if r is None:
                    new, c, why, _ = tr(sss[lst[s]], s, slots[si], f)
                    r = seen[key] = (intern(new) if why is None else -1, c)
                nid, c = r
                if nid >= 0:
                    lst[s] = nid
                    mask |= 1 << s
                    if prev and not prev >> s & 1:
                        c += change
                cost += c
            lst[-1] = mask or prev
            cands.append((c0 + cost, j, k, -1, tuple(lst)))
    return cands


def fold_limits(layout: Layout, onsets: Sequence[Onset]) -> list[int]:
    """Per onset ``i``: times before this constrain no later note (every later pick comes
    at or after the earliest of them; the suffix minimum, as latencies differ)."""
    out = [NEG] * len(onsets)
    low = None
    for i in range(len(onsets) - 1, 0, -1):
        m = min(sl.pick_us for sl in onsets[i].slots)
        low = m if low is None else min(low, m)
        out[i - 1] = low - layout.horizon_us
    return out


def path_cost(layout: Layout, onsets: Sequence[Onset], choice: Sequence[int],
              costs: Costs | None = None) -> float:  # fmt: skip
    """The cost of one path (the same arithmetic as :func:`search`)."""
    costs = costs or Costs()
    state, total = initial_state(layout), 0.0
    for onset, k in zip(onsets, choice, strict=True):
        state, c = step(layout, state, onset, k, costs)
        total += c
    return total


def brute_force(layout: Layout, onsets: Sequence[Onset],
                costs: Costs | None = None) -> tuple[list[int], float]:  # fmt: skip
    """Every path, enumerated (small inputs only): the cheapest and its cost."""
    best: tuple[list[int], float] = ([], float("inf"))
    for choice in itertools.product(*(range(len(o.fingerings)) for o in onsets)):
        c = path_cost(layout, onsets, choice, costs)
        if c < best[1]:
            best = (list(choice), c)
    return best


def fingerings(options: Sequence[Sequence[tuple[int, int]]]) -> list[tuple[tuple[int, int], ...]]:
    """Every assignment of distinct strings to the notes (one option per note), at most
    :data:`MAX_FINGERINGS`, lowest total fret first among those kept."""
    if len(options) == 1:
        return [(o,) for o in options[0][:MAX_FINGERINGS]]
    out: list[tuple[tuple[int, int], ...]] = []
    order = sorted(range(len(options)), key=lambda i: len(options[i]))
    pick: list[tuple[int, int]] = [(0, 0)] * len(options)

    def rec(d: int, used: int) -> None:
        if len(out) >= MAX_FINGERINGS * 4:
            return
        if d == len(order):
            out.append(tuple(pick))
            return
        i = order[d]
        for s, f in options[i]:
            if not used >> s & 1:
                pick[i] = (s, f)
                rec(d + 1, used | 1 << s)

    rec(0, 0)
    if len(out) > MAX_FINGERINGS:
        out.sort(key=lambda fg: sum(f for _, f in fg))
        del out[MAX_FINGERINGS:]
    return out

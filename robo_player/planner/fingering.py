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

- carriage travel time in ms (the padded trapezoidal move, :func:`~robo_player.spec.guitar.travel_us`);
- ``change_ms`` per note on a string the previous onset did not use (string changes);
- ``cut_ms_weight`` per ms a ringing note is cut short to make room;
- ``fret_ms`` per fret (a slight pull toward the nut, as a player's first position);
- ``INFEASIBLE`` per note whose carriage, presser or picker cannot be ready in time:
  that note is not played (the planner drops it with the reason) and its string keeps
  its state.

Times are performance µs: ``pick_us`` is when the picker fires; ``sound_us`` when the
note sounds (``pick_us`` + the picker's latency); ``end_us`` the written end.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..spec.guitar import GuitarSpec, Mechanism, press_position_mm, travel_us

__all__ = [
    "INFEASIBLE",
    "NEG",
    "Costs",
    "Layout",
    "Onset",
    "Slot",
    "brute_force",
    "fingerings",
    "search",
    "step",
]

NEG = -(1 << 60)  # "long ago": a time that constrains nothing
INFEASIBLE = 1e6  # cost of one note that cannot be played where the path puts it
MAX_FINGERINGS = 96  # per onset (a 6-note chord has few; wide unisons could have many)


@dataclass(frozen=True, slots=True)
class Slot:
    """One note to place: its timing and the (string, fret) it may take."""

    note: int  # index into score.notes
    pick_us: int
    sound_us: int
    end_us: int
    options: tuple[tuple[int, int], ...]  # (string, fret)


@dataclass(frozen=True, slots=True)
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


class Layout:
    """What the search needs of a spec, as flat tables (µs)."""

    __slots__ = (
        "strings", "frets", "slider", "move_us", "damp_us", "release_us", "settle_us",
        "min_sound_us", "min_repeat_us", "max_change_us", "horizon_us", "pos_mm",
    )  # fmt: skip

    def __init__(self, spec: GuitarSpec) -> None:
        t, neck = spec.timing, spec.neck
        self.strings = len(spec.strings)
        self.frets = neck.frets
        self.slider = spec.mechanism is Mechanism.SLIDER
        self.pos_mm = [press_position_mm(neck.scale_length_mm, f) for f in range(neck.frets + 1)]
        self.damp_us = t.damp_us
        self.release_us = t.release_us
        self.settle_us = t.fret_settle_us
        self.min_sound_us = t.min_sound_us
        self.min_repeat_us = t.min_repeat_us
        # move_us[s][a][b]: carriage of string s from fret a to fret b, padded, + settle
        self.move_us: list[list[list[int]]] = []
        n = neck.frets + 1
        for st in spec.strings:
            c = st.carriage
            table = [[0] * n for _ in range(n)]
            if self.slider and c is not None:
                for a in range(n):
                    for b in range(n):
                        if a != b:
                            d = abs(self.pos_mm[a] - self.pos_mm[b])
                            mv = travel_us(d, c.max_speed_mm_s, c.accel_mm_s2)
                            table[a][b] = round(mv * (1.0 + t.travel_margin)) + c.settle_us
            self.move_us.append(table)
        most = max((max(map(max, tb)) for tb in self.move_us), default=0)
        self.max_change_us = t.damp_us + t.release_us + most + t.fret_settle_us
        self.horizon_us = max(t.min_repeat_us, t.min_sound_us + self.max_change_us) + 1

    def needed_us(self, s: int, prev_fret: int, car: int, fret: int) -> int:
        """Time before the pick that the changeover on string ``s`` starts (damper on)."""
        need = 0
        if prev_fret >= 0:
            need += self.damp_us
            if prev_fret > 0:
                need += self.release_us
        if fret > 0:
            if self.slider:
                need += self.move_us[s][car][fret]
            need += self.settle_us
        return need


# A string's state: (carriage fret, last fret (-1 none), last pick, last sound, written end)
StringState = tuple[int, int, int, int, int]
State = tuple[tuple[StringState, ...], int]  # (per string, mask of the previous onset's strings)
FRESH: StringState = (0, -1, NEG, NEG, NEG)


def initial_state(layout: Layout) -> State:
    return (tuple(FRESH for _ in range(layout.strings)), 0)


def transition(layout: Layout, ss: StringState, s: int, slot: Slot, fret: int,
               costs: Costs) -> tuple[StringState, float, str | None, int]:  # fmt: skip
    """One note on string ``s`` at ``fret``: (new string state, cost, why infeasible, cut µs)."""
    car, pf, lp, ls, lend = ss
    p = slot.pick_us
    cost = fret * costs.fret_ms
    if p - lp < layout.min_repeat_us:
        return ss, INFEASIBLE, "picker repetition limit", 0
    cut = 0
    if pf == fret and pf >= 0:
        # same fret: the new pick takes over; a note still ringing then is cut there
        if lend > slot.sound_us:
            cut = lend - slot.sound_us
        new_car = car
    else:
        need = layout.needed_us(s, pf, car, fret)
        start = p - need  # the damper goes on (or the carriage leaves) here
        if pf < 0:
            if start < 0:
                return ss, INFEASIBLE, "not ready by the start of the performance", 0
        elif lend > start:
            if start < ls + layout.min_sound_us:
                what = "carriage move" if layout.slider and fret > 0 and car != fret else "fret change"
                return ss, INFEASIBLE, f"{what} needs {need / 1000:.0f} ms before the pick", 0
            cut = lend - start
        new_car = fret if fret > 0 else car
        if layout.slider and fret > 0:
            cost += layout.move_us[s][car][fret] / 1000.0 * costs.travel_ms_weight
            cost += abs(fret - car) * costs.fret_move_ms
    cost += cut / 1000.0 * costs.cut_ms_weight
    return (new_car, fret, p, slot.sound_us, slot.end_us), cost, None, cut


def _fold(state: State, limit: int) -> State:
    """Forget times before ``limit``: they constrain no later note."""
    strings = state[0]
    out: list[StringState] | None = None
    for i, (car, pf, lp, ls, lend) in enumerate(strings):
        if lp != NEG and lp < limit and ls < limit and lend < limit:
            if out is None:
                out = list(strings)
            out[i] = (car, pf, NEG, NEG, NEG)
    return state if out is None else (tuple(out), state[1])


def step(layout: Layout, state: State, onset: Onset, k: int,
         costs: Costs) -> tuple[State, float]:  # fmt: skip
    """Apply fingering ``k`` of ``onset`` to ``state``: (next state, cost)."""
    strings = list(state[0])
    prev_mask = state[1]
    cost = 0.0
    mask = 0
    for slot, (s, f) in zip(onset.slots, onset.fingerings[k], strict=True):
        new, c, why, _ = transition(layout, strings[s], s, slot, f, costs)
        cost += c
        if why is None:
            strings[s] = new
            mask |= 1 << s
            if prev_mask and not prev_mask >> s & 1:
                cost += costs.change_ms
    return (tuple(strings), mask or prev_mask), cost


def search(layout: Layout, onsets: Sequence[Onset], costs: Costs | None = None,
           beam: int = 8, window: float = math.inf) -> tuple[list[int], float]:  # fmt: skip
    """The cheapest fingering index per onset, and its cost (Viterbi with a beam: at most
    ``beam`` states per onset, none costlier than the cheapest + ``window``)."""
    costs = costs or Costs()
    if not onsets:
        return [], 0.0
    # layer: state -> (cost, back index into the previous layer, fingering)
    layer: list[Entry] = [(initial_state(layout), 0.0, -1, -1)]
    history: list[list[Entry]] = []
    limits = fold_limits(layout, onsets)
    for i, onset in enumerate(onsets):
        if i and len(layer) > 1:  # states equal but for times no later note sees are one
            layer = _merge(layer, limits[i - 1])
            history[i - 1] = layer  # the next layer's back indices point into this list
        best: dict[State, tuple[float, int, int]] = {}
        if len(onset.slots) == 1:
            _expand_single(layout, layer, onset, costs, best, window)
        else:
            nfg = range(len(onset.fingerings))
            for j, (state, c0, _, _) in enumerate(layer):
                for k in nfg:
                    nstate, c = step(layout, state, onset, k, costs)
                    total = c0 + c
                    old = best.get(nstate)
                    if old is None or total < old[0]:
                        best[nstate] = (total, j, k)
        nxt = [(st, c, j, k) for st, (c, j, k) in best.items()]
        if len(nxt) > 1:
            nxt.sort(key=lambda e: e[1])
            if len(nxt) > beam:
                del nxt[beam:]
            top = nxt[0][1] + window
            while nxt[-1][1] > top:
                nxt.pop()
        history.append(nxt)
        layer = nxt
    j = min(range(len(layer)), key=lambda x: layer[x][1])
    total = layer[j][1]
    choice = [0] * len(onsets)
    for i in range(len(onsets) - 1, -1, -1):
        _, _, back, k = history[i][j]
        choice[i] = k
        j = back
    return choice, total


Entry = tuple[State, float, int, int]  # (state, cost, back index, fingering)


def _expand_single(layout: Layout, layer: list[Entry], onset: Onset, costs: Costs,
                   best: dict[State, tuple[float, int, int]], window: float) -> None:  # fmt: skip
    """:func:`step` for an onset of one note, unrolled (the common case; the same
    arithmetic, so the search still equals :func:`brute_force`). A path already more
    than ``window`` above the cheapest so far is skipped: the window would cut it."""
    slot = onset.slots[0]
    change = costs.change_ms
    get = best.get
    cap = math.inf
    for k, ((s, f),) in enumerate(onset.fingerings):
        bit = 1 << s
        s1 = s + 1
        seen: dict[StringState, tuple[StringState, float, str | None, int]] = {}
        for j, (state, c0, _, _) in enumerate(layer):
            strings, prev_mask = state
            ss = strings[s]
            r = seen.get(ss)
            if r is None:
                r = seen[ss] = transition(layout, ss, s, slot, f, costs)
            new, c, why, _ = r
            if why is None:
                if prev_mask and not prev_mask & bit:
                    c += change
                nstate = (strings[:s] + (new,) + strings[s1:], bit)
            else:
                nstate = state
            total = c0 + c
            if total > cap:
                continue
            old = get(nstate)
            if old is None or total < old[0]:
                best[nstate] = (total, j, k)
                if total + window < cap:
                    cap = total + window


def _merge(layer: list[Entry], limit: int) -> list[Entry]:
    """Fold every state's old times and keep the cheapest entry per folded state."""
    best: dict[State, Entry] = {}
    for state, c, back, k in layer:
        st = _fold(state, limit)
        old = best.get(st)
        if old is None or c < old[1]:
            best[st] = (st, c, back, k)
    return list(best.values())


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

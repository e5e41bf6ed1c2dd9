"""Lower bounds on the fretters' travel, timing ignored (bench/bench_guitar.py ``--floor``).

Travel is counted as the planner's report counts it (``fretter_travel_frets`` /
``fretter_travel_mm``, :func:`path_travel`): every carriage starts at the nut; a note on
string ``s`` at fret ``f > 0`` sends that string's carriage to ``f`` (so many frets, or so
many mm between the two press positions, ``Layout.pos_mm``); an open note leaves its
carriage where it is. The presser rides on the carriage, so it adds no travel. With timing
ignored every fingering of every onset is open to a plan, so the least travel over all
of them is a lower bound on the travel of any plan that plays the same notes.

- :func:`exact_travel`: that least travel, by dynamic programming over every carriage's
  position at once (state: one position per string; an onset's fingering moves the
  carriages of its fretted notes, one string per note). Each axis holds only the nut
  and the frets some option of that string names (a carriage never stands anywhere
  else), so the state space is the product of those counts; past ``max_states`` it
  returns None.
- :func:`lagrangian_travel`: a relaxation for when that product is too big (the slider's
  six strings over a set of tunes): "each note on exactly one string" is priced by a
  multiplier per note, the strings then choose their notes apart (a shortest path over
  one carriage's positions each, at most one note per onset), and the value at any
  multipliers is a lower bound (weak duality); subgradient steps raise it. It is at
  most the LP relaxation's optimum, so it may lie below the exact figure
  (tests/test_travel_bound.py holds it at or under :func:`exact_travel`; measured 1.4 %
  under it on 40 Essen tunes on the slider, 2 % on the chorale basses).
- :func:`least_travel`: the exact figure where it fits, else the relaxation, and which.

Which options a note has (:func:`bound_onsets`): the written pitch's positions (as the
greedy baseline plays; a note out of range moved by octaves first, as ``prepare`` does),
or, with ``octaves``, also every position an octave below, else above: a superset of
anything the planner may choose (``prepare``'s options, and the chord octaves it adds
where it would drop a note), so that bound holds for the planner's plans too.
A plan that drops notes is held to the bound without them (``skip``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..score import Score
from ..spec.guitar import GuitarSpec
from .fingering import Layout
from .guitar import prepare

# per onset, per note: the (string, fret) it may take
OnsetOptions = tuple[tuple[tuple[int, int], ...], ...]
Path = Sequence[Sequence[tuple[int, int]]]

MAX_STATES = 4_000_000  # exact_travel's dense table: 32 MB of float64


def path_travel(layout: Layout, path: Path, start: int = 0, open_to_nut: bool = False) -> tuple[float, float]:
    """(frets, mm) the carriages travel along ``path`` (per onset, (string, fret) per
    note), every carriage starting at the nut; an open note leaves its carriage where it
    is (``open_to_nut``: sends it to the nut). Moves of onsets before ``start`` place the
    carriages but are not counted. The planner's report counts its moves the same way
    (``_Emitter.move``)."""
    pos = layout.pos_mm
    car = [0] * layout.strings
    frets, mm = 0, 0.0
    for i, fg in enumerate(path):
        for s, f in fg:
            if f > 0 or open_to_nut:
                if i >= start:
                    frets += abs(car[s] - f)
                    mm += abs(pos[car[s]] - pos[f])
                car[s] = f
    return frets, mm


def distances(layout: Layout, unit: str) -> np.ndarray:
    """(frets+1, frets+1): a carriage's travel from fret a to fret b, in ``unit``
    ("frets" or "mm")."""
    n = layout.frets + 1
    if unit == "frets":
        idx = np.arange(n, dtype=np.float64)
        return np.abs(idx[:, None] - idx[None, :])
    if unit == "mm":
        pos = np.asarray(layout.pos_mm, dtype=np.float64)
        return np.abs(pos[:, None] - pos[None, :])
    raise ValueError(f"distances: unit {unit!r} is not 'frets' or 'mm'")


def bound_onsets(spec: GuitarSpec, score: Score, octaves: bool = False, skip: Iterable[int] = (),
                 extra: Mapping[int, tuple[int, int]] | None = None) -> list[OnsetOptions]:  # fmt: skip
    """Per onset of ``prepare(spec, score)``, per note: its options (see the module's
    docstring); notes whose index is in ``skip`` (dropped by a plan) left out; ``extra``
    (note -> (string, fret)) added to a note's options: a plan's own choice (an octave
    off), so that the bound holds for that plan."""
    layout = Layout(spec)
    at = layout.pitch_at
    gone = set(skip)
    more = extra or {}
    onsets, _ = prepare(spec, score)
    out: list[OnsetOptions] = []
    for o in onsets:
        slots = []
        for sl in o.slots:
            if sl.note in gone:
                continue
            opts = {(s, f) for s, f in sl.options if at[s][f] == sl.pitch}
            if octaves:
                opts |= set(spec.positions(sl.pitch)) | set(spec.positions(sl.pitch - 12) or spec.positions(sl.pitch + 12))
                opts |= set(sl.options)
            if sl.note in more:
                opts.add(more[sl.note])
            if not opts:  # cannot happen for prepare's onsets: kept as a guard
                raise ValueError(f"bound_onsets: note {sl.note} (pitch {sl.pitch}) has no position on {spec.name}")
            slots.append(tuple(sorted(opts)))
        if slots:
            out.append(tuple(slots))
    return out


def _assignments(onset: OnsetOptions) -> list[tuple[tuple[int, int], ...]]:
    """Every choice of one option per note on distinct strings (no cap)."""
    return [fg for fg in itertools.product(*onset) if len({s for s, _ in fg}) == len(fg)]


def exact_travel(strings: int, dist: np.ndarray, pieces: Sequence[Sequence[OnsetOptions]],
                 joined: bool = True, max_states: int = MAX_STATES, price: float = 0.0,
                 plain: Sequence[Sequence[OnsetOptions]] | None = None) -> float | None:  # fmt: skip
    """The least travel (in ``dist``'s unit) over every fingering of ``pieces``: played
    one after another, each carriage where the last piece left it (``joined``), or each
    from the nut (the sum of each piece's least travel). None when the state space (per
    string, the nut and the frets its options name) passes ``max_states``.

    ``price`` with ``plain`` (the same pieces' options at the written pitches): the least
    travel plus ``price`` per note on an option not in ``plain`` (an octave move); for a
    plan of ``k`` such notes and travel ``t`` this is at most ``t + price * k``, so a plan
    within ``t`` needs ``k >= (value - t) / price`` (:func:`fewest_octaves`)."""
    if not joined:
        total = 0.0
        for i, p in enumerate(pieces):
            v = exact_travel(strings, dist, [p], True, max_states, price, None if plain is None else [plain[i]])
            if v is None:
                return None
            total += v
        return total
    onsets = [o for p in pieces for o in p]
    written = [o for p in plain for o in p] if plain is not None else None
    used: list[set[int]] = [{0} for _ in range(strings)]
    for o in onsets:
        for opts in o:
            for s, f in opts:
                used[s].add(f)
    axes = [sorted(u) for u in used]  # per string: the frets its carriage may stand at
    size = 1
    for a in axes:
        size *= len(a)
    if size > max_states:
        return None
    index = [{f: i for i, f in enumerate(a)} for a in axes]
    # per string, per target fret: the travel to it from each position on that axis
    cols = [{f: dist[np.asarray(a), f].reshape([-1 if k == s else 1 for k in range(strings)])
             for f in a} for s, a in enumerate(axes)]  # fmt: skip
    table = np.full([len(a) for a in axes], np.inf)
    table[(0,) * strings] = 0.0  # every carriage at the nut
    for i, o in enumerate(onsets):
        new = np.full_like(table, np.inf)
        for fg in _assignments(o):
            t = table
            if written is not None and price:
                moved = sum(sf not in w for sf, w in zip(fg, written[i], strict=True))
                if moved:
                    t = t + price * moved
            at: list[slice | int] = [slice(None)] * strings
            for s, f in fg:
                if f > 0:  # this string's carriage goes to f: the least over where it was
                    t = (t + cols[s][f]).min(axis=s, keepdims=True)
                    at[s] = index[s][f]
            # t: the collapsed axes have size 1; place them at their frets
            view = new[tuple(slice(i, i + 1) if isinstance(i, int) else i for i in at)]
            np.minimum(view, t, out=view)
        table = new
    return float(table.min())


def fewest_octaves(strings: int, dist: np.ndarray, wide: Sequence[Sequence[OnsetOptions]],
                   plain: Sequence[Sequence[OnsetOptions]], within: float, joined: bool = True,
                   prices: Sequence[float] = (), max_states: int = MAX_STATES,
                   ) -> tuple[int, tuple[int, float] | None] | None:  # fmt: skip
    """How many notes a plan over ``wide``'s options must move off ``plain``'s (an octave)
    to travel at most ``within``: a lower bound, the best over ``prices`` of
    ``ceil((exact_travel(..., price) - within) / price)`` (weak duality, see
    :func:`exact_travel`), and (moves, travel) of the fewest-moves fingering within it
    that the priced DPs found (each price's optimum: its moves are the value's slope in
    the price, read from a second DP at ``price * (1 + 1e-6)``), or None if none was.
    None where the state space does not fit."""
    lower = 0
    found: tuple[int, float] | None = None
    for mu in prices:
        v = exact_travel(strings, dist, wide, joined, max_states, mu, plain)
        v2 = exact_travel(strings, dist, wide, joined, max_states, mu * (1 + 1e-6), plain)
        if v is None or v2 is None:
            return None
        lower = max(lower, int(np.ceil((v - within) / mu - 1e-9)))
        k = round((v2 - v) / (mu * 1e-6))
        travel = v - mu * k
        if travel <= within + 1e-6 and (found is None or k < found[0]):
            found = (k, travel)
    return lower, found


def least_travel(strings: int, dist: np.ndarray, pieces: Sequence[Sequence[OnsetOptions]], joined: bool = True,
                 upper: float | None = None, max_states: int = MAX_STATES) -> tuple[float, str]:  # fmt: skip
    """A lower bound on the travel of ``pieces`` and how it was found: :func:`exact_travel`
    where its state space fits ``max_states`` ("exact"), else :func:`lagrangian_travel`
    ("Lagrangian"); pieces apart (not ``joined``) each their own way ("exact k/n": k of
    the n pieces exact, the rest by the relaxation)."""
    if joined:
        v = exact_travel(strings, dist, pieces, True, max_states)
        if v is not None:
            return v, "exact"
        return lagrangian_travel(strings, dist, pieces, True, upper), "Lagrangian"
    total, exact = 0.0, 0
    for p in pieces:
        v = exact_travel(strings, dist, [p], True, max_states)
        if v is None:
            v = lagrangian_travel(strings, dist, [p], True)
        else:
            exact += 1
        total += v
    n = len(pieces)
    return total, "exact" if exact == n else "Lagrangian" if exact == 0 else f"exact {exact}/{n}"


def lagrangian_travel(strings: int, dist: np.ndarray, pieces: Sequence[Sequence[OnsetOptions]],
                      joined: bool = True, upper: float | None = None, iters: int = 300) -> float:  # fmt: skip
    """A lower bound on :func:`exact_travel` (any number of strings): the best value of
    the Lagrangian relaxation over ``iters`` subgradient steps (Polyak's step towards
    ``upper``, a plan's travel, by default the greedy's; halved when 20 steps gain
    nothing). Each value is a bound on its own, so stopping early only loosens it."""
    if not joined:
        return sum(lagrangian_travel(strings, dist, [p], True, None, iters) for p in pieces)
    onsets = [o for p in pieces for o in p]
    if not onsets:
        return 0.0
    # per onset: the option arrays (string, fret, note index), flattened once
    opt_s: list[np.ndarray] = []
    opt_f: list[np.ndarray] = []
    opt_j: list[np.ndarray] = []
    nslots = 0
    for o in onsets:
        rows = [(s, f, nslots + j) for j, opts in enumerate(o) for s, f in opts]
        nslots += len(o)
        a = np.asarray(rows, dtype=np.int64)
        opt_s.append(a[:, 0])
        opt_f.append(a[:, 1])
        opt_j.append(a[:, 2])
    if upper is None:  # the greedy's travel: every note at its lowest fret
        upper = _greedy_cost(strings, dist, onsets)
    lam = np.zeros(nslots)
    best = 0.0
    theta, stale = 1.0, 0
    for _ in range(iters):
        value, cover = _relaxed(strings, dist, opt_s, opt_f, opt_j, lam)
        if value > best + 1e-9:
            best, stale = value, 0
        else:
            stale += 1
            if stale >= 20:
                theta, stale = theta / 2.0, 0
        g = 1.0 - cover
        norm = float(g @ g)
        if norm == 0.0 or theta < 1e-4:  # a plan of the relaxation is a plan: exact
            break
        lam += theta * max(upper - value, 1e-6) / norm * g
    return best


def _greedy_cost(strings: int, dist: np.ndarray, onsets: Sequence[OnsetOptions]) -> float:
    car = [0] * strings
    total = 0.0
    for o in onsets:
        fg = min(_assignments(o), key=lambda g: sum(f for _, f in g))
        for s, f in fg:
            if f > 0:
                total += float(dist[car[s], f])
                car[s] = f
    return total


def _relaxed(strings: int, dist: np.ndarray, opt_s: list[np.ndarray], opt_f: list[np.ndarray],
             opt_j: list[np.ndarray], lam: np.ndarray) -> tuple[float, np.ndarray]:  # fmt: skip
    """The Lagrangian's value at ``lam`` and how often its plan plays each note: each
    string apart takes at most one note an onset, gaining its multiplier."""
    n = dist.shape[0]
    value = np.full((strings, n), np.inf)  # (S, frets+1): least cost so far, carriage at c
    value[:, 0] = 0.0
    trail: list[tuple[np.ndarray, np.ndarray]] = []  # per onset: (chosen option per (s, c), where from)
    cols = np.arange(n)[None, :]
    for s_, f_, j_ in zip(opt_s, opt_f, opt_j, strict=True):
        gain = lam[j_]
        # taking option k: fretted, the carriage comes to f from its best position
        via = value[s_] + dist[:, f_].T  # (K, n)
        src = via.argmin(axis=1)
        took = via[np.arange(len(s_)), src] - gain
        new = value.copy()
        choice = np.full((strings, n), -1, dtype=np.int64)
        from_ = np.broadcast_to(cols, (strings, n)).copy()
        for k in range(len(s_)):
            s, f = int(s_[k]), int(f_[k])
            if f > 0:
                if took[k] < new[s, f]:
                    new[s, f] = took[k]
                    choice[s, f] = k
                    from_[s, f] = src[k]
            else:  # open: the carriage stays where it is
                cand = value[s] - gain[k]
                better = cand < new[s]
                new[s, better] = cand[better]
                choice[s, better] = k
                from_[s, better] = np.nonzero(better)[0]
        trail.append((choice, from_))
        value = new
    cover = np.zeros(len(lam))
    ends = value.argmin(axis=1)
    total = float(lam.sum() + value[np.arange(strings), ends].sum())
    for s in range(strings):
        c = int(ends[s])
        for t in range(len(trail) - 1, -1, -1):
            choice, from_ = trail[t]
            k = int(choice[s, c])
            if k >= 0:
                cover[opt_j[t][k]] += 1.0
                c = int(from_[s, c])
    return total, cover

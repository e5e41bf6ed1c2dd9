"""The travel bounds (planner/travel_bound.py): the exact DP is the least travel over
every fingering (brute force on small lines), counted as the planner counts its moves,
and the Lagrangian relaxation never exceeds it."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from robo_player.planner.fingering import Layout
from robo_player.planner.guitar import GuitarPlanReport, plan_guitar, prepare
from robo_player.planner.travel_bound import (
    bound_onsets,
    distances,
    exact_travel,
    fewest_octaves,
    lagrangian_travel,
    path_travel,
)
from robo_player.score import Note, Score
from robo_player.spec import load_spec
from robo_player.spec.guitar import GuitarSpec


def _random_line(rng: random.Random, strings: int, frets: int, onsets: int) -> list[tuple[tuple[tuple[int, int], ...], ...]]:
    """Per onset 1-2 notes, each with 1-3 (string, fret) options, some open."""
    out = []
    while len(out) < onsets:
        notes = []
        for _ in range(rng.choice((1, 1, 1, 2))):
            k = rng.randint(1, min(3, strings))
            notes.append(tuple((s, rng.choice((0, rng.randint(1, frets)))) for s in rng.sample(range(strings), k)))
        if any(len({s for s, _ in fg}) == len(fg) for fg in itertools.product(*notes)):
            out.append(tuple(notes))
    return out


def _brute(strings: int, dist: np.ndarray, line: list) -> float:
    """The least travel over every sequence of fingerings (distinct strings per onset):
    a carriage goes to a fretted note's fret, an open note leaves it."""
    per_onset = [[fg for fg in itertools.product(*o) if len({s for s, _ in fg}) == len(fg)] for o in line]
    best = np.inf
    for seq in itertools.product(*per_onset):
        car = [0] * strings
        total = 0.0
        for fg in seq:
            for s, f in fg:
                if f > 0:
                    total += dist[car[s], f]
                    car[s] = f
        best = min(best, total)
    return float(best)


@pytest.mark.parametrize("seed", range(12))
def test_exact_travel_is_the_brute_force_minimum_and_the_relaxation_is_below_it(seed: int) -> None:
    rng = random.Random(seed)
    strings, frets = rng.choice(((2, 5), (3, 6), (4, 4)))
    pos = np.cumsum([0.0, *(rng.uniform(5.0, 30.0) for _ in range(frets))])
    dist = np.abs(pos[:, None] - pos[None, :])
    lines = [_random_line(rng, strings, frets, rng.randint(3, 6)) for _ in range(2)]
    joined = _brute(strings, dist, lines[0] + lines[1])
    apart = _brute(strings, dist, lines[0]) + _brute(strings, dist, lines[1])
    assert exact_travel(strings, dist, lines, joined=True) == pytest.approx(joined, abs=1e-9)
    assert exact_travel(strings, dist, lines, joined=False) == pytest.approx(apart, abs=1e-9)
    assert lagrangian_travel(strings, dist, lines, joined=True) <= joined + 1e-6
    assert lagrangian_travel(strings, dist, lines, joined=False) <= apart + 1e-6
    # a state space past the cap is refused, not approximated
    assert exact_travel(strings, dist, lines, max_states=1) is None


def _bass() -> GuitarSpec:
    spec = load_spec("bass-4")
    assert isinstance(spec, GuitarSpec)
    return spec


def _bass_line(seed: int, n: int) -> Score:
    rng = random.Random(seed)
    t = 0
    notes = []
    for _ in range(n):
        notes.append(Note(rng.randint(28, 60), t, 200_000, 80))
        t += rng.choice((250_000, 500_000))
    return Score(notes)


@pytest.mark.parametrize("seed", range(4))
def test_the_exact_bound_is_the_least_travel_the_bench_counts_over_every_fingering(seed: int) -> None:
    """On the bass spec: the bound over ``prepare``'s onsets equals path_travel (the
    bench's count) minimised over every fingering sequence, and the planner's own count
    of its moves is path_travel of its fingering, at or above the bound."""
    spec = _bass()
    layout = Layout(spec)
    score = _bass_line(seed, 7)
    onsets = bound_onsets(spec, score)
    choices = [[fg for fg in itertools.product(*o) if len({s for s, _ in fg}) == len(fg)] for o in onsets]
    counts = [path_travel(layout, seq) for seq in itertools.product(*choices)]  # (frets, mm) each
    least_frets, least_mm = min(c[0] for c in counts), min(c[1] for c in counts)
    assert exact_travel(4, distances(layout, "frets"), [onsets]) == least_frets
    assert exact_travel(4, distances(layout, "mm"), [onsets]) == pytest.approx(least_mm, abs=1e-9)
    _, rep = plan_guitar(score, spec)
    assert isinstance(rep, GuitarPlanReport)
    assert not rep.drops
    raw, _ = prepare(spec, score)
    planned = [tuple(rep.fingering[sl.note] for sl in o.slots) for o in raw]
    frets, mm = path_travel(layout, planned)
    assert rep.fretter_travel_frets == frets
    assert rep.fretter_travel_mm == pytest.approx(mm, abs=1e-6)
    wide = bound_onsets(spec, score, octaves=True)
    assert exact_travel(4, distances(layout, "frets"), [wide]) <= frets
    assert exact_travel(4, distances(layout, "mm"), [wide]) <= mm + 1e-9


def test_octave_options_only_add_to_the_written_ones() -> None:
    spec = _bass()
    score = _bass_line(9, 20)
    written, wide = bound_onsets(spec, score), bound_onsets(spec, score, octaves=True)
    assert len(written) == len(wide)
    assert all(set(a) <= set(b) for o, w in zip(written, wide, strict=True) for a, b in zip(o, w, strict=True))
    assert any(set(a) < set(b) for o, w in zip(written, wide, strict=True) for a, b in zip(o, w, strict=True))
    # a skipped (dropped) note leaves its onset
    first = prepare(spec, score)[0][0].slots[0].note
    assert len(bound_onsets(spec, score, skip=[first])) == len(written) - 1


def test_distances_name_their_unit() -> None:
    layout = Layout(_bass())
    assert distances(layout, "frets")[0, 5] == 5.0
    assert distances(layout, "mm")[0, 1] == pytest.approx(layout.pos_mm[1])
    with pytest.raises(ValueError, match="'inches' is not 'frets' or 'mm'"):
        distances(layout, "inches")


@pytest.mark.parametrize("seed", range(6))
def test_the_price_per_octave_move_and_the_fewest_moves_bound_against_brute_force(seed: int) -> None:
    """With a price per note off the written options the DP is the least of travel +
    price x moves (brute force), and fewest_octaves never claims more moves than the
    fewest any fingering within the travel needs."""
    rng = random.Random(100 + seed)
    strings, frets = 3, 6
    dist = np.abs(np.arange(frets + 1.0)[:, None] - np.arange(frets + 1.0)[None, :])
    wide = _random_line(rng, strings, frets, rng.randint(3, 6))
    plain = [tuple(opts[:1] for opts in o) for o in wide]  # the first option is "written"
    plans = []  # (travel, moves) of every fingering sequence
    per_onset = [[fg for fg in itertools.product(*o) if len({s for s, _ in fg}) == len(fg)] for o in wide]
    for seq in itertools.product(*per_onset):
        car, total, moved = [0] * strings, 0.0, 0
        for fg, w in zip(seq, plain, strict=True):
            moved += sum(sf not in ws for sf, ws in zip(fg, w, strict=True))
            for s, f in fg:
                if f > 0:
                    total += dist[car[s], f]
                    car[s] = f
        plans.append((total, moved))
    for price in (0.5, 2.0, 7.0):
        want = min(t + price * k for t, k in plans)
        assert exact_travel(strings, dist, [wide], price=price, plain=[plain]) == pytest.approx(want)
    for within in sorted({t for t, _ in plans}):
        fewest = min(k for t, k in plans if t <= within)
        got = fewest_octaves(strings, dist, [wide], [plain], within, prices=(0.5, 1.0, 2.0, 4.0, 8.0))
        assert got is not None
        lower, found = got
        assert lower <= fewest
        if found is not None:  # a fingering with those moves and that travel exists
            assert found[1] <= within + 1e-6 and any(k == found[0] and t == pytest.approx(found[1]) for t, k in plans)

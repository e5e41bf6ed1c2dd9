"""The fingering search in C (``planner._fingering_c``) against the Python one: the same
choice and the same total, to the bit, on random pieces for every guitar spec, beam,
window and cost set the planner and the bench use; and ``search`` takes the C one when
it is built. Skipped where the extension was not built (no C compiler at install)."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player.planner import fingering
from robo_player.planner.fingering import Costs, Layout, Onset, _search_c, _search_py, search
from robo_player.planner.guitar import MATRIX_COSTS, prepare
from robo_player.score import Note, Score
from robo_player.spec.guitar import GuitarSpec
from robo_player.spec.guitar_loader import load_guitar_spec

pytestmark = pytest.mark.skipif(fingering._fingering_c is None, reason="the C search is not built")

SPECS = {n: load_guitar_spec(n) for n in ("guitar-slider", "guitar-matrix", "bass-4")}
MS = 1000
# the timing-free layout and travel-only costs of the bench's --floor
FLOOR = Costs(travel_ms_weight=0.0, fret_move_ms=20.0, change_ms=0.0, fret_ms=0.0, cut_ms_weight=0.0)


def _piece(rng: random.Random, spec: GuitarSpec, n: int) -> Score:
    """Melodies, repeated notes, chords of up to 6 notes, rests, out-of-range pitches; times
    off the ms grid now and then (so that some fall just either side of a fold limit)."""
    notes: list[Note] = []
    t = 0
    while len(notes) < n:
        t += rng.choice([0, 40, 60, 90, 125, 180, 250, 400, 900, 3000]) * MS + rng.choice([0, rng.randrange(MS)])
        width = rng.choice([1, 1, 1, 1, 2, 3, 4, 6])
        for _ in range(width):
            pitch = rng.randint(spec.lowest - 4, spec.lowest + 34)
            dur = rng.choice([20, 100, 125, 250, 500, 2000]) * MS + rng.randrange(MS)
            notes.append(Note(pitch, t, dur, rng.randint(1, 127)))
    return Score(notes)


def _same(layout: Layout, onsets: list[Onset], costs: Costs | None, beam: int, window: float) -> None:
    c_choice, c_total = _search_c(layout, onsets, costs, beam, window)
    p_choice, p_total = _search_py(layout, onsets, costs, beam, window)
    assert c_choice == p_choice
    assert c_total == p_total  # exactly: the same sums in the same order


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("seed", range(6))
def test_c_search_equals_python(name: str, seed: int) -> None:
    rng = random.Random(seed * 31 + len(name))
    # the damper's lift: the default (8 ms), none, or the spec's most (100 ms: slower
    # than a fret's settle and a short carriage move, so it sets those changeovers)
    lift = (None, 0, 100_000)[seed // 2 % 3]
    spec = replace(SPECS[name], timing=replace(SPECS[name].timing, damper_lift_us=lift))
    # odd seeds: a calibration (every picker, a random settle per fret contact): the
    # changeovers count back from the sound, each contact with its own settle
    roles = [a.role for a in spec.actuators if a.role.startswith(("press:", "fret:"))]
    cal = SimpleNamespace(pickers={s: None for s in range(len(spec.strings))},
                          settle_us={r: rng.randint(8_000, 32_000) for r in roles})  # fmt: skip
    layout = Layout(spec, cal if seed % 2 else None)
    size = rng.choice([5, 40, 300])
    score = _piece(rng, spec, size)
    policy = "drop" if seed % 3 == 2 else "transpose"
    onsets, _ = prepare(spec, score, policy)
    assert any(len(o.slots) > 1 for o in onsets) or len(onsets) < 10
    costs = MATRIX_COSTS if name == "guitar-matrix" and seed % 2 else (None if seed % 2 else
                                                                      Costs(cut_note_ms=30.0, fret_move_ms=1.5))
    for beam in (1, 2, 8, 16, 0 if size == 5 else 64):  # 0: no beam (every state kept)
        for window in (math.inf, 2300.0, 300.0, 25.0):  # 2300: plan_guitar's (WINDOW + transpose_ms)
            _same(layout, onsets, costs, beam, window)
    # a felt slower than every carriage move (past the spec's range: the two searches
    # must agree on the rule, whatever the layout)
    layout.lift_us = 300_000
    for beam in (1, 8):
        _same(layout, onsets, costs, beam, 2300.0)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, Score, str, int, float, int | None]:
    """A spec, a short piece (chords, repeats, rests, off-grid times), a policy, a beam, a
    window, a damper lift (None: the default)."""
    name = draw(st.sampled_from(sorted(SPECS)))
    spec = SPECS[name]
    notes: list[Note] = []
    t = 0
    for _ in range(draw(st.integers(1, 30))):
        t += draw(st.sampled_from([0, 0, 40, 90, 125, 250, 900])) * MS + draw(st.sampled_from([0, 1, 999]))
        pitch = draw(st.integers(spec.lowest - 3, spec.lowest + 32))
        dur = draw(st.sampled_from([30, 125, 250, 2000])) * MS
        notes.append(Note(pitch, t, dur, draw(st.integers(1, 127))))
    return (name, Score(notes), draw(st.sampled_from(["transpose", "drop"])), draw(st.sampled_from([1, 2, 3, 8])),
            draw(st.sampled_from([math.inf, 2300.0, 300.0, 10.0])),
            draw(st.sampled_from([None, 0, 20_000, 100_000])))  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(cases())
def test_c_search_equals_python_property(case: tuple[str, Score, str, int, float, int | None]) -> None:
    name, score, policy, beam, window, lift = case
    spec = replace(SPECS[name], timing=replace(SPECS[name].timing, damper_lift_us=lift))
    onsets, _ = prepare(spec, score, policy)
    _same(Layout(spec), onsets, MATRIX_COSTS if name == "guitar-matrix" else None, beam, window)


def test_c_search_equals_python_on_the_floor_layout() -> None:
    """The bench's travel floor: a layout with its timing zeroed and unit moves."""
    spec = SPECS["guitar-slider"]
    free = Layout(spec)
    for a in ("damp_us", "release_us", "settle_us", "min_sound_us", "min_repeat_us", "lift_us"):
        setattr(free, a, 0)
    n = free.frets + 1
    free.settle_at = [[0] * n for _ in range(free.strings)]
    free.move_us = [[[1 if a != b else 0 for b in range(n)] for a in range(n)] for _ in range(free.strings)]
    rng = random.Random(5)
    onsets, _ = prepare(spec, _piece(rng, spec, 400))
    for beam in (8, 64):
        _same(free, onsets, FLOOR, beam, math.inf)


def test_search_runs_the_c_one_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SPECS["guitar-slider"]
    layout = Layout(spec)
    onsets, _ = prepare(spec, _piece(random.Random(2), spec, 50))
    calls: list[int] = []
    real = fingering._search_c

    def spy(*args: object, **kw: object) -> tuple[list[int], float]:
        calls.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(fingering, "_search_c", spy)
    assert search(layout, onsets) == _search_py(layout, onsets)
    assert calls == [1]
    assert fingering._fingering_c.NEG == fingering.NEG
    assert fingering._fingering_c.FOLDED == fingering.FOLDED


def test_c_search_refuses_a_bad_fingering() -> None:
    """A (string, fret) outside the layout is an error naming the onset, not a crash."""
    spec = SPECS["guitar-slider"]
    layout = Layout(spec)
    onsets, _ = prepare(spec, Score([Note(spec.lowest + 5, 0, 100 * MS, 80)]))
    bad = [Onset(onsets[0].slots, ((( layout.strings, 1),),))]
    with pytest.raises(ValueError, match="onset 0"):
        _search_c(layout, bad)
    bad = [Onset(onsets[0].slots, (((0, layout.frets + 1),),))]
    with pytest.raises(ValueError, match="out of range"):
        _search_c(layout, bad)


def test_pure_python_by_environment() -> None:
    """``ROBO_PLAYER_PURE_PYTHON=1``: the C search is not loaded, ``search`` runs in Python."""
    probe = "from robo_player.planner import fingering; print(fingering._fingering_c is None)"
    for env, want in (({"ROBO_PLAYER_PURE_PYTHON": "1"}, "True"), ({}, "False")):
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              env={**{k: v for k, v in os.environ.items() if k != "ROBO_PLAYER_PURE_PYTHON"},
                                   **env})  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == want


def test_a_build_older_than_its_source_is_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module carries its source's SHA-256: an editable install whose ``.c`` changed
    since its build warns and runs the Python search rather than the stale C one."""
    assert fingering._load_c() is fingering._fingering_c
    monkeypatch.setattr(fingering._fingering_c, "SOURCE_SHA256", "0" * 64)
    with pytest.warns(UserWarning, match="pip install -e"):
        assert fingering._load_c() is None

"""The one heard-to-intended matcher, and that the report, piano roll and calibrator use it."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robo_player import calibrator, matching, report
from robo_player.matching import ONSET_WINDOW, Window, match_onsets


def test_pairs_same_pitch_nearest_in_window() -> None:
    intended = [(1_000_000, 60), (1_000_000, 64), (2_000_000, 60)]
    heard = [(1_000_300, 64), (999_500, 60), (1_079_000, 60), (2_081_000, 60), (1_500_000, 67)]
    assert match_onsets(intended, heard) == {0: 1, 1: 0}  # 2_081_000 is 81 ms late: outside


def test_one_to_one_and_earlier_note_first() -> None:
    # two notes of one key 100 ms apart, one onset between them: the earlier note takes it
    assert match_onsets([(0, 60), (100_000, 60)], [(50_000, 60)]) == {0: 0}
    # two onsets, two notes: each its nearest
    assert match_onsets([(0, 60), (100_000, 60)], [(101_000, 60), (2_000, 60)]) == {0: 1, 1: 0}


def test_ties_take_the_earlier_onset() -> None:
    assert match_onsets([(0, 60)], [(10, 60), (-10, 60)]) == {0: 1}


def test_asymmetric_window() -> None:
    w = Window(before_us=600, after_us=405_000)
    assert match_onsets([(0, 60)], [(-700, 60)], w) == {}
    assert match_onsets([(0, 60)], [(-500, 60)], w) == {0: 0}
    assert match_onsets([(0, 60)], [(405_000, 60)], w) == {0: 0}
    assert match_onsets([(0, 60)], [(405_001, 60)], w) == {}


def test_window_is_documented_and_checked() -> None:
    assert ONSET_WINDOW == Window(80_000, 80_000)
    assert "80 ms" in (matching.__doc__ or "")
    with pytest.raises(ValueError, match="before_us -1"):
        Window(-1, 5)


@given(
    st.lists(st.tuples(st.integers(0, 2_000_000), st.integers(60, 63)), max_size=30),
    st.lists(st.tuples(st.integers(0, 2_000_000), st.integers(60, 63)), max_size=30),
    st.integers(0, 200_000),
)
def test_pairs_are_valid(
    intended: list[tuple[int, int]], heard: list[tuple[int, int]], w: int
) -> None:
    pairs = match_onsets(intended, heard, Window(w, w))
    assert len(set(pairs.values())) == len(pairs)  # one-to-one
    for i, j in pairs.items():
        assert intended[i][1] == heard[j][1]
        assert abs(heard[j][0] - intended[i][0]) <= w
    # maximal: no unpaired note has an unpaired onset of its pitch in its window
    free = set(range(len(heard))) - set(pairs.values())
    for i, (t, p) in enumerate(intended):
        if i not in pairs:
            assert not any(heard[j][1] == p and abs(heard[j][0] - t) <= w for j in free)


def test_every_user_calls_the_one_matcher() -> None:
    from robo_player.sim import pianoroll

    for mod in (report, pianoroll, calibrator.strikes):
        src = inspect.getsource(mod)
        assert "match_onsets" in src, mod.__name__
        assert "bisect" not in src, mod.__name__  # no private copy of the search

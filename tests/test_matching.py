"""The one heard-to-intended matcher, and that the report, piano roll and calibrator use it."""

from __future__ import annotations

import inspect
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robo_player import calibrator, matching, report
from robo_player.matching import ONSET_WINDOW, Window, match_onsets
from robo_player.performance import HeardNote
from robo_player.plan import Op
from robo_player.planner import PlanOptions, plan
from robo_player.score import Note, Score
from robo_player.spec import load_spec


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


def test_an_onset_too_soon_after_a_strike_is_not_its_sound() -> None:
    # Chopin's étude op. 25/8 on piano-61-diy, uncalibrated: a C#5 struck every 290 ms,
    # planned with latency 82 ms, sounds 309 ms after each strike (near the key's silent
    # threshold). Each onset then lies 63 ms before the *next* note's target, 19 ms after
    # its strike: by the window alone the next note takes it (a false "heard").
    lat, gap, real = 82_000, 290_000, 309_000
    strikes = [k * gap for k in range(4)]
    intended = [(s + lat, 73) for s in strikes]
    heard = [(s + real, 73) for s in strikes]
    assert match_onsets(intended, heard) == {1: 0, 2: 1, 3: 2}  # the window alone
    assert match_onsets(intended, heard, strikes=strikes) == {}  # every strike late: unheard
    # a note's own onset, early by up to two thirds of its latency, is still its own
    share = matching.MIN_LATENCY_SHARE
    edge = strikes[1] + math.ceil(lat * share)
    assert match_onsets(intended, [(edge, 73)], strikes=strikes) == {1: 0}
    assert match_onsets(intended, [(edge - 1, 73)], strikes=strikes) == {}


def test_never_an_onset_before_its_strike() -> None:
    # a full-drive strike (latency 20 ms): the ±80 ms window reaches 60 ms before it
    assert match_onsets([(20_000, 60)], [(-30_000, 60)]) == {0: 0}
    assert match_onsets([(20_000, 60)], [(-30_000, 60)], strikes=[0]) == {}
    assert match_onsets([(20_000, 60)], [(6_667, 60)], strikes=[0]) == {0: 0}
    # unknown strikes (None) keep the window alone; the lengths must agree
    assert match_onsets([(20_000, 60)], [(-30_000, 60)], strikes=[None]) == {0: 0}
    with pytest.raises(ValueError, match="1 strikes for 2 intended"):
        match_onsets([(0, 60), (1, 60)], [], strikes=[0])


@given(
    st.lists(st.tuples(st.integers(0, 2_000_000), st.integers(0, 300_000), st.integers(60, 62)), max_size=25),
    st.lists(st.tuples(st.integers(0, 2_400_000), st.integers(60, 62)), max_size=25),
)
def test_causal_pairs_are_valid(notes: list[tuple[int, int, int]], heard: list[tuple[int, int]]) -> None:
    intended = [(s + lat, p) for s, lat, p in notes]
    strikes = [s for s, _lat, _p in notes]
    pairs = match_onsets(intended, heard, strikes=strikes)
    assert len(set(pairs.values())) == len(pairs)
    for i, j in pairs.items():
        s, lat, p = notes[i]
        assert heard[j][1] == p and abs(heard[j][0] - intended[i][0]) <= 80_000
        assert heard[j][0] - s >= lat * matching.MIN_LATENCY_SHARE  # never sooner than a third
    # maximal: no unpaired note has an unpaired onset it could own
    free = set(range(len(heard))) - set(pairs.values())
    for i, (s, lat, p) in enumerate(notes):
        if i not in pairs:
            assert not any(
                heard[j][1] == p and abs(heard[j][0] - intended[i][0]) <= 80_000
                and heard[j][0] - s >= lat * matching.MIN_LATENCY_SHARE
                for j in free
            )


def test_the_report_passes_the_plans_strike_times() -> None:
    spec = load_spec("piano-61-diy")
    notes = [Note(onset_us=k * 200_000, duration_us=100_000, pitch=60 + k % 3, velocity=40 + 10 * k)
             for k in range(8)]  # fmt: skip
    p, rep = plan(Score(notes=notes), spec, None, PlanOptions())
    strike = {c.note: c.t_us for c in reversed(p.commands) if c.op is Op.PULSE_HOLD}
    assert [o.strike_t_us for o in rep.outcomes] == [strike[o.index] for o in rep.outcomes]
    # an onset 1 ms after each strike (before a third of its latency): unheard
    early = [HeardNote(t_us=o.strike_t_us + 1_000, pitch=o.pitch_out, velocity=40.0)
             for o in rep.outcomes if o.strike_t_us is not None]  # fmt: skip
    assert report.match_heard(rep.outcomes, early) == {}
    on_time = [HeardNote(t_us=o.target_t_us, pitch=o.pitch_out, velocity=40.0) for o in rep.outcomes]
    assert set(report.match_heard(rep.outcomes, on_time)) == {o.index for o in rep.outcomes}


def test_the_piano_roll_applies_the_causality_rule_with_strike_times() -> None:
    from robo_player.sim.pianoroll import _match_errors

    # a re-strike at 80 ms aimed at 100 ms (latency 20 ms); the onset at 82 ms is the
    # first strike's late sound, 2 ms after the new strike: too soon to be its sound
    intended = [(0, 60, 50_000, 50.0), (100_000, 60, 50_000, 80.0)]
    heard = [HeardNote(t_us=82_000, pitch=60, velocity=50.0)]
    assert _match_errors(intended, heard) == [-30.0]  # without strike times: a false pair
    assert _match_errors(intended, heard, strikes=[-20_000, 80_000]) == [None]


def test_live_latencies_pair_as_the_report_does() -> None:
    from types import SimpleNamespace

    from robo_player.live.measure import latencies, live_plan_report
    from robo_player.live.session import Arrival
    from robo_player.performance import Performance

    # two notes on one key, each struck 20 ms before it sounds, 60 ms apart; heard: the
    # first late (its onset lands 2 ms after the second's strike), then the second on time
    arrivals = [Arrival(0, 60, 70, "on_time", note=0), Arrival(60_000, 60, 70, "on_time", note=1)]
    planner = SimpleNamespace(
        stats=SimpleNamespace(delays_us=[30_000, 30_000]), played={0: (70, 20_000), 1: (70, 20_000)},
        pitch_of={0: 60, 1: 60}, spec=SimpleNamespace(name="x"), calibrated=False,
        supply_overloads=lambda: 0, latency_us=30_000, options=SimpleNamespace(mode=SimpleNamespace(value="fixed")),
    )  # fmt: skip
    session = SimpleNamespace(arrivals=arrivals)
    perf = Performance(heard=[HeardNote(72_000, 60, 70.0), HeardNote(90_000, 60, 70.0)])
    m = latencies(perf, session, planner)  # type: ignore[arg-type]
    # the onset at 72 ms is 2 ms after the second strike (70 ms): not its sound, and
    # 42 ms after the first note's time (outside 30 ms): unpaired; 90 ms is the second's
    assert [(x.t_us, x.latency_us) for x in m] == [(60_000, 30_000)]
    # the second unheard: the first's late onset is no measure of it
    assert latencies(Performance(heard=perf.heard[:1]), session, planner) == []  # type: ignore[arg-type]
    rep = live_plan_report(session, planner)  # type: ignore[arg-type]
    assert [o.strike_t_us for o in rep.outcomes] == [10_000, 70_000]

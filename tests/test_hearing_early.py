"""Hearing (issue 11, session 32, early soft notes): a soft key struck 31 ms after another
key over a quiet background. The other key's strike (its hammer's thump, its fundamental on
our 5th partial, through the spectrogram's 46 ms window) lifts every partial of ours: a
candidate there with every partial risen, and the new share's 85 ms windows cannot tell it
from our strike 31 ms later (its window after holds our strike). The plan-known search took
the larger share, the early one; with the plan's time breaking a near tie (``PLAN_TIE_X``)
it takes the candidate nearer the plan. The take is composed for the test (no corpus
notes); Beethoven op. 31/3's first chord (ASAP Avdeeva01: C5 v42, then A-flat2 v28 31 ms
later) is the case (docs/hearing.md, "Session 32, early soft notes")."""

from __future__ import annotations

from functools import cache

import pytest

from robo_player.hearing import detector as dm
from robo_player.hearing.detector import Detector
from robo_player.performance import HeardNote
from robo_player.sim.audio import render_audio, render_audio_rich
from robo_player.sim.room import Room, RoomTake

OFFSET_S = 0.2
LEAD_S = 0.1  # the take's first note this long after the recording's start
WINDOW_S = 0.08  # the plan-known search window, either side (the bench's)
HOLD_S = 0.8  # each note sounds this long
LOUD, SOFT = (0.0, 72, 42), (0.031, 44, 28)  # (s, key, velocity): the soft key 31 ms after
RENDERS = {"rich": render_audio_rich, "plain": render_audio}


@cache
def _detector(voice: str) -> Detector:
    heard = [HeardNote(int((t + LEAD_S) * 1e6), p, float(v), int((t + LEAD_S + HOLD_S) * 1e6)) for t, p, v in (LOUD, SOFT)]
    y = RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0), heard, [], 0, render=RENDERS[voice]).samples()
    return Detector(y, 48000)


def _soft_heard(voice: str, soft_plan_s: float) -> list[float]:
    """The soft key's onsets (ms from its strike) with the plan saying it was struck at
    ``soft_plan_s`` (s, the take's clock as LOUD's and SOFT's)."""
    det = _detector(voice)
    plan = [(LOUD[0] + LEAD_S + OFFSET_S, LOUD[1]), (soft_plan_s + LEAD_S + OFFSET_S, SOFT[1])]
    t = SOFT[0] + LEAD_S + OFFSET_S
    ons = det.detect_intended(plan, WINDOW_S, WINDOW_S, [], informed=True)
    return [(o.t_s - t) * 1e3 for o in ons if o.pitch == SOFT[1] and abs(o.t_s - t) <= 0.1]


@pytest.mark.parametrize("voice", ["rich", "plain"])
def test_a_soft_key_struck_after_another_is_heard_at_its_strike(voice: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # measured: rich -0.9 ms, plain -3.8 ms (the rule off: -31.6 and -31.8, on the loud key's strike)
    assert dm.PLAN_TIE_X is not None
    got = _soft_heard(voice, SOFT[0])
    assert len(got) == 1 and abs(got[0]) < 6.0, got
    monkeypatch.setattr(dm, "PLAN_TIE_X", None)
    got = _soft_heard(voice, SOFT[0])
    assert len(got) == 1 and got[0] < -20.0, got


@pytest.mark.parametrize("late_s", [0.012, 0.031])
def test_the_plan_breaks_a_tie_and_does_not_pull_the_onset(late_s: float) -> None:
    # the plan 12 or 31 ms after the soft key's real strike: heard at its strike (-0.9 ms),
    # not at a later time nearer the plan (no candidate there passes the owner test)
    got = _soft_heard("rich", SOFT[0] + late_s)
    assert len(got) == 1 and abs(got[0]) < 6.0, got


def test_plan_tie_cases() -> None:
    assert dm.PLAN_TIE_X is not None
    x, near = dm.PLAN_TIE_X, dm.PLAN_TIE_NEARER_S
    best = (100.0, 0.970, 20.0)  # (share, coarse onset, rise): 30 ms before the plan's 1.0
    later = (100.0 * x + 1.0, 1.002, 10.0)
    assert Detector._plan_tie(best, [best, later], 1.0) == later
    # a share under PLAN_TIE_X x the largest's: the largest stays
    assert Detector._plan_tie(best, [best, (100.0 * x - 1.0, 1.002, 10.0)], 1.0) == best
    # nearer the plan by under PLAN_TIE_NEARER_S: the largest stays
    close = (99.0, 1.0 - 0.030 + near / 2, 10.0)
    assert Detector._plan_tie(best, [best, close], 1.0) == best
    # of several, the nearest the plan
    nearer = (80.0, 0.999, 8.0)
    assert Detector._plan_tie(best, [best, later, nearer], 1.0) == nearer

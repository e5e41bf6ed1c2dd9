"""Hearing (issue 11, session 23): the quick detector of an ear that has fallen behind.

A :class:`Detector` made with ``quick=True`` runs the plan-known search without its step
fits (the bass and upper retimes' :meth:`Detector._step_elsewhere`, the complex rescue);
the live ear in its own thread decides with one when a step's audio waited HURRY_S or
more for it (tests/test_live_audio.py holds the ear's side). The take here is composed
for the test (no corpus notes)."""

from __future__ import annotations

import pytest

from robo_player.hearing import detector as dm
from robo_player.hearing.detector import Detector
from robo_player.performance import HeardNote
from robo_player.sim.audio import render_audio_rich
from robo_player.sim.room import Room, RoomTake

OFFSET_S = 0.2
LEAD_S = 0.1
WINDOW_S = 0.08
# (s, key, velocity), every note held 3 s (a pedal): a bass G2 under a loud G4, then
# D4, B3, the D4 again soft while it rings, a soft bass G2 again, E4: soft strikes among
# ringing keys, where the retimes and the complex rescue are asked
NOTES = [(0.0, 43, 70), (0.003, 67, 85), (0.3, 62, 60), (0.55, 59, 45), (0.8, 62, 24),
         (1.05, 43, 30), (1.3, 64, 50)]


@pytest.fixture(scope="module")
def take() -> tuple[object, list[tuple[float, int]]]:
    heard = [HeardNote(int((t + LEAD_S) * 1e6), p, float(v), int((t + LEAD_S + 3.0) * 1e6)) for t, p, v in NOTES]
    y = RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0), heard, [], 0, render=render_audio_rich).samples()
    return y, sorted((t + LEAD_S + OFFSET_S, p) for t, p, _ in NOTES)


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the step fits the detector asks for (the retimes' and the complex rescue's)."""
    calls = {"retime": 0, "complex": 0}
    step_check, complex_step = dm.step_check, Detector.complex_step

    def counted_check(*a, **k):  # noqa: ANN002, ANN003, ANN202
        calls["retime"] += 1
        return step_check(*a, **k)

    def counted_complex(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls["complex"] += 1
        return complex_step(self, *a, **k)

    monkeypatch.setattr(dm, "step_check", counted_check)
    monkeypatch.setattr(Detector, "complex_step", counted_complex)
    return calls


def test_the_full_detector_asks_the_step_fits(take, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    # the take exercises them: without this the next test could not fail
    y, plan = take
    calls = _counting(monkeypatch)
    Detector(y, 48000).detect_intended(plan, WINDOW_S, WINDOW_S, [])
    assert calls["retime"] > 0 and calls["complex"] > 0


def test_a_quick_detector_asks_no_step_fit(take, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    y, plan = take
    calls = _counting(monkeypatch)
    quick = Detector(y, 48000, quick=True).detect_intended(plan, WINDOW_S, WINDOW_S, [])
    assert calls == {"retime": 0, "complex": 0}
    # still the plan-known search: every loud note heard within 20 ms of its strike
    for t, p, v in NOTES:
        if v >= 45:
            assert any(o.pitch == p and abs(o.t_s - (t + LEAD_S + OFFSET_S)) < 0.02 for o in quick), (t, p)

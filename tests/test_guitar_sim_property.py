"""Planned pieces, played on the simulator, hold the guitar's physical rules: no buzz,
no pick while a carriage moves, no presser down while its carriage moves, nothing left
on, and every note the plan kept is heard (hypothesis: random short pieces)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robo_player.driver import open_port
from robo_player.planner import plan
from robo_player.report import build_report
from robo_player.score import Note, Score
from robo_player.spec import load_spec

SPECS = {n: load_spec(n) for n in ("guitar-matrix", "guitar-slider", "guitar-slider-servo", "bass-4")}


@st.composite
def pieces(draw: Any, lo: int, hi: int) -> Score:
    n = draw(st.integers(1, 14))
    t = 0
    notes = []
    for _ in range(n):
        t += draw(st.sampled_from([0, 120_000, 180_000, 250_000, 400_000, 800_000]))
        dur = draw(st.sampled_from([60_000, 150_000, 240_000, 500_000]))
        notes.append(Note(draw(st.integers(lo, hi)), t, dur, draw(st.integers(30, 120))))
    notes.sort(key=lambda x: (x.onset_us, x.pitch))
    # one note per pitch and onset (a score does not double a note)
    seen, out = set(), []
    for x in notes:
        if (x.pitch, x.onset_us) not in seen:
            seen.add((x.pitch, x.onset_us))
            out.append(x)
    return Score(out)


@pytest.mark.parametrize("calibrated", [False, True], ids=["nominal", "calibrated"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_planned_pieces_obey_the_instrument(name: str, calibrated: bool) -> None:
    """With the nominal curves, and calibrated (on truth seed 7: each picker fires at its
    own latency, no longer all at the nominal one, and with the fret contacts measured
    the changeovers count back from the picks' expected sound, less the margin)."""
    spec = SPECS[name]
    cal = None
    if calibrated:
        from robo_player.calibrator.guitar import calibrate_guitar

        with open_port("sim://", spec, truth_seed=7) as dev:
            cal, _ = calibrate_guitar(dev, spec)

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(pieces(spec.lowest, spec.lowest + 24), st.integers(0, 50))
    def check(score: Score, seed: int) -> None:
        if cal is not None:
            seed = 7
        the_plan, rep = plan(score, spec, cal)
        with open_port("sim://", spec, truth_seed=seed) as dev:
            perf = dev.play(the_plan)
            assert dev.energised() == []
        r = build_report(plan_report=rep, performance=perf, piece="p", spec=spec, port="sim://")
        assert r["buzzed_notes"] == 0
        assert r["carriage_faults"] == 0 and r["moving_picks"] == 0
        assert r["damped_picks"] == 0 and r["silent_picks"] == 0
        assert r["slurred_notes"] == 0, r["slurs"]  # no fret lifted or pressed on a ringing string
        assert r["notes_unheard"] == 0, r["unheard"]
        assert r["fretter_travel_frets"] == r["plan"]["fretter_travel_frets"]

    check()

"""Hearing (issue 11, session 20): the informed stage's timing of a planned key whose
salience's largest rise in the search window is another strike's (``INFORMED_NEAR``,
:meth:`Detector._informed_near`; docs/hearing.md, "The detector")."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from asap_excerpt import asap_excerpt

from robo_player.calibrator import calibrate_session
from robo_player.driver import open_port
from robo_player.hearing import detector as dm
from robo_player.hearing.detector import Detector
from robo_player.planner.piano import plan_piano
from robo_player.planner.report import Fate
from robo_player.score import Score
from robo_player.spec import load_spec

OFFSET_S = 0.1
# 1.5 s of the tuning row ASAP Bach Prelude bwv 856 (LuoJ01M) from 6.4 s after its first
# note, read from the corpus at run time (tests/asap_excerpt.py; skipped without it). E3
# and F3 alternate under a B4/C5 figure; the fourth E3 (1.32 s), struck while its strike
# 0.18 s before rings, 83 ms after an F3 and 103 ms before the next, rises little: its
# salience's largest rises in the window are the F3s'
EXCERPT = ("Bach/Prelude/bwv_856/LuoJ01M.mid", 1.5, 6.4)
E3_KEY = 52


def _score(without_e3: bool = False) -> Score:
    """The excerpt, or without its fourth E3."""
    score = asap_excerpt(*EXCERPT)
    e3 = sorted(n.onset_us for n in score.notes if n.pitch == E3_KEY)[3]
    if not without_e3:
        return score
    return replace(score, notes=[n for n in score.notes if (n.onset_us, n.pitch) != (e3, E3_KEY)])


Takes = dict[str, tuple[Detector, list[tuple[float, int]], float, list[float]]]


def _takes() -> Takes:
    """Per take ("struck": the excerpt; "fake": without the E3, which the plan still has):
    its detector, the plan on the audio clock, the E3's planned time, the E3s sounded."""
    spec = load_spec("piano-88-grand")
    with open_port("sim://?sensor=notes", spec, truth_seed=1) as dev:
        cal, _ = calibrate_session(dev, spec)
    _, report = plan_piano(_score(), spec, cal)
    plan = [(o.target_t_us * 1e-6 + OFFSET_S, int(o.pitch_out)) for o in report.outcomes
            if o.fate is not Fate.DROPPED and o.pitch_out is not None]
    t_e3 = sorted(t for t, p in plan if p == E3_KEY)[3]  # the fourth E3 planned
    out = {}
    for name, score in (("struck", _score()), ("fake", _score(without_e3=True))):
        p, _ = plan_piano(score, spec, cal)
        url = f"sim://?sensor=audio&offset_s={OFFSET_S}&drift_ppm=0&voice=rich"
        with open_port(url, spec, truth_seed=1, timing_sd_us=0, loudness_sd=0) as dev:
            perf = dev.play(p)
        assert perf.audio is not None
        sounded = [h.t_us * 1e-6 + OFFSET_S for h in perf.heard if h.pitch == E3_KEY]
        out[name] = (Detector(perf.audio.samples(), perf.audio.sample_rate), plan, t_e3, sounded)
    return out


@pytest.fixture(scope="module")
def takes() -> Iterator[Takes]:
    yield _takes()


def _heard(det: Detector, plan: list[tuple[float, int]], t: float) -> list[float]:
    """The onsets (s from the E3's planned time) the plan-known detector reports for E3
    in its search window."""
    return [o.t_s - t for o in det.detect_intended(plan, 0.08, 0.08, []) if o.pitch == E3_KEY and abs(o.t_s - t) <= 0.08]


def test_a_key_struck_between_a_semitones_strikes_is_timed_at_its_own_small_rise(takes) -> None:  # noqa: ANN001
    det, plan, t, sounded = takes["struck"]
    struck = min(sounded, key=lambda u: abs(u - t))
    assert abs(struck - t) < 0.02  # (the calibrated plan's time)
    assert any(abs(t + e - struck) < 0.02 for e in _heard(det, plan, t))


def test_without_the_near_rise_rule_the_key_goes_unheard(takes, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(dm, "INFORMED_NEAR", False)
    det, plan, t, sounded = takes["struck"]
    struck = min(sounded, key=lambda u: abs(u - t))
    assert not any(abs(t + e - struck) < 0.02 for e in _heard(Detector(det.y, det.sr), plan, t))


def test_the_key_planned_and_not_struck_stays_unheard(takes) -> None:  # noqa: ANN001
    det, plan, t, sounded = takes["fake"]
    assert not any(abs(u - t) < 0.15 for u in sounded)
    assert _heard(det, plan, t) == []

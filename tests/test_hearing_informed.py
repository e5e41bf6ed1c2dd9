"""Hearing (issue 11, session 20): the informed stage's timing of a planned key whose
salience's largest rise in the search window is another strike's (``INFORMED_NEAR``,
:meth:`Detector._informed_near`; docs/hearing.md, "The detector")."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from robo_player.calibrator import calibrate_session
from robo_player.driver import open_port
from robo_player.hearing import detector as dm
from robo_player.hearing.detector import Detector
from robo_player.planner.piano import plan_piano
from robo_player.planner.report import Fate
from robo_player.score import Note, PedalEvent, Score
from robo_player.spec import load_spec

OFFSET_S = 0.1
# 1.5 s of the tuning row ASAP Bach Prelude bwv 856 (LuoJ01M) from 6.4 s: (onset us, key,
# velocity, duration us) and the pedal's (us, value). E3 and F3 alternate under a B4/C5
# figure; the fourth E3 (1.32 s), struck while its strike 0.18 s before rings, 83 ms after
# an F3 and 103 ms before the next, rises little: its salience's largest rises in the
# window are the F3s'
NOTES = [(57292, 71, 65, 69792), (127084, 72, 69, 53125), (146875, 43, 62, 137500), (198959, 71, 63, 71875),
         (262500, 72, 65, 62500), (280209, 47, 62, 103125), (333334, 71, 61, 79166), (391667, 50, 69, 90625),
         (401042, 72, 66, 47917), (475000, 71, 62, 68750), (501042, 53, 69, 119792), (531250, 72, 68, 52084),
         (606250, 71, 60, 76042), (610417, 52, 65, 83333), (697917, 69, 62, 72917), (701042, 50, 54, 38542),
         (759375, 71, 67, 105209), (857292, 50, 65, 82292), (873959, 72, 79, 132291), (957292, 52, 61, 64583),
         (1010417, 67, 69, 113542), (1052084, 53, 56, 87500), (1126042, 64, 78, 119792), (1139584, 52, 59, 76041),
         (1237500, 53, 54, 90625), (1255209, 62, 74, 129166), (1320834, 52, 57, 68750), (1384375, 64, 78, 97917),
         (1423959, 53, 55, 76041), (1496875, 52, 54, 3125)]
PEDAL = [(0, 52), (198959, 51), (295834, 52), (1320834, 51)]
E3 = (1320834, 52)


def _score(without: tuple[int, int] | None = None) -> Score:
    return Score(notes=[Note(p, t, d, v) for t, p, v, d in NOTES if (t, p) != without],
                 pedal=[PedalEvent(t, v) for t, v in PEDAL])


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
    t_e3 = sorted(t for t, p in plan if p == E3[1])[3]  # the fourth E3 planned
    out = {}
    for name, score in (("struck", _score()), ("fake", _score(E3))):
        p, _ = plan_piano(score, spec, cal)
        url = f"sim://?sensor=audio&offset_s={OFFSET_S}&drift_ppm=0&voice=rich"
        with open_port(url, spec, truth_seed=1, timing_sd_us=0, loudness_sd=0) as dev:
            perf = dev.play(p)
        assert perf.audio is not None
        sounded = [h.t_us * 1e-6 + OFFSET_S for h in perf.heard if h.pitch == E3[1]]
        out[name] = (Detector(perf.audio.samples(), perf.audio.sample_rate), plan, t_e3, sounded)
    return out


@pytest.fixture(scope="module")
def takes() -> Iterator[Takes]:
    yield _takes()


def _heard(det: Detector, plan: list[tuple[float, int]], t: float) -> list[float]:
    """The onsets (s from the E3's planned time) the plan-known detector reports for E3
    in its search window."""
    return [o.t_s - t for o in det.detect_intended(plan, 0.08, 0.08, []) if o.pitch == E3[1] and abs(o.t_s - t) <= 0.08]


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

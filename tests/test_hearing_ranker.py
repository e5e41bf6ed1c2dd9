"""The plan-known search's learned choice (robo_player/hearing/ranker.py): the shipped
weights match the features the detector computes, a file that does not is refused, and
the choice hears a planned note where the hand-built one took a later sound."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robo_player.errors import HearingError
from robo_player.hearing import detector as det_mod
from robo_player.hearing import ranker
from robo_player.hearing.detector import Detector
from robo_player.performance import HeardNote
from robo_player.sim.room import Room, RoomTake

OFFSET_S = 0.2


def _take(notes: list[HeardNote]) -> np.ndarray:
    return RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0), notes, [], 0).samples()  # type: ignore[arg-type]


def test_the_shipped_weights_match_the_features_in_count_and_order() -> None:
    text = ranker.WEIGHTS_PATH.read_text()
    d = json.loads(text)
    assert d["features"] == list(ranker.FEATURES)
    model = ranker.parse(text, "shipped")
    n = len(ranker.FEATURES)
    assert model.mean.shape == model.scale.shape == model.weights.shape == (n,)
    assert 0.0 < model.threshold < 1.0
    assert len(text) < 4096  # a few kB, remade by bench/train_detector_ranker.py


@pytest.mark.parametrize("change", ["order", "count", "scale", "threshold"])
def test_a_weights_file_that_does_not_fit_the_detector_is_refused(change: str) -> None:
    d = json.loads(ranker.WEIGHTS_PATH.read_text())
    if change == "order":
        d["features"] = d["features"][::-1]
    elif change == "count":
        d["features"], d["weights"] = d["features"][:-1], d["weights"][:-1]
    elif change == "scale":
        d["scale"][0] = 0.0
    else:
        d["threshold"] = 1.5
    with pytest.raises(HearingError, match="ranker.json: "):
        ranker.parse(json.dumps(d), "ranker.json")


def test_every_hypothesis_carries_every_feature_and_a_lone_note_is_heard_on_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(det_mod, "USE_RANKER", True)  # off by default (docs/hearing.md, session 15)
    notes = [HeardNote(300_000, 60, 70.0, 600_000), HeardNote(900_000, 64, 40.0, 1_200_000)]
    det = Detector(_take(notes), 48000)
    for h in notes:
        t = h.t_us / 1e6 + OFFSET_S
        hyps = det.planned_hypotheses(h.pitch, t - 0.08, t + 0.08)
        assert hyps and all(x.features.shape == (len(ranker.FEATURES),) for x in hyps)
        assert all(np.all(np.isfinite(x.features)) for x in hyps)
        o = det.find(h.pitch, t - 0.08, t + 0.08, planned=True)
        assert o is not None and abs(o.t_s - t) < 0.002, o

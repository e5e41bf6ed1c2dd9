"""A learned choice among the plan-known search's onset hypotheses (session 15).

For a planned note, :meth:`Detector.planned_hypotheses` gives every candidate of the
search (a local maximum of its salience's rise in the window) timed two ways: from the
plan-known midpoints (:meth:`Detector._planned_midpoint`) and from the candidate's own
frame (the centre of its steepest rise), each refined by the energy fit. A logistic
model over each hypothesis' features (:data:`FEATURES`, audio only: never the distance
to the intended time, so a late strike is not pulled onto the plan) gives the chance
that it is a sounded onset of this key within 20 ms; the most likely one is taken where
that chance is at least the model's threshold.

The weights are trained by ``bench/train_detector_ranker.py`` on rendered random pieces
that no bench row plays (other seeds, other truth pianos) and shipped as
``robo_player/data/detector_ranker.json`` (the features' names in order, their mean and
scale, the weights, the bias, the threshold); a test holds the file to
:data:`FEATURES`. docs/hearing.md has the measurements.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from ..errors import HearingError

# one row per hypothesis, in this order (Detector.planned_hypotheses computes them)
FEATURES = (
    "rise_db",  # the candidate's salience rise over 40 ms (dB)
    "risen",  # the fraction of the key's partials that rose 6 dB across it
    "log_share",  # log10 of its new sound in noise units (Detector.new_share; 0 -> 0)
    "share_rel",  # ... over the largest of the note's candidates
    "rise_rel",  # its rise less the largest of the note's candidates (dB)
    "risen_rel",  # its risen fraction less the largest of the note's candidates
    "passed",  # 1 where its new sound passes the owner test (>= MIN_NEW)
    "from_frame",  # 1: timed from the candidate's frame, 0: from the plan-known midpoints
    "mid_lag_ms",  # the midpoints' time less the frame's (ms, clipped to +-60)
    "fit_move_ms",  # the refined onset less the coarse one it started from (ms)
    "ref_frame_ms",  # the refined onset less the candidate's frame (ms, clipped to +-60)
    "agree",  # the fraction of the note's hypotheses refined within 3 ms of this one
    "n_cands",  # how many candidates the note has (log2(1 + n))
    "pitch",  # (key - 60) / 24
    "earlier_passed",  # passed candidates of the note before this one's frame (log2(1 + n))
    "frame_lag_ms",  # mid_lag_ms where timed from the frame, -mid_lag_ms where from the midpoints
)

WEIGHTS_PATH = Path(__file__).resolve().parent.parent / "data" / "detector_ranker.json"


@dataclass(frozen=True, slots=True)
class Ranker:
    """A logistic model over :data:`FEATURES` (standardised by ``mean`` and ``scale``)."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    weights: np.ndarray  # (F,)
    bias: float
    threshold: float  # the most likely hypothesis is heard where its chance is >= this

    def chance(self, x: np.ndarray) -> np.ndarray:
        """(H,) chance that each of ``x`` (H, F) hypotheses is a sounded onset within 20 ms."""
        z = (x - self.mean) / self.scale @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))

    def to_json(self) -> str:
        return json.dumps({
            "features": list(FEATURES),
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "weights": [round(float(v), 6) for v in self.weights],
            "bias": round(self.bias, 6),
            "threshold": round(self.threshold, 4),
        }, indent=1) + "\n"


def parse(text: str, where: str) -> Ranker:
    """A :class:`Ranker` from its JSON text, or a :class:`HearingError` naming ``where``
    and what is wrong (the features must be :data:`FEATURES`, in order)."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as err:
        raise HearingError(f"{where}: not JSON ({err})") from err
    if not isinstance(d, dict) or d.get("features") != list(FEATURES):
        got = d.get("features") if isinstance(d, dict) else None
        raise HearingError(f"{where}: features {got} are not the detector's {list(FEATURES)}")
    n = len(FEATURES)
    arrays = {}
    for k in ("mean", "scale", "weights"):
        a = np.asarray(d.get(k), dtype=np.float64)
        if a.shape != (n,) or not np.all(np.isfinite(a)):
            raise HearingError(f"{where}: {k} must be {n} finite numbers")
        arrays[k] = a
    if np.any(arrays["scale"] <= 0.0):
        raise HearingError(f"{where}: scale must be > 0")
    bias, thr = d.get("bias"), d.get("threshold")
    if not isinstance(bias, (int, float)) or not math.isfinite(bias):
        raise HearingError(f"{where}: bias {bias!r} is not a finite number")
    if not isinstance(thr, (int, float)) or not 0.0 < thr < 1.0:
        raise HearingError(f"{where}: threshold {thr!r} is not in (0, 1)")
    return Ranker(arrays["mean"], arrays["scale"], arrays["weights"], float(bias), float(thr))


@cache
def shipped() -> Ranker:
    """The shipped model (robo_player/data/detector_ranker.json)."""
    return parse(WEIGHTS_PATH.read_text(), str(WEIGHTS_PATH))

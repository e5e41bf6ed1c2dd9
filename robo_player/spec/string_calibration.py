"""Calibration of a guitar or bass: each picker's curves and each presser's settle time.

Written by ``robo-player calibrate --spec guitar-…`` (:mod:`robo_player.calibrator.guitar`),
read by the guitar planner (velocity -> pick drive and latency, per string). A picker's
curves are a :class:`~robo_player.spec.calibration.KeyCurve` (its ``pitch`` is the
string's open pitch), so pickers and piano keys share one table type.

File format (YAML)::

    format: robo_player.calibration
    version: 1
    family: guitar                 # or bass
    spec: guitar-slider
    spec_hash: 0123abcd...
    picks_per_picker: 12.0         # mean
    simulated: {truth_seed: 1}     # optional: made on the simulator, on this instrument
    pickers:                       # by string (0 = the first in the spec)
      0: {pitch: 40, threshold: 0.21, strikes: 12, drive: [...], velocity: [...],
          latency_us: [...]}
    settle_us:                     # measured fret settle time, by presser / fret solenoid
      press:0: 21000
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import CalibrationError
from ..fileio import write_text
from .calibration import (
    CAL_FORMAT,
    CAL_VERSION,
    KeyCurve,
    curve_from_doc,
    curve_to_doc,
    read_calibration_doc,
    simulated_of_doc,
)

__all__ = ["StringCalibration"]


@dataclass(slots=True)
class StringCalibration:
    """Pickers' curves by string and fret contacts' settle times by actuator role."""

    spec_name: str
    spec_hash: str
    family: str
    pickers: dict[int, KeyCurve] = field(default_factory=dict)
    settle_us: dict[str, int] = field(default_factory=dict)
    measured: bool = True
    # made on the simulator: which simulated instrument it learned ({"truth_seed": n} or
    # {"truth": path}; `play` then plays that one by default); None for a real instrument
    simulated: dict[str, int | str] | None = None

    @property
    def strikes_per_key(self) -> float:
        """Mean picks per picker (the report's ``calibration_strikes_per_key``)."""
        if not self.pickers:
            return 0.0
        return sum(c.strikes for c in self.pickers.values()) / len(self.pickers)

    def check_for(self, spec: Any, path: str | Path = "<calibration>") -> None:
        """CalibrationError unless this calibration was made for ``spec``."""
        if self.spec_hash != spec.spec_hash:
            raise CalibrationError(
                f"{path}: calibration was made for spec {self.spec_name!r} "
                f"(hash {self.spec_hash}), not for {spec.name!r} (hash {spec.spec_hash}); "
                "run `robo-player calibrate` for this spec"
            )
        n = len(spec.strings)
        bad = sorted(s for s in self.pickers if not 0 <= s < n)
        if bad:
            raise CalibrationError(f"{path}: pickers.{bad[0]}: no such string (allowed 0..{n - 1})")

    def save(self, path: str | Path) -> None:
        doc = {
            "format": CAL_FORMAT,
            "version": CAL_VERSION,
            "family": self.family,
            "spec": self.spec_name,
            "spec_hash": self.spec_hash,
            "picks_per_picker": round(self.strikes_per_key, 3),
            **({"simulated": dict(self.simulated)} if self.simulated else {}),
            "pickers": {s: curve_to_doc(c) for s, c in sorted(self.pickers.items())},
            "settle_us": dict(sorted(self.settle_us.items())),
        }
        write_text(Path(path), yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))

    @classmethod
    def load(cls, path: str | Path) -> StringCalibration:
        path = Path(path)
        doc = read_calibration_doc(path)
        if doc.get("family") not in ("guitar", "bass"):
            raise CalibrationError(
                f"{path}: family: {doc.get('family')!r} is not a guitar or bass calibration "
                "(allowed: guitar, bass)"
            )
        pickers: dict[int, KeyCurve] = {}
        for s, k in (doc.get("pickers") or {}).items():
            where = f"{path}: pickers.{s}"
            try:
                pitch = int(k["pitch"])
            except (KeyError, TypeError, ValueError) as err:
                raise CalibrationError(f"{where}: malformed curve: {err}") from err
            curve = curve_from_doc(k, pitch, where)
            pickers[int(s)] = curve
        settle: dict[str, int] = {}
        for role, v in (doc.get("settle_us") or {}).items():
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 1_000_000:
                raise CalibrationError(
                    f"{path}: settle_us.{role}: {v!r} out of range (allowed 0..1000000)"
                )
            settle[str(role)] = v
        return cls(str(doc.get("spec", "")), str(doc.get("spec_hash", "")), str(doc["family"]),
                   pickers, settle, simulated=simulated_of_doc(path, doc))  # fmt: skip

"""Per-key calibration tables: drive -> heard velocity and drive -> latency.

The same :class:`KeyCurve` serves measured calibration and the spec's nominal curves,
so the planner has one code path. Tables are piecewise linear over increasing drive
fractions; the calibrator fills them densely from its fit.

File format (YAML)::

    format: robo_player.calibration
    version: 1
    spec: piano-88-grand
    spec_hash: 0123abcd...
    strikes_per_key: 10.0          # mean
    pedal_latency_us: 41000        # optional
    simulated: {truth_seed: 1}     # optional: made on the simulator, on this instrument
    keys:
      21: {threshold: 0.21, strikes: 10, drive: [...], velocity: [...], latency_us: [...],
           return_us: 68000,           # return_us optional: measured key return time
           return_est_us: 66300}       # optional, with return_us: the same without its margin
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import CalibrationError
from ..fileio import write_text
from .model import PianoSpec

CAL_FORMAT = "robo_player.calibration"
CAL_VERSION = 1


def _interp(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    """Piecewise-linear interpolation, linear extrapolation off both ends. ``xs`` is
    non-decreasing: where it repeats (a fitted curve's flat top, an isotonic fit's step)
    the first ``y`` at that ``x`` (for a drive looked up by its velocity: the least drive
    that gives it). Before session 26 a flat top divided by zero (a fixed take's fit, one
    strike per drive, truth seed 2: `drive_for_velocity` at its top velocity)."""
    if len(xs) == 1:
        return ys[0]
    j = bisect.bisect_left(xs, x)
    if j < len(xs) and xs[j] == x:  # on a point: the first at that x
        return ys[j]
    i = min(max(j - 1, 0), len(xs) - 2)
    x0, x1, y0, y1 = xs[i], xs[i + 1], ys[i], ys[i + 1]
    if x1 == x0:  # off an end that repeats
        return ys[bisect.bisect_left(xs, x0)]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


@dataclass(frozen=True, slots=True)
class KeyCurve:
    """Monotone curves of one key. ``drive`` strictly increasing, all > ``threshold``;
    ``velocity`` increasing; ``latency_us`` non-increasing."""

    pitch: int
    threshold: float
    drive: tuple[float, ...]
    velocity: tuple[float, ...]
    latency_us: tuple[float, ...]
    strikes: int = 0  # strikes spent calibrating this key (0 = nominal)
    return_us: float | None = None  # measured key return time; None = use the spec's
    # the measurement without return_us's safety margin (a re-strike on the partly
    # returned key scales its drive by it); None = return_us
    return_est_us: float | None = None

    @property
    def max_velocity(self) -> float:
        return self.velocity[-1]

    @property
    def min_velocity(self) -> float:
        return self.velocity[0]

    def velocity_at(self, drive: float) -> float:
        if drive <= self.threshold:
            return 0.0
        return max(0.0, _interp(drive, self.drive, self.velocity))

    def latency_at(self, drive: float) -> float:
        d = min(max(drive, self.drive[0]), self.drive[-1])
        return _interp(d, self.drive, self.latency_us)

    def drive_for_velocity(self, velocity: float) -> float:
        """Drive that gives ``velocity``, clamped to the table's range."""
        v = min(max(velocity, self.velocity[0]), self.velocity[-1])
        return _interp(v, self.velocity, self.drive)


@dataclass(slots=True)
class Calibration:
    spec_name: str
    spec_hash: str
    keys: dict[int, KeyCurve] = field(default_factory=dict)
    pedal_latency_us: int | None = None
    measured: bool = True  # False for nominal curves taken from the spec
    # made on the simulator: which simulated instrument it learned ({"truth_seed": n} or
    # {"truth": path}); None for a real instrument
    simulated: dict[str, int | str] | None = None

    def curve(self, pitch: int) -> KeyCurve:
        return self.keys[pitch]

    @property
    def strikes_per_key(self) -> float:
        if not self.keys:
            return 0.0
        return sum(k.strikes for k in self.keys.values()) / len(self.keys)

    @classmethod
    def nominal(cls, spec: PianoSpec) -> Calibration:
        n = spec.nominal
        keys = {
            k.pitch: KeyCurve(
                pitch=k.pitch,
                threshold=n.threshold,
                drive=tuple(n.drive),
                velocity=tuple(float(v) for v in n.velocity),
                latency_us=tuple(float(v) for v in n.latency_us),
            )
            for k in spec.keys
        }
        return cls(
            spec_name=spec.name,
            spec_hash=spec.spec_hash,
            keys=keys,
            pedal_latency_us=spec.pedal.latency_us if spec.pedal else None,
            measured=False,
        )

    def check_for(self, spec: PianoSpec, path: str | Path = "<calibration>") -> None:
        """Raise CalibrationError unless this calibration was made for ``spec``."""
        if self.spec_hash != spec.spec_hash:
            raise CalibrationError(
                f"{path}: calibration was made for spec {self.spec_name!r} "
                f"(hash {self.spec_hash}), not for {spec.name!r} (hash {spec.spec_hash}); "
                "run `robo-player calibrate` for this spec"
            )
        missing = [k.pitch for k in spec.keys if k.pitch not in self.keys]
        if missing:
            raise CalibrationError(
                f"{path}: keys: {len(missing)} keys of the spec have no curve (first: {missing[0]})"
            )

    def save(self, path: str | Path) -> None:
        path = Path(path)
        doc = {
            "format": CAL_FORMAT,
            "version": CAL_VERSION,
            "spec": self.spec_name,
            "spec_hash": self.spec_hash,
            "strikes_per_key": round(self.strikes_per_key, 3),
            "pedal_latency_us": self.pedal_latency_us,
            **({"simulated": dict(self.simulated)} if self.simulated else {}),
            "keys": {p: curve_to_doc(c, pitch=False) for p, c in sorted(self.keys.items())},
        }
        write_text(path, yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        doc = read_calibration_doc(path)
        keys: dict[int, KeyCurve] = {}
        for p, k in (doc.get("keys") or {}).items():
            keys[int(p)] = curve_from_doc(k, int(p), f"{path}: keys.{p}")
        pl = doc.get("pedal_latency_us")
        return cls(
            spec_name=str(doc.get("spec", "")),
            spec_hash=str(doc.get("spec_hash", "")),
            keys=keys,
            pedal_latency_us=int(pl) if pl is not None else None,
            simulated=simulated_of_doc(path, doc),
        )


# -- calibration files (the piano's and the guitar's) ----------------------------------


def simulated_of_doc(path: Path, doc: dict[str, Any]) -> dict[str, int | str] | None:
    """A calibration file's optional ``simulated`` (the simulated instrument it was
    made on), checked; CalibrationError naming the file otherwise."""
    sim = doc.get("simulated")
    if sim is not None and not (
        isinstance(sim, dict)
        and set(sim) <= {"truth_seed", "truth"}
        and len(sim) == 1
        and isinstance(sim.get("truth_seed", 0), int)
    ):
        raise CalibrationError(
            f"{path}: simulated: {sim!r} (allowed: {{truth_seed: INT}} or {{truth: PATH}})"
        )
    return dict(sim) if sim is not None else None


def read_calibration_doc(path: Path) -> dict[str, Any]:
    """A calibration file's document, its format and version checked; CalibrationError
    naming the file otherwise."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise CalibrationError(f"{path}: cannot read calibration: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise CalibrationError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(doc, dict) or doc.get("format") != CAL_FORMAT:
        raise CalibrationError(f"{path}: not a robo_player calibration file")
    if doc.get("version") != CAL_VERSION:
        raise CalibrationError(
            f"{path}: version: {doc.get('version')!r} unsupported (allowed: {CAL_VERSION})"
        )
    return doc


def curve_to_doc(c: KeyCurve, pitch: bool = True) -> dict[str, Any]:
    """A curve as a calibration file writes it (``pitch``: with its pitch field)."""
    return {
        **({"pitch": c.pitch} if pitch else {}),
        "threshold": round(c.threshold, 6),
        "strikes": c.strikes,
        "drive": [round(x, 6) for x in c.drive],
        "velocity": [round(x, 4) for x in c.velocity],
        "latency_us": [round(x, 1) for x in c.latency_us],
        **({"return_us": round(c.return_us, 1)} if c.return_us is not None else {}),
        **({"return_est_us": round(c.return_est_us, 1)} if c.return_est_us is not None else {}),
    }


def curve_from_doc(k: Any, pitch: int, where: str) -> KeyCurve:
    """A curve read back and checked (drive strictly increasing, velocity non-decreasing,
    0 <= threshold < drive <= 1, return time in range); CalibrationError naming ``where``."""
    try:
        drive = tuple(float(x) for x in k["drive"])
        vel = tuple(float(x) for x in k["velocity"])
        lat = tuple(float(x) for x in k["latency_us"])
        thr = float(k["threshold"])
        strikes = int(k.get("strikes", 0))
        ret = k.get("return_us")
        return_us = float(ret) if ret is not None else None
        est = k.get("return_est_us")
        return_est_us = float(est) if est is not None else None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CalibrationError(f"{where}: malformed curve: {err}") from err
    if not (len(drive) == len(vel) == len(lat) >= 1):
        raise CalibrationError(f"{where}: drive, velocity and latency_us differ in length")
    if any(b <= a for a, b in zip(drive, drive[1:], strict=False)):
        raise CalibrationError(f"{where}.drive: must be strictly increasing")
    if any(b < a for a, b in zip(vel, vel[1:], strict=False)):
        raise CalibrationError(f"{where}.velocity: must be non-decreasing")
    if not 0.0 <= thr < drive[0] <= 1.0 or drive[-1] > 1.0:
        raise CalibrationError(
            f"{where}: threshold {thr} and drive range must satisfy 0 <= threshold < drive <= 1"
        )
    if return_us is not None and not 1_000 <= return_us <= 1_000_000:
        raise CalibrationError(
            f"{where}.return_us: {return_us} is out of range (allowed 1000..1000000)"
        )
    if return_est_us is not None and not (
        return_us is not None and 1_000 <= return_est_us <= return_us
    ):
        raise CalibrationError(
            f"{where}.return_est_us: {return_est_us} is out of range "
            f"(allowed 1000..return_us, and only with return_us)"
        )
    return KeyCurve(pitch, thr, drive, vel, lat, strikes, return_us, return_est_us)

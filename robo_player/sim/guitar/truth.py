"""Hidden truth of the simulated guitar: every picker, damper, presser and carriage.

Only the simulator reads a :class:`GuitarTruth`. The planner and the calibration never
see it; they learn the instrument by playing it and listening (docs/guitar.md,
"Simulator").

Per string, the picker (the same physical family as a piano key's solenoid, see
docs/simulator.md: effective drive ``u = (d_eff - threshold) / (1 - threshold)`` with
``d_eff = drive * min(1, pulse / pulse_full)``; latency ``L = latency_full * u^-alpha``;
loudness ``gain * (v0 + (1 - v0) (1 - e^(-k u)) / (1 - e^(-k)))``) and the damper's
latency (coil on to the felt on the string, and coil off to the felt off) and the
picker's return (a pick sooner than ``return_us`` after the last one let go strikes
with ``elapsed / return_us`` of its drive, and not at all below half). Per presser
or fret solenoid (by actuator role, ``press:S`` or ``fret:S:F``) the settle time: from
the moment it presses (or its carriage has settled under it) until the fret contact is
clean. Per carriage (``carriage:S``): its real speed as a fraction of what the steps
command (the belt and load make it lag its step train) and its settle time; a hobby
servo's carriage also its dead band (a pulse within this many µs of the width it last
moved to does not move it; a servo's data sheet gives 1-8 µs).

Spread (sim/spread.py): per picker the s.d. of its contact time (µs plus a share of its
latency) and of its loudness; per presser or fret solenoid the s.d. of its settle time,
a share of it (``press_spread``). A file without them gets the middle of their ranges.

Files (YAML, or JSON for a ``.json`` name)::

    format: robo_player.guitar_truth
    version: 1
    spec: guitar-slider
    seed: 3
    strings: [{pulse_full_us: 10000, threshold: 0.22, latency_full_us: 40000.0,
               alpha: 0.2, gain: 120.0, k: 2.5, v0: 0.35, damper_latency_us: 4000,
               return_us: 12000, timing_sd_us: 150.0, timing_sd_frac: 0.015,
               loudness_sd: 0.015}, ...]
    pressers: {"press:0": 21000, ...}
    press_spread: {"press:0": 0.045, ...}
    carriages: {"carriage:0": {speed_scale: 0.97, settle_us: 9000}, ...}  # servo: deadband_us
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SpecError
from ...spec.actuators import ActuatorKind
from ...spec.guitar import GuitarSpec, servo_carriages
from ..spread import LOUDNESS_SD_FRAC, PRESS_SD_FRAC, TIMING_SD_FRAC, TIMING_SD_US, content_seed
from ..truth import check_truth_header, load_truth_doc, save_truth_doc

TRUTH_FORMAT = "robo_player.guitar_truth"
TRUTH_VERSION = 1

# Ranges of the drawn parameters: (low, high), uniform (docs/guitar.md, "Simulator").
PICK_PULSE_FULL_US = (8_000, 12_000)  # below the specs' 15 ms pick pulse
PICK_THRESHOLD = (0.18, 0.28)
PICK_LATENCY_FULL_US = (34_000.0, 46_000.0)  # 40 ms +- 15 % (StrumBot: 40 ms at best)
PICK_ALPHA = (0.15, 0.25)
PICK_GAIN = (110.0, 130.0)
PICK_K = (2.0, 3.0)
PICK_V0 = (0.30, 0.40)  # softest pick about 20 dB (in MIDI velocity) below the loudest
DAMPER_LATENCY_US = (2_000, 6_000)
PICK_RETURN = (0.3, 0.6)  # x (min_repeat_us - pick_pulse_us): the pick back in place
PRESS_SETTLE = (0.5, 1.2)  # x the spec's fret_settle_us (GT GuitarBot: 25 ms)
CARRIAGE_SPEED_SCALE = (0.95, 1.0)  # real speed / commanded (within the 15 % travel margin)
CARRIAGE_SETTLE = (0.6, 1.2)  # x the carriage's settle_us
SERVO_DEADBAND_US = (1.0, 4.0)  # a hobby servo's dead band (data sheets: 1-8 µs)


@dataclass(frozen=True, slots=True)
class StringTruth:
    """The picker and damper of one string."""

    pulse_full_us: int
    threshold: float
    latency_full_us: float
    alpha: float
    gain: float
    k: float
    v0: float
    damper_latency_us: int
    return_us: int  # after the picker's coil goes off, until the pick is back in place
    # the picker's stroke-to-stroke spread (sim/spread.py)
    timing_sd_us: float = sum(TIMING_SD_US) / 2
    timing_sd_frac: float = sum(TIMING_SD_FRAC) / 2
    loudness_sd: float = sum(LOUDNESS_SD_FRAC) / 2

    def check(self, where: str) -> None:
        bounds: dict[str, tuple[float, float]] = {
            "pulse_full_us": (1, 1_000_000),
            "threshold": (0.0, 0.99),
            "latency_full_us": (1.0, 1_000_000.0),
            "alpha": (0.0, 5.0),
            "gain": (1.0, 1000.0),
            "k": (0.01, 50.0),
            "v0": (0.0, 1.0),
            "damper_latency_us": (0, 1_000_000),
            "return_us": (0, 1_000_000),
            "timing_sd_us": (0.0, 100_000.0),
            "timing_sd_frac": (0.0, 0.5),
            "loudness_sd": (0.0, 0.5),
        }
        for name, (lo, hi) in bounds.items():
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and lo <= v <= hi):
                raise SpecError(f"{where}.{name}: {v!r} out of range (allowed: {lo}..{hi})")


_OPTIONAL_STRING_FIELDS = {"timing_sd_us", "timing_sd_frac", "loudness_sd"}


@dataclass(frozen=True, slots=True)
class CarriageTruth:
    speed_scale: float  # real speed / the speed the steps command (0 < x <= 1)
    settle_us: int  # after its last step, before a press is clean
    deadband_us: float = 0.0  # a servo's: width changes within this do not move it


@dataclass(frozen=True, slots=True)
class GuitarTruth:
    """Hidden parameters of one simulated guitar or bass."""

    spec_name: str
    strings: tuple[StringTruth, ...]
    pressers: Mapping[str, int]  # role -> settle time, µs
    carriages: Mapping[str, CarriageTruth]  # role -> truth
    seed: int | None = None
    # role -> s.d. of a contact's settle time, share of it (sim/spread.py); a presser not
    # in it has the middle of PRESS_SD_FRAC
    press_spread: Mapping[str, float] = field(default_factory=dict)

    def spread_seed(self) -> int:
        """The seed of the strokes' spread: the truth's, or a checksum of a hand-made
        file's contents (sim/spread.py)."""
        return self.seed if self.seed is not None else content_seed(self.to_dict())

    def press_sd(self, role: str) -> float:
        return self.press_spread.get(role, sum(PRESS_SD_FRAC) / 2)

    @classmethod
    def draw(cls, spec: GuitarSpec, seed: int) -> GuitarTruth:
        """Draw every parameter uniformly within the documented ranges."""
        rng = np.random.default_rng([seed, 0x6717])  # another stream than the piano's

        def u(lo_hi: tuple[float, float]) -> float:
            return float(rng.uniform(lo_hi[0], lo_hi[1]))

        gap = max(0, spec.timing.min_repeat_us - spec.timing.pick_pulse_us)
        strings = tuple(
            StringTruth(
                pulse_full_us=int(round(u(PICK_PULSE_FULL_US))),
                threshold=u(PICK_THRESHOLD),
                latency_full_us=u(PICK_LATENCY_FULL_US),
                alpha=u(PICK_ALPHA),
                gain=u(PICK_GAIN),
                k=u(PICK_K),
                v0=u(PICK_V0),
                damper_latency_us=int(round(u(DAMPER_LATENCY_US))),
                return_us=int(round(gap * u(PICK_RETURN))),
            )
            for _ in spec.strings
        )
        pressers: dict[str, int] = {}
        carriages: dict[str, CarriageTruth] = {}
        servos = servo_carriages(spec)
        settle = spec.timing.fret_settle_us
        for a in spec.actuators:
            if a.role.startswith(("press:", "fret:")):
                pressers[a.role] = int(round(settle * u(PRESS_SETTLE)))
            elif a.kind is ActuatorKind.POSITIONER:
                carriages[a.role] = CarriageTruth(
                    speed_scale=u(CARRIAGE_SPEED_SCALE),
                    settle_us=int(round(a.settle_us * u(CARRIAGE_SETTLE))),
                    # a servo's only: a stepper spec's truths stay as they were drawn
                    deadband_us=u(SERVO_DEADBAND_US) if a.index in servos else 0.0,
                )
        # the spread from a stream of its own: every parameter above is drawn as before
        srng = np.random.default_rng([seed, 0x6717, 0x5BEAD])
        strings = tuple(
            dataclasses.replace(st, timing_sd_us=float(srng.uniform(*TIMING_SD_US)),
                                timing_sd_frac=float(srng.uniform(*TIMING_SD_FRAC)),
                                loudness_sd=float(srng.uniform(*LOUDNESS_SD_FRAC)))  # fmt: skip
            for st in strings
        )
        press_spread = {r: float(srng.uniform(*PRESS_SD_FRAC)) for r in pressers}
        return cls(spec.name, strings, pressers, carriages, int(seed), press_spread)

    def check_for(self, spec: GuitarSpec, where: str = "<truth>") -> None:
        """SpecError unless this truth has one entry per string, presser and carriage."""
        if len(self.strings) != len(spec.strings):
            raise SpecError(
                f"{where}: strings: {len(self.strings)} entries, spec {spec.name!r} has "
                f"{len(spec.strings)} strings"
            )
        for s, st in enumerate(self.strings):
            st.check(f"{where}: strings[{s}]")
        roles = {a.role for a in spec.actuators}
        want_p = {r for r in roles if r.startswith(("press:", "fret:"))}
        want_c = {r for r in roles if r.startswith("carriage:")}
        for name, have, want in (("pressers", set(self.pressers), want_p),
                                 ("carriages", set(self.carriages), want_c)):  # fmt: skip
            if have != want:
                missing, extra = sorted(want - have), sorted(have - want)
                raise SpecError(
                    f"{where}: {name}: do not match spec {spec.name!r} "
                    f"(missing: {missing[:5]}, extra: {extra[:5]})"
                )
        for r, v in self.pressers.items():
            if not (isinstance(v, int) and 0 <= v <= 1_000_000):
                raise SpecError(f"{where}: pressers.{r}: {v!r} out of range (allowed: 0..1000000)")
        extra_sd = sorted(set(self.press_spread) - want_p)
        if extra_sd:
            raise SpecError(f"{where}: press_spread.{extra_sd[0]}: no such presser in spec {spec.name!r}")
        for r, sd in self.press_spread.items():
            if not (isinstance(sd, float) and 0.0 <= sd <= 0.5):
                raise SpecError(f"{where}: press_spread.{r}: {sd!r} out of range (allowed: 0..0.5)")
        for r, c in self.carriages.items():
            if (not (0.05 <= c.speed_scale <= 1.0) or not 0 <= c.settle_us <= 1_000_000
                    or not 0.0 <= c.deadband_us <= 100.0):  # fmt: skip
                raise SpecError(
                    f"{where}: carriages.{r}: speed_scale {c.speed_scale} (allowed 0.05..1), "
                    f"settle_us {c.settle_us} (allowed 0..1000000) or deadband_us "
                    f"{c.deadband_us} (allowed 0..100) out of range"
                )

    # -- files ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TRUTH_FORMAT,
            "version": TRUTH_VERSION,
            "spec": self.spec_name,
            "seed": self.seed,
            "strings": [asdict(s) for s in self.strings],
            "pressers": dict(self.pressers),
            "carriages": {r: asdict(c) for r, c in self.carriages.items()},
            "press_spread": dict(self.press_spread),
        }

    def save(self, path: str | Path) -> None:
        save_truth_doc(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> GuitarTruth:
        return cls.from_dict(load_truth_doc(path), str(path))

    @classmethod
    def from_dict(cls, doc: object, where: str = "<truth>") -> GuitarTruth:
        doc = check_truth_header(doc, where, "a guitar truth file", TRUTH_FORMAT, TRUTH_VERSION,
                                 {"strings", "pressers", "carriages", "press_spread"})  # fmt: skip
        names = [f.name for f in fields(StringTruth)]
        strings = []
        raw = doc.get("strings")
        if not isinstance(raw, list) or not raw:
            raise SpecError(f"{where}: strings: must be a non-empty list")
        for i, rs in enumerate(raw):
            w = f"{where}: strings[{i}]"
            if not isinstance(rs, Mapping) or not set(names) - _OPTIONAL_STRING_FIELDS <= set(rs) <= set(names):
                raise SpecError(f"{w}: must be a mapping with exactly {names} "
                                f"(the last three optional)")  # fmt: skip
            vals: dict[str, Any] = {}
            for n in names:
                if n not in rs:
                    continue  # an optional field: the dataclass's default
                v = rs[n]
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise SpecError(f"{w}.{n}: {v!r} is not a number")
                vals[n] = int(v) if n in ("pulse_full_us", "damper_latency_us", "return_us") else float(v)
            strings.append(StringTruth(**vals))
        pressers = doc.get("pressers") or {}
        carriages_raw = doc.get("carriages") or {}
        if not isinstance(pressers, Mapping) or not isinstance(carriages_raw, Mapping):
            raise SpecError(f"{where}: pressers and carriages must be mappings")
        try:
            carriages = {
                str(r): CarriageTruth(float(c["speed_scale"]), int(c["settle_us"]),
                                      float(c.get("deadband_us", 0.0)))  # fmt: skip
                for r, c in carriages_raw.items()
            }
            press = {str(r): int(v) for r, v in pressers.items()}
            spread_raw = doc.get("press_spread") or {}
            if not isinstance(spread_raw, Mapping):
                raise TypeError("press_spread must be a mapping")
            press_spread = {str(r): float(v) for r, v in spread_raw.items()}
        except (KeyError, TypeError, ValueError) as err:
            raise SpecError(f"{where}: malformed pressers or carriages: {err}") from err
        seed = doc.get("seed")
        return cls(str(doc.get("spec", "")), tuple(strings), press, carriages,
                   seed if isinstance(seed, int) else None, press_spread)  # fmt: skip


__all__ = ["CarriageTruth", "GuitarTruth", "StringTruth"]

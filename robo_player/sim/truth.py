"""Hidden truth of the simulated piano: the physical parameters of every key.

Only the simulator reads a :class:`Truth`. The planner and the calibration never see it;
they learn the piano by playing it and listening (see ``docs/simulator.md``).

A truth is drawn from a seed (:meth:`Truth.draw`) or read from a file
(:meth:`Truth.load`, YAML or JSON)::

    format: robo_player.truth
    version: 1
    spec: piano-88-grand
    seed: 0                      # informative; null for hand-made files
    pedal_latency_us: 41000
    pedal_sd_frac: 0.02          # the pedal's latency spread (optional)
    keys:
      - {pitch: 21, pulse_full_us: 24000, threshold: 0.21, latency_full_us: 19500.0,
         alpha: 0.7, gain: 131.0, k: 2.4, v0: 0.08, return_us: 70000,
         heat_capacity_j_per_k: 24.1, tau_s: 31.0,
         timing_sd_us: 150.0, timing_sd_frac: 0.015, loudness_sd: 0.015, spread_corr: -0.6}

The last four are the key's strike-to-strike spread (sim/spread.py), ``pedal_sd_frac``
the pedal's; a file without them gets the middle of their ranges.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import SpecError
from ..fileio import write_text
from ..rules import COIL_THERMAL_TOLERANCE
from ..spec.model import PianoSpec
from .spread import (
    LOUDNESS_SD_FRAC,
    PEDAL_SD_FRAC,
    SPREAD_CORR,
    TIMING_SD_FRAC,
    TIMING_SD_US,
    content_seed,
)

# libyaml when available: a truth file has ~90 keys and pure-Python YAML is slow.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

TRUTH_FORMAT = "robo_player.truth"
TRUTH_VERSION = 1

# Ranges of the drawn parameters (docs/simulator.md): (low, high), uniform.
PULSE_FULL_US = (20_000, 30_000)
THRESHOLD = (0.15, 0.30)
LATENCY_FULL_US = (15_000.0, 25_000.0)  # 20 ms ± 25 %
ALPHA = (0.60, 0.80)
GAIN = (108.0, 162.0)  # 135 ± 20 %
K = (2.0, 3.0)
V0 = (0.06, 0.10)
RETURN_US = (50_000, 90_000)
# copper's resistance rises 0.39 % per kelvin (R(T) = R0·(1 + a·ΔT)); the simulator's
# physics uses it when heating is on (sim://?heating=1)
COPPER_TEMPCO_PER_K = 0.0039
THERMAL_SPREAD = COIL_THERMAL_TOLERANCE  # heat capacity and tau within it of the spec's (rules.py)
PEDAL_LATENCY_US = (30_000, 60_000)


@dataclass(frozen=True, slots=True)
class KeyTruth:
    """Physical parameters of one key (see docs/simulator.md for the formulas)."""

    pitch: int
    pulse_full_us: int  # P_full: full pulse the hammer needs
    threshold: float  # θ: effective drive (0..1) below which the strike is silent
    latency_full_us: float  # L_f: drive start to string contact at full drive
    alpha: float  # α: latency exponent, L = L_f · u^(−α)
    gain: float  # G: loudness at full drive, MIDI velocity units
    k: float  # loudness curve saturation
    v0: float  # loudness floor as a fraction of G
    return_us: int  # R: time a released key needs to come back up
    heat_capacity_j_per_k: float  # C of this key's coil
    tau_s: float  # thermal time constant of this key's coil
    # strike-to-strike spread (sim/spread.py): s.d. of the contact time, µs plus a share
    # of the latency, and of the loudness, a share of it
    timing_sd_us: float = sum(TIMING_SD_US) / 2
    timing_sd_frac: float = sum(TIMING_SD_FRAC) / 2
    loudness_sd: float = sum(LOUDNESS_SD_FRAC) / 2
    # ... and their correlation (negative: a late stroke is a weak one, softer)
    spread_corr: float = sum(SPREAD_CORR) / 2

    def check(self, where: str) -> None:
        """SpecError unless every parameter is physically meaningful."""
        bounds: dict[str, tuple[float, float]] = {
            "pulse_full_us": (1, 1_000_000),
            "threshold": (0.0, 0.99),
            "latency_full_us": (1.0, 1_000_000.0),
            "alpha": (0.01, 5.0),
            "gain": (1.0, 1000.0),
            "k": (0.01, 50.0),
            "v0": (0.0, 1.0),
            "return_us": (0, 10_000_000),
            "heat_capacity_j_per_k": (1e-3, 1e6),
            "tau_s": (1e-3, 1e6),
            "timing_sd_us": (0.0, 100_000.0),
            "timing_sd_frac": (0.0, 0.5),
            "loudness_sd": (0.0, 0.5),
            "spread_corr": (-1.0, 1.0),
        }
        for name, (lo, hi) in bounds.items():
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and lo <= v <= hi):
                raise SpecError(f"{where}.{name}: {v!r} out of range (allowed: {lo}..{hi})")


_OPTIONAL_KEY_FIELDS = frozenset({"timing_sd_us", "timing_sd_frac", "loudness_sd", "spread_corr"})


@dataclass(frozen=True, slots=True)
class Truth:
    """Hidden parameters of every key of one simulated piano, plus the pedal's latency
    and its spread."""

    spec_name: str
    keys: tuple[KeyTruth, ...]  # sorted by pitch, one per key of the spec
    pedal_latency_us: int
    seed: int | None = None
    # s.d. of the pedal's latency from one change to the next, a share of it (sim/spread.py)
    pedal_sd_frac: float = sum(PEDAL_SD_FRAC) / 2

    def spread_seed(self) -> int:
        """The seed of the strikes' spread: the truth's, or for a hand-made file without
        one a checksum of its contents (sim/spread.py)."""
        return self.seed if self.seed is not None else content_seed(self.to_dict())

    def key(self, pitch: int) -> KeyTruth:
        i = pitch - self.keys[0].pitch
        if not 0 <= i < len(self.keys) or self.keys[i].pitch != pitch:
            raise KeyError(pitch)
        return self.keys[i]

    # -- making one -------------------------------------------------------------------

    @classmethod
    def draw(cls, spec: PianoSpec, seed: int) -> Truth:
        """Draw every key's parameters uniformly within the documented ranges."""
        rng = np.random.default_rng(seed)
        n = len(spec.keys)

        def u(lo_hi: tuple[float, float]) -> np.ndarray:
            return rng.uniform(lo_hi[0], lo_hi[1], size=n)

        pulse = u(PULSE_FULL_US)
        thr = u(THRESHOLD)
        lat = u(LATENCY_FULL_US)
        alpha = u(ALPHA)
        gain = u(GAIN)
        k = u(K)
        v0 = u(V0)
        ret = u(RETURN_US)
        cap = spec.thermal.coil_heat_capacity_j_per_k * u((1 - THERMAL_SPREAD, 1 + THERMAL_SPREAD))
        tau = spec.thermal.coil_tau_s * u((1 - THERMAL_SPREAD, 1 + THERMAL_SPREAD))
        pedal = int(rng.integers(PEDAL_LATENCY_US[0], PEDAL_LATENCY_US[1] + 1))
        # the spread from a stream of its own: every parameter above is drawn as before
        srng = np.random.default_rng([seed, 0x5BEAD])
        sd_us = srng.uniform(*TIMING_SD_US, size=n)
        sd_frac = srng.uniform(*TIMING_SD_FRAC, size=n)
        loud_sd = srng.uniform(*LOUDNESS_SD_FRAC, size=n)
        corr = srng.uniform(*SPREAD_CORR, size=n)  # (after the others: they stay as drawn)
        pedal_sd = float(srng.uniform(*PEDAL_SD_FRAC))
        keys = tuple(
            KeyTruth(
                pitch=ks.pitch,
                pulse_full_us=int(round(pulse[i])),
                threshold=float(thr[i]),
                latency_full_us=float(lat[i]),
                alpha=float(alpha[i]),
                gain=float(gain[i]),
                k=float(k[i]),
                v0=float(v0[i]),
                return_us=int(round(ret[i])),
                heat_capacity_j_per_k=float(cap[i]),
                tau_s=float(tau[i]),
                timing_sd_us=float(sd_us[i]),
                timing_sd_frac=float(sd_frac[i]),
                loudness_sd=float(loud_sd[i]),
                spread_corr=float(corr[i]),
            )
            for i, ks in enumerate(spec.keys)
        )
        return cls(spec_name=spec.name, keys=keys, pedal_latency_us=pedal, seed=int(seed),
                   pedal_sd_frac=pedal_sd)

    def check_for(self, spec: PianoSpec, where: str = "<truth>") -> None:
        """SpecError unless this truth has exactly one entry per key of ``spec``."""
        want = [k.pitch for k in spec.keys]
        have = [k.pitch for k in self.keys]
        if want != have:
            missing = sorted(set(want) - set(have))
            extra = sorted(set(have) - set(want))
            raise SpecError(
                f"{where}: keys do not match spec {spec.name!r} "
                f"(missing pitches: {missing[:5]}, extra pitches: {extra[:5]}, "
                f"spec range {spec.lowest}..{spec.highest})"
            )

    # -- files ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TRUTH_FORMAT,
            "version": TRUTH_VERSION,
            "spec": self.spec_name,
            "seed": self.seed,
            "pedal_latency_us": self.pedal_latency_us,
            "pedal_sd_frac": self.pedal_sd_frac,
            "keys": [asdict(k) for k in self.keys],
        }

    def save(self, path: str | Path) -> None:
        """Write YAML (or JSON for a ``.json`` name) atomically: temp file, then rename."""
        save_truth_doc(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Truth:
        """Read and validate a truth file; SpecError naming the file and place on any fault."""
        return cls.from_dict(load_truth_doc(path), where=str(path))

    @classmethod
    def from_dict(cls, doc: object, where: str = "<truth>") -> Truth:
        doc = check_truth_header(doc, where, "a robo_player truth file", TRUTH_FORMAT, TRUTH_VERSION,
                                 {"pedal_latency_us", "pedal_sd_frac", "keys"})  # fmt: skip
        pl = doc.get("pedal_latency_us")
        if not isinstance(pl, int) or isinstance(pl, bool) or not 0 <= pl <= 10_000_000:
            raise SpecError(f"{where}: pedal_latency_us: {pl!r} must be an integer in 0..10000000")
        psd = doc.get("pedal_sd_frac", sum(PEDAL_SD_FRAC) / 2)  # a file from before: the middle
        if isinstance(psd, bool) or not isinstance(psd, int | float) or not 0.0 <= psd <= 0.5:
            raise SpecError(f"{where}: pedal_sd_frac: {psd!r} out of range (allowed: 0.0..0.5)")
        raw_keys = doc.get("keys")
        if not isinstance(raw_keys, list) or not raw_keys:
            raise SpecError(f"{where}: keys: must be a non-empty list")
        names = [f.name for f in fields(KeyTruth)]
        int_fields = {"pitch", "pulse_full_us", "return_us"}
        keys: list[KeyTruth] = []
        for i, rk in enumerate(raw_keys):
            kw = f"{where}: keys[{i}]"
            if not isinstance(rk, Mapping):
                raise SpecError(f"{kw}: must be a mapping of {names}")
            extra = sorted(set(rk) - set(names))
            if extra:
                raise SpecError(f"{kw}: unknown field {extra[0]!r} (allowed: {names})")
            missing = [n for n in names if n not in rk and n not in _OPTIONAL_KEY_FIELDS]
            if missing:
                raise SpecError(f"{kw}: missing field {missing[0]!r}")
            vals: dict[str, Any] = {}
            for n in names:
                if n not in rk:
                    continue  # an optional field: the dataclass's default
                v = rk[n]
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise SpecError(f"{kw}.{n}: {v!r} is not a number")
                if n in int_fields:
                    if v != int(v):
                        raise SpecError(f"{kw}.{n}: {v!r} must be an integer")
                    v = int(v)
                else:
                    v = float(v)
                vals[n] = v
            key = KeyTruth(**vals)
            if not 0 <= key.pitch <= 127:
                raise SpecError(f"{kw}.pitch: {key.pitch} out of range (allowed: 0..127)")
            key.check(kw)
            if keys and key.pitch != keys[-1].pitch + 1:
                raise SpecError(
                    f"{kw}.pitch: {key.pitch} must follow {keys[-1].pitch} (keys sorted, contiguous)"
                )
            keys.append(key)
        seed = doc.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise SpecError(f"{where}: seed: {seed!r} must be an integer or null")
        return cls(
            spec_name=str(doc.get("spec", "")),
            keys=tuple(keys),
            pedal_latency_us=pl,
            seed=seed,
            pedal_sd_frac=float(psd),
        )


# -- truth files (the piano's and the guitar's) ----------------------------------------


def save_truth_doc(path: str | Path, doc: Mapping[str, Any]) -> None:
    """Write a truth document as YAML (or JSON for a ``.json`` name), atomically."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        text = json.dumps(doc, indent=1)
    else:
        text = yaml.dump(dict(doc), Dumper=_YAML_DUMPER, sort_keys=False, default_flow_style=None)
    write_text(path, text)


def load_truth_doc(path: str | Path) -> object:
    """Read a truth file's document; SpecError naming the file on any fault."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(f"{path}: cannot read truth file: {err.strerror}") from err
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.load(text, Loader=_YAML_LOADER)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise SpecError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {err}") from err


def check_truth_header(doc: object, where: str, what: str, fmt: str, version: int,
                       fields_: set[str]) -> Mapping[str, Any]:  # fmt: skip
    """The document's format, version and top-level fields (``fields_`` besides format,
    version, spec and seed); SpecError naming ``where`` otherwise."""
    if not isinstance(doc, Mapping) or doc.get("format") != fmt:
        raise SpecError(f"{where}: not {what} (format must be {fmt!r})")
    if doc.get("version") != version:
        raise SpecError(f"{where}: version: {doc.get('version')!r} unsupported (allowed: {version})")
    allowed = {"format", "version", "spec", "seed"} | fields_
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r} (allowed: {sorted(allowed)})")
    return doc

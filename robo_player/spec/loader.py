"""Load a hardware spec from YAML into frozen dataclasses, validating everything.

Per-field rules (known keys, types, ranges) come from the table in
:mod:`robo_player.spec.schema`; the rules across fields are checked here. Every
:class:`~robo_player.errors.SpecError` names the file, the key path, the value and the
allowed range, e.g. ``hardware_specs/x.yaml: keys[12].channel: 70 is already used by
keys[3] (line 80)``.

Run ``python -m robo_player.spec --schema > hardware_specs/schema.json`` to
regenerate the JSON Schema, ``--markdown`` for the README's field reference and
``--check FILE...`` to validate spec files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, cast

from ..errors import SpecError
from ..resources import shipped_dir
from .model import FAMILIES, SUPPORTED_FAMILIES, DriverBoard, DriverKind, KeySpec, PianoSpec
from .schema import (
    FAMILY_SECTIONS,
    Field,
    Kind,
    Section,
    fields_markdown,
    note_to_pitch,
    spec_json_schema,
)
from .yamlio import YamlMap, YamlSeq, display_path, parse_yaml

log = logging.getLogger(__name__)

SPEC_DIR = shipped_dir("hardware_specs")
DEFAULT_SPEC = "piano-88-grand"

PCA9685_MAX_CHANNELS = 16
PCA9685_MAX_BITS = 12
PCA9685_HZ = (24, 1526)  # the chip's prescaler range at its 25 MHz internal clock


# ---------------------------------------------------------------------------------
# Per-field validation, driven by the schema table


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "null"
    return str(value)


def _line_of(container: Any, key: Any) -> int | None:
    if isinstance(container, YamlMap):
        return container.lines.get(key, container.line)
    if isinstance(container, YamlSeq) and isinstance(key, int) and 0 <= key < len(container.lines):
        return container.lines[key]
    return getattr(container, "line", None)


_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _line_for_path(doc: Any, path: str) -> int | None:
    """Line of the deepest node of ``path`` (``keys[3].channel``) that the document has."""
    line: int | None = getattr(doc, "line", None)
    node = doc
    for m in _PATH_TOKEN.finditer(path):
        key: Any = m.group(1) if m.group(1) is not None else int(m.group(2))
        try:
            child = node[key]
        except (KeyError, IndexError, TypeError):
            break
        line = _line_of(node, key) or line
        node = child
    return line


class _Checker:
    """Raises SpecErrors that name the source and the key path."""

    def __init__(self, source: str, doc: Any = None) -> None:
        self.source = source
        self.doc = doc  # the parsed document, to find the line of a key path

    def fail(self, path: str, message: str, line: int | None = None) -> SpecError:
        if line is None:
            line = _line_for_path(self.doc, path)
        where = f" (line {line})" if line else ""
        return SpecError(f"{self.source}: {path or '<top>'}: {message}{where}")

    # -- scalars -------------------------------------------------------------------
    def number(
        self, f: Field, value: Any, path: str, line: int | None, integer: bool
    ) -> float | int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            want = "an integer" if integer else "a number"
            raise self.fail(path, f"{_show(value)} is not {want} (allowed {f.range_text()})", line)
        if integer and not isinstance(value, int):
            raise self.fail(
                path, f"{_show(value)} is not an integer (allowed {f.range_text()})", line
            )
        lo = -math.inf if f.lo is None else f.lo
        hi = math.inf if f.hi is None else f.hi
        if not lo <= value <= hi:  # also catches nan
            raise self.fail(
                path, f"{_show(value)} is out of range (allowed {f.range_text()})", line
            )
        return int(value) if integer else float(value)

    def scalar(self, f: Field, value: Any, path: str, line: int | None) -> Any:
        if f.kind is Kind.INT:
            return self.number(f, value, path, line, integer=True)
        if f.kind is Kind.FLOAT:
            return self.number(f, value, path, line, integer=False)
        if f.kind is Kind.PITCH:
            if isinstance(value, str):
                pitch = note_to_pitch(value)
                if pitch is None:
                    raise self.fail(
                        path, f"{_show(value)} is not a pitch (allowed {f.range_text()})", line
                    )
                if not (f.lo or 0) <= pitch <= (f.hi or 127):
                    raise self.fail(
                        path, f"{_show(value)} is MIDI {pitch}, out of range (allowed 0..127)", line
                    )
                return pitch
            return self.number(f, value, path, line, integer=True)
        if f.kind in (Kind.STR, Kind.ENUM):
            if not isinstance(value, str):
                raise self.fail(
                    path, f"{_show(value)} is not text (allowed {f.range_text()})", line
                )
            if f.kind is Kind.ENUM and value not in f.choices:
                raise self.fail(
                    path, f"{_show(value)} is not allowed (allowed {f.range_text()})", line
                )
            if f.pattern:
                if not re.match(f.pattern, value):
                    raise self.fail(
                        path, f"{_show(value)} is not allowed (allowed {f.range_text()})", line
                    )
            return value
        raise AssertionError(f"not a scalar kind: {f.kind}")

    # -- containers ----------------------------------------------------------------
    def sequence(self, f: Field, value: Any, path: str, line: int | None) -> Sequence[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"{_show(value)} is not a list", line)
        n = len(value)
        if n < f.min_items or (f.max_items is not None and n > f.max_items):
            raise self.fail(
                path,
                f"{n} items is out of range (allowed {f.min_items}..{f.max_items} items)",
                line,
            )
        return value

    def section(self, s: Section, doc: Any, path: str, line: int | None = None) -> dict[str, Any]:
        """Check one mapping against its section; return constructor kwargs."""
        if not isinstance(doc, Mapping):
            raise self.fail(
                path, f"{_show(doc)} is not a mapping (allowed keys: {', '.join(s.names)})", line
            )
        prefix = f"{path}." if path else ""
        for key in doc:
            if key not in s.names:
                raise self.fail(
                    f"{prefix}{key}",
                    f"unknown key {_show(key)} (allowed keys: {', '.join(s.names)})",
                    _line_of(doc, key),
                )
        out: dict[str, Any] = {}
        for f in s.fields:
            fpath = f"{prefix}{f.name}"
            if f.name not in doc:
                if f.required:
                    raise self.fail(
                        fpath,
                        f"missing required key (allowed {f.range_text() or 'a ' + f.kind.value})",
                        getattr(doc, "line", line),
                    )
                out[f.name] = None
                continue
            value, vline = doc[f.name], _line_of(doc, f.name)
            out[f.name] = self.value(f, value, fpath, vline)
        return out

    def value(self, f: Field, value: Any, path: str, line: int | None) -> Any:
        if f.kind is Kind.SECTION:
            assert f.section is not None
            return f.section.cls(**self.section(f.section, value, path, line))
        if f.kind in (Kind.SECTION_LIST, Kind.INT_LIST, Kind.FLOAT_LIST):
            items = self.sequence(f, value, path, line)
            out: list[Any] = []
            for i, item in enumerate(items):
                ipath, iline = f"{path}[{i}]", _line_of(items, i)
                if f.kind is Kind.SECTION_LIST:
                    assert f.section is not None
                    out.append(self.section(f.section, item, ipath, iline))
                else:
                    out.append(self.number(f, item, ipath, iline, integer=f.kind is Kind.INT_LIST))
            return out
        return self.scalar(f, value, path, line)


# ---------------------------------------------------------------------------------
# Rules across fields


def _board_blocks(boards: list[dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    """board id -> (index, first channel, last channel + 1) in the global channel space."""
    blocks: dict[str, tuple[int, int, int]] = {}
    first = 0
    for i, b in enumerate(boards):
        blocks[b["id"]] = (i, first, first + b["channels"])
        first += b["channels"]
    return blocks


def _check_boards(c: _Checker, boards: list[dict[str, Any]], lines: Any) -> None:
    seen_id: dict[str, int] = {}
    seen_addr: dict[int, int] = {}
    first_pca: int | None = None  # the board whose pwm_hz the others must share
    for i, b in enumerate(boards):
        p, line = f"boards[{i}]", _line_of(lines, i)
        if b["id"] in seen_id:
            raise c.fail(
                f"{p}.id", f"{_show(b['id'])} is already used by boards[{seen_id[b['id']]}]", line
            )
        seen_id[b["id"]] = i
        addr = b["i2c_address"]
        if b["kind"] == DriverKind.PCA9685.value:
            if addr is None:
                raise c.fail(
                    f"{p}.i2c_address",
                    "missing required key for a pca9685 board (allowed 64..127)",
                    line,
                )
            if addr in seen_addr:
                raise c.fail(
                    f"{p}.i2c_address",
                    f"{addr:#04x} is already used by boards[{seen_addr[addr]}]",
                    line,
                )
            seen_addr[addr] = i
            if b["channels"] > PCA9685_MAX_CHANNELS:
                raise c.fail(
                    f"{p}.channels",
                    f"{b['channels']} is out of range for a pca9685 (allowed 1..16)",
                    line,
                )
            if b["pwm_bits"] > PCA9685_MAX_BITS:
                raise c.fail(
                    f"{p}.pwm_bits",
                    f"{b['pwm_bits']} is out of range for a pca9685 (allowed 1..12)",
                    line,
                )
            lo, hi = PCA9685_HZ
            if not lo <= b["pwm_hz"] <= hi:
                raise c.fail(
                    f"{p}.pwm_hz",
                    f"{b['pwm_hz']} is out of range for a pca9685 (allowed {lo}..{hi})",
                    line,
                )
            if first_pca is None:
                first_pca = i
            elif b["pwm_hz"] != boards[first_pca]["pwm_hz"]:
                raise c.fail(
                    f"{p}.pwm_hz",
                    f"{b['pwm_hz']} differs from boards[{first_pca}].pwm_hz "
                    f"({boards[first_pca]['pwm_hz']}): the firmware runs every pca9685 board "
                    f"at one PWM frequency (allowed {boards[first_pca]['pwm_hz']})",
                    line,
                )
        elif addr is not None:
            raise c.fail(
                f"{p}.i2c_address",
                f"{addr} is not allowed on a {b['kind']} board (allowed: absent)",
                line,
            )


def _check_actuator(
    c: _Checker,
    path: str,
    act: Mapping[str, Any],
    boards: list[dict[str, Any]],
    blocks: dict[str, tuple[int, int, int]],
    used: dict[int, str],
    line: int | None,
) -> None:
    if act["board"] not in blocks:
        known = ", ".join(repr(b["id"]) for b in boards)
        raise c.fail(
            f"{path}.board", f"{_show(act['board'])} is not a listed board (allowed {known})", line
        )
    bi, first, end = blocks[act["board"]]
    ch = act["channel"]
    if not first <= ch < end:
        raise c.fail(
            f"{path}.channel",
            f"{ch} is outside board {act['board']!r}'s channels (allowed {first}..{end - 1})",
            line,
        )
    if ch in used:
        raise c.fail(f"{path}.channel", f"{ch} is already used by {used[ch]}", line)
    used[ch] = path
    bits = boards[bi]["pwm_bits"]
    if act["pwm_bits"] > bits:
        raise c.fail(
            f"{path}.pwm_bits",
            f"{act['pwm_bits']} is more than board {act['board']!r}'s pwm_bits (allowed 1..{bits})",
            line,
        )


def _check_keys(c: _Checker, keys: list[dict[str, Any]], lines: Any) -> list[int]:
    """Duplicate and missing pitches; returns the key indices sorted by pitch."""
    by_pitch: dict[int, int] = {}
    for i, k in enumerate(keys):
        if k["pitch"] in by_pitch:
            raise c.fail(
                f"keys[{i}].pitch",
                f"{k['pitch']} is already used by keys[{by_pitch[k['pitch']]}]",
                _line_of(lines, i),
            )
        by_pitch[k["pitch"]] = i
    order = sorted(by_pitch)
    for a, b in zip(order, order[1:], strict=False):
        if b != a + 1:
            i = by_pitch[b]
            raise c.fail(
                f"keys[{i}].pitch",
                f"{b} leaves a gap after {a} (keys must be contiguous: missing {a + 1}..{b - 1})",
                _line_of(lines, i),
            )
    return [by_pitch[p] for p in order]


def _check_strike_power_timing(c: _Checker, spec: PianoSpec, n_actuators: int) -> None:
    s, t, p, th = spec.strike, spec.timing, spec.power, spec.thermal
    if not s.min_pulse_us <= s.default_pulse_us <= s.max_pulse_us:
        raise c.fail(
            "strike.default_pulse_us",
            f"{s.default_pulse_us} is out of range (allowed strike.min_pulse_us..strike.max_pulse_us = "
            f"{s.min_pulse_us}..{s.max_pulse_us})",
        )
    if s.pulse_full_max_us is not None and not s.min_pulse_us <= s.pulse_full_max_us <= s.default_pulse_us:
        raise c.fail(
            "strike.pulse_full_max_us",
            f"{s.pulse_full_max_us} is out of range (allowed strike.min_pulse_us..strike.default_pulse_us = "
            f"{s.min_pulse_us}..{s.default_pulse_us})",
        )
    if s.max_pulse_us > th.max_on_us:
        raise c.fail(
            "strike.max_pulse_us",
            f"{s.max_pulse_us} is more than thermal.max_on_us (allowed {s.min_pulse_us}..{th.max_on_us})",
        )
    coil_a = p.supply_v / p.coil_ohm
    if coil_a > p.supply_a:
        raise c.fail(
            "power.coil_ohm",
            f"{p.coil_ohm:g} draws {coil_a:.3g} A at {p.supply_v:g} V, over power.supply_a "
            f"{p.supply_a:g} (allowed >= {p.supply_v / p.supply_a:.3g})",
        )
    budget = int(p.supply_a / coil_a + 1e-9)
    if p.max_simultaneous_strikes > min(budget, n_actuators):
        raise c.fail(
            "power.max_simultaneous_strikes",
            f"{p.max_simultaneous_strikes} needs {p.max_simultaneous_strikes * coil_a:.3g} A at full drive "
            f"({coil_a:.3g} A per coil) with {n_actuators} actuators and power.supply_a {p.supply_a:g} "
            f"(allowed 1..{min(budget, n_actuators)})",
        )
    if t.min_repeat_us < t.key_return_us:
        raise c.fail(
            "timing.min_repeat_us",
            f"{t.min_repeat_us} is less than timing.key_return_us (allowed {t.key_return_us}..2000000)",
        )


def _check_duty_limit(c: _Checker, spec: Any) -> None:
    """SpecError at ``thermal.coil_heat_capacity_j_per_k`` if the firmware's duty limit
    cannot keep some coil within ``thermal.coil_max_rise_k`` (spec.duty.duty_limit_problem),
    with the smallest heat capacity that it can."""
    from . import duty  # it imports the actuator map, which imports this package

    for act in spec.actuators:
        problem = duty.duty_limit_problem(act)
        if problem is not None:
            cap = spec.thermal.coil_heat_capacity_j_per_k
            need = _least_heat_capacity(act, cap)
            raise c.fail(
                "thermal.coil_heat_capacity_j_per_k",
                f"{cap:g}: {problem}; allowed >= {math.ceil(need * 1000) / 1000:g} with these "
                "power and thermal numbers (or a larger coil_max_rise_k, a lower hold_duty)",
            )


def _least_heat_capacity(act: Any, cap: float) -> float:
    """The heat capacity (J/K) past which the duty limit keeps ``act`` (built with
    ``cap``) within its rise, every larger one too."""
    from . import duty

    def fails(c_j_per_k: float) -> bool:  # the heating rate goes as 1 / C
        heat = act.heat_k_per_s * cap / c_j_per_k
        return duty.duty_limit_problem(replace(act, heat_k_per_s=heat)) is not None

    lo, hi = 0.0, 1e-3  # a bracket that does not depend on the value given
    while fails(hi):
        lo, hi = hi, hi * 2.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fails(mid) else (lo, mid)
    # the permille's rounding makes the edge ragged: past the last failure near it
    hi = max([hi] + [hi * (1 + i / 1000) for i in range(1, 1001) if fails(hi * (1 + i / 1000))])
    return hi * 1.001


def _check_nominal(c: _Checker, spec: PianoSpec) -> None:
    _check_nominal_curves(c, spec.nominal)
    slowest = max(spec.nominal.latency_us)
    if spec.timing.pipeline_delay_us < slowest:
        raise c.fail(
            "timing.pipeline_delay_us",
            f"{spec.timing.pipeline_delay_us} is less than the slowest nominal latency "
            f"(allowed {slowest}..2000000)",
        )


def _check_nominal_curves(c: _Checker, n: Any) -> None:
    """The nominal section's own rules (every family that has one)."""
    if not len(n.drive) == len(n.velocity) == len(n.latency_us):
        raise c.fail(
            "nominal",
            f"drive, velocity and latency_us have {len(n.drive)}, {len(n.velocity)} and "
            f"{len(n.latency_us)} items (allowed: the same length)",
        )
    for i, d in enumerate(n.drive):
        if d <= n.threshold:
            raise c.fail(
                f"nominal.drive[{i}]",
                f"{d:g} is not above nominal.threshold (allowed {n.threshold:g}<..1)",
            )
        if i and d <= n.drive[i - 1]:
            raise c.fail(
                f"nominal.drive[{i}]",
                f"{d:g} is not above nominal.drive[{i - 1}] = {n.drive[i - 1]:g} (must be strictly increasing)",
            )
    for i in range(1, len(n.velocity)):
        if n.velocity[i] <= n.velocity[i - 1]:
            raise c.fail(
                f"nominal.velocity[{i}]",
                f"{n.velocity[i]:g} is not above nominal.velocity[{i - 1}] = {n.velocity[i - 1]:g} "
                "(must be strictly increasing)",
            )
    for i in range(1, len(n.latency_us)):
        if n.latency_us[i] > n.latency_us[i - 1]:
            raise c.fail(
                f"nominal.latency_us[{i}]",
                f"{n.latency_us[i]} is above nominal.latency_us[{i - 1}] = {n.latency_us[i - 1]} "
                "(must be non-increasing)",
            )


# ---------------------------------------------------------------------------------
# Public API


def spec_family(doc: Any, source: str = "<spec>") -> str:
    """The ``instrument:`` family a parsed spec document names (absent: ``"piano"``, so
    specs written before families existed load unchanged). SpecError for an unknown
    family, and for a known one this version cannot load yet (guitar, bass)."""
    c = _Checker(source, doc)
    if not isinstance(doc, Mapping) or "instrument" not in doc:
        return "piano"
    family = doc["instrument"]
    line = _line_of(doc, "instrument")
    allowed = " | ".join(FAMILIES)
    if not isinstance(family, str) or family not in FAMILIES:
        raise c.fail(
            "instrument", f"{_show(family)} is not an instrument family (allowed {allowed})", line
        )
    if family not in SUPPORTED_FAMILIES:
        raise c.fail(
            "instrument",
            f"{_show(family)} is not yet supported by this version (allowed "
            f"{' | '.join(SUPPORTED_FAMILIES)}; {allowed} are the families a spec may name)",
            line,
        )
    return family


def spec_from_mapping(doc: Any, source: str = "<spec>") -> PianoSpec:
    """Validate a parsed spec document and build its family's spec (:class:`PianoSpec`,
    or :class:`~robo_player.spec.guitar.GuitarSpec` for ``instrument: guitar | bass``:
    typed as the piano's for the call sites that predate families; check ``.family``).

    ``source`` is the name errors start with (the file, as shown to the user).
    """
    c = _Checker(source, doc)
    family = spec_family(doc, source)
    if family in ("guitar", "bass"):
        from .guitar_loader import guitar_from_mapping  # it imports this module

        return cast(PianoSpec, guitar_from_mapping(c, doc, family))
    top = c.section(FAMILY_SECTIONS[family], doc, "")
    boards: list[dict[str, Any]] = top["boards"]
    keys: list[dict[str, Any]] = top["keys"]
    board_lines = doc.get("boards") if isinstance(doc, Mapping) else None
    key_lines = doc.get("keys") if isinstance(doc, Mapping) else None
    _check_boards(c, boards, board_lines)
    blocks = _board_blocks(boards)
    order = _check_keys(c, keys, key_lines)
    used: dict[int, str] = {}
    for i, k in enumerate(keys):
        _check_actuator(c, f"keys[{i}]", k, boards, blocks, used, _line_of(key_lines, i))
    pedal = top["pedal"]
    if pedal is not None:
        pl = _line_of(doc, "pedal") if isinstance(doc, Mapping) else None
        pd = {"channel": pedal.channel, "board": pedal.board, "pwm_bits": pedal.pwm_bits}
        _check_actuator(c, "pedal", pd, boards, blocks, used, pl)
    click = top["sync_click"]
    if click is not None:
        cl = _line_of(doc, "sync_click") if isinstance(doc, Mapping) else None
        cd = {"channel": click.channel, "board": click.board, "pwm_bits": click.pwm_bits}
        _check_actuator(c, "sync_click", cd, boards, blocks, used, cl)
    spec = PianoSpec(
        name=top["name"],
        description=top["description"],
        boards=tuple(DriverBoard(**{**b, "kind": DriverKind(b["kind"])}) for b in boards),
        keys=tuple(KeySpec(**keys[i]) for i in order),
        strike=top["strike"],
        thermal=top["thermal"],
        power=top["power"],
        timing=top["timing"],
        nominal=_tuples(top["nominal"]),
        pedal=pedal,
        sync_click=click,
    )
    _check_strike_power_timing(c, spec, spec.actuator_count)
    _check_duty_limit(c, spec)
    if pedal is not None and pedal.pull_in_us is not None and pedal.pull_in_us > spec.strike.max_pulse_us:
        raise c.fail(
            "pedal.pull_in_us",
            f"{pedal.pull_in_us} is longer than strike.max_pulse_us "
            f"(allowed 1000..{spec.strike.max_pulse_us})",
        )
    _check_nominal(c, spec)
    return spec


def _tuples(obj: Any) -> Any:
    """The same dataclass with its list fields as tuples (frozen, hashable)."""
    lists = {
        f.name: tuple(getattr(obj, f.name))
        for f in fields(obj)
        if isinstance(getattr(obj, f.name), list)
    }
    return replace(obj, **lists)


def list_specs() -> list[str]:
    """Names of the specs shipped in ``hardware_specs/``."""
    if not SPEC_DIR.is_dir():
        return []
    return sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))


def resolve_spec_path(name_or_path: str | Path) -> Path:
    """A bare name (``piano-88-grand``) -> ``hardware_specs/NAME.yaml``; a path as given."""
    text = str(name_or_path)
    if (
        isinstance(name_or_path, Path)
        or "/" in text
        or "\\" in text
        or text.endswith((".yaml", ".yml"))
    ):
        return Path(name_or_path)
    return SPEC_DIR / f"{text}.yaml"


# (source, sha256 of the text) -> spec. Keyed on the content, not the mtime, so a file
# rewritten within the file system's timestamp granularity is never served stale.
_cache: dict[tuple[str, str], PianoSpec] = {}
_CACHE_MAX = 64


def load_spec(name_or_path: str | Path) -> PianoSpec:
    """Load and validate a spec by name or path; SpecError on any problem."""
    path = resolve_spec_path(name_or_path)
    source = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        known = ", ".join(list_specs()) or "none"
        raise SpecError(f"{source}: spec file not found (known specs: {known})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"{source}: cannot read spec file: {err}") from err
    key = (source, hashlib.sha256(text.encode()).hexdigest())
    if key in _cache:
        return _cache[key]
    doc = parse_yaml(text, source)
    spec = spec_from_mapping(doc, source)
    log.debug("loaded spec %s from %s (hash %s)", spec.name, source, spec.spec_hash)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = spec
    return spec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m robo_player.spec", description=__doc__)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--schema", action="store_true", help="print the JSON Schema of spec files")
    g.add_argument("--markdown", action="store_true", help="print the field reference (Markdown)")
    g.add_argument("--check", nargs="+", metavar="SPEC", help="validate spec files or names")
    args = ap.parse_args(argv)
    if args.schema:
        sys.stdout.write(json.dumps(spec_json_schema(), indent=2) + "\n")
        return 0
    if args.markdown:
        sys.stdout.write(fields_markdown())
        return 0
    status = 0
    for name in args.check:
        try:
            spec = load_spec(name)
        except SpecError as err:
            sys.stderr.write(f"{err}\n")
            status = 1
        else:
            what = f"{len(spec.keys)} keys" if spec.family == "piano" else (
                f"{len(getattr(spec, 'strings', ()))} strings")
            sys.stdout.write(f"{name}: ok ({what}, hash {spec.spec_hash})\n")
    return status

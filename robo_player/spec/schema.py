"""The one table that describes a hardware spec file.

Every section of a spec YAML is a :class:`Section` of :class:`Field`\\ s. The same table
drives the loader's per-field validation (:mod:`robo_player.spec.loader`), the JSON
Schema (:func:`spec_json_schema`) and the field reference in ``hardware_specs/README.md``
(:func:`fields_markdown`). Rules that relate several fields (channel uniqueness,
contiguous keys, monotone curves, ...) live in the loader and are listed in
:data:`CROSS_FIELD_RULES` so that the schema and the README can name them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

# Pitch names are parsed in one place; re-exported here for the spec's callers.
from ..pitch import NOTE_PATTERN, note_to_pitch, pitch_to_note  # noqa: F401
from .model import (
    SUPPORTED_FAMILIES,
    DriverBoard,
    DriverKind,
    KeySpec,
    NominalCurves,
    PedalSpec,
    PianoSpec,
    PowerSpec,
    StrikeSpec,
    SyncClickSpec,
    ThermalSpec,
    TimingSpec,
)

SCHEMA_ID = "https://robo-player.invalid/hardware_specs/schema.json"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"


class Kind(Enum):
    """Value kinds a field can hold."""

    INT = "integer"
    FLOAT = "number"
    STR = "string"
    ENUM = "enum"
    PITCH = "pitch"  # MIDI number 0..127 or a note name like A0, C#4, Bb3
    INT_LIST = "integer list"
    FLOAT_LIST = "number list"
    SECTION = "section"
    SECTION_LIST = "section list"


@dataclass(frozen=True, slots=True)
class Field:
    """One key of a spec section: kind, bounds, unit and documentation."""

    name: str
    kind: Kind
    doc: str
    unit: str = ""
    lo: float | None = None  # inclusive bounds for numbers (and list items)
    hi: float | None = None
    required: bool = True
    pattern: str | None = None  # strings
    choices: tuple[str, ...] = ()  # enums
    section: Section | None = None  # nested section(s)
    min_items: int = 0  # lists
    max_items: int | None = None

    def range_text(self) -> str:
        """Allowed values in words, as the error messages and the README give them."""
        if self.kind in (Kind.INT, Kind.FLOAT, Kind.INT_LIST, Kind.FLOAT_LIST):
            return f"{_num(self.lo)}..{_num(self.hi)}"
        if self.kind is Kind.PITCH:
            return "0..127 or a note name like A0, C#4, Bb3"
        if self.kind is Kind.ENUM:
            return " | ".join(self.choices)
        if self.kind is Kind.STR:
            return f"text matching `{self.pattern}`" if self.pattern else "text"
        return ""


@dataclass(frozen=True, slots=True)
class Section:
    """A YAML mapping that becomes one dataclass."""

    name: str
    cls: type
    doc: str
    fields: tuple[Field, ...] = field(default_factory=tuple)

    def get(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def _num(x: float | None) -> str:
    if x is None:
        return "any"
    if float(x).is_integer():
        return str(int(x))
    return repr(float(x))


# ---------------------------------------------------------------------------------
# The table. Bounds are physical sanity limits for a solenoid instrument, not the
# values of any one build.

BOARD = Section(
    "boards[]",
    DriverBoard,
    "A driver board. Boards own consecutive blocks of the global channel space in the "
    "order they are listed: the first board owns channels 0..channels-1, the next one "
    "the following block, and so on. A key's output on its board is its channel minus "
    "the board's first channel.",
    (
        Field("id", Kind.STR, "name that keys and the pedal refer to", pattern=ID_PATTERN),
        Field(
            "kind",
            Kind.ENUM,
            "pca9685: 16-channel 12-bit I2C PWM board; direct: MCU timer pins",
            choices=tuple(k.value for k in DriverKind),
        ),
        Field("channels", Kind.INT, "outputs on the board (pca9685: at most 16)", "count", 1, 256),
        Field("pwm_bits", Kind.INT, "PWM resolution (pca9685: at most 12)", "bits", 1, 16),
        Field("pwm_hz", Kind.INT, "PWM frequency (pca9685: 24..1526, the same on every pca9685 board)", "Hz", 24, 100_000),
        Field(
            "i2c_address",
            Kind.INT,
            "7-bit I2C address (0x40..0x7F, hex allowed); required for pca9685, absent for direct; unique",
            "",
            0x40,
            0x7F,
            required=False,
        ),
        Field(
            "max_steps_per_s",
            Kind.INT,
            "step/dir carriages on this board: steps per second its MCU makes, all carriages "
            "together; each carriage's top speed is capped at its share (default 15000: the "
            "ATmega2560 measured ~19000)",
            "steps/s",
            1000,
            1_000_000,
            required=False,
        ),
    ),
)

KEY = Section(
    "keys[]",
    KeySpec,
    "One key's actuator. Keys may be listed in any order; the loader sorts them by "
    "pitch, and together they must cover a contiguous range without duplicates.",
    (
        Field("pitch", Kind.PITCH, "MIDI note number or note name (C4 = 60)", "MIDI", 0, 127),
        Field(
            "channel",
            Kind.INT,
            "global actuator index, unique across keys and pedal, inside the block of its board",
            "index",
            0,
            4095,
        ),
        Field("board", Kind.STR, "id of the driver board", pattern=ID_PATTERN),
        Field("pwm_bits", Kind.INT, "PWM resolution for this key (<= its board's)", "bits", 1, 16),
    ),
)

STRIKE = Section(
    "strike",
    StrikeSpec,
    "Peak-and-hold drive of a strike: a full-drive pulse, then a hold duty.",
    (
        Field("min_pulse_us", Kind.INT, "shortest full-drive pulse", "us", 100, 200_000),
        Field("max_pulse_us", Kind.INT, "longest full-drive pulse before hold", "us", 100, 200_000),
        Field(
            "default_pulse_us",
            Kind.INT,
            "pulse of every strike unless the planner shortens it",
            "us",
            100,
            200_000,
        ),
        Field(
            "pulse_full_max_us",
            Kind.INT,
            "the longest pulse any key needs for full effect (its P_full's upper bound): a "
            "strike cut to it plays as loud (default: default_pulse_us)",
            "us",
            100,
            200_000,
            required=False,
        ),
        Field(
            "hold_duty",
            Kind.FLOAT,
            "duty that holds a key down after the pulse",
            "fraction",
            0.0,
            1.0,
        ),
        Field(
            "min_drive",
            Kind.FLOAT,
            "lowest drive the planner will ever command",
            "fraction",
            0.0,
            1.0,
        ),
    ),
)

THERMAL = Section(
    "thermal",
    ThermalSpec,
    "Coil heating: dT/dt = duty^2 * V^2 / R / C - T / tau.",
    (
        Field(
            "max_on_us",
            Kind.INT,
            "longest a coil may stay energised (pulse + hold) in one go",
            "us",
            1_000,
            600_000_000,
        ),
        Field("coil_tau_s", Kind.FLOAT, "thermal time constant of one coil", "s", 0.1, 3600.0),
        Field(
            "coil_heat_capacity_j_per_k",
            Kind.FLOAT,
            "heat capacity of one coil",
            "J/K",
            0.1,
            1000.0,
        ),
        Field(
            "coil_max_rise_k", Kind.FLOAT, "allowed temperature rise over ambient", "K", 1.0, 200.0
        ),
        Field(
            "watchdog_ms",
            Kind.INT,
            "the firmware's watchdog fires this long after the host's last frame (default "
            "300; chosen from measured host pauses, docs/driver.md)",
            "ms",
            20,
            1000,
            required=False,
        ),
        Field(
            "watchdog_drain_ms",
            Kind.INT,
            "after the watchdog fires, the commands already queued on the MCU play out for "
            "at most this long (nothing new is taken), then every output goes off: all off "
            "at most watchdog_ms + watchdog_drain_ms after the host's last frame (default "
            "700; 0: all off when the watchdog fires; docs/driver.md)",
            "ms",
            0,
            10000,
            required=False,
        ),
    ),
)

POWER = Section(
    "power",
    PowerSpec,
    "Supply and coils. One coil draws supply_v / coil_ohm at full drive.",
    (
        Field("supply_v", Kind.FLOAT, "coil supply voltage", "V", 5.0, 100.0),
        Field("supply_a", Kind.FLOAT, "supply current limit", "A", 0.1, 500.0),
        Field("coil_ohm", Kind.FLOAT, "resistance of one coil", "ohm", 0.5, 1000.0),
        Field(
            "max_simultaneous_strikes",
            Kind.INT,
            "strikes whose pulses may overlap (full-drive current must fit supply_a)",
            "count",
            1,
            128,
        ),
    ),
)

TIMING = Section(
    "timing",
    TimingSpec,
    "Fixed delays and repetition limits.",
    (
        Field(
            "pipeline_delay_us",
            Kind.INT,
            "every note is held back by this much (>= the slowest nominal latency)",
            "us",
            0,
            2_000_000,
        ),
        Field(
            "min_repeat_us",
            Kind.INT,
            "shortest strike-to-strike interval on one key",
            "us",
            1_000,
            2_000_000,
        ),
        Field(
            "key_return_us",
            Kind.INT,
            "time a released key needs to come back up",
            "us",
            1_000,
            1_000_000,
        ),
    ),
)

NOMINAL = Section(
    "nominal",
    NominalCurves,
    "Curves used before calibration, tabulated at increasing drive levels: drive -> "
    "heard velocity and drive -> latency (drive start to string contact).",
    (
        Field(
            "threshold",
            Kind.FLOAT,
            "drive below which the hammer never reaches the string",
            "fraction",
            0.0,
            0.95,
        ),
        Field(
            "drive",
            Kind.FLOAT_LIST,
            "drive levels, strictly increasing, all > threshold",
            "fraction",
            0.0,
            1.0,
            min_items=2,
            max_items=1024,
        ),
        Field(
            "velocity",
            Kind.FLOAT_LIST,
            "heard velocity at each drive, strictly increasing",
            "MIDI velocity",
            0.0,
            200.0,
            min_items=2,
            max_items=1024,
        ),
        Field(
            "latency_us",
            Kind.INT_LIST,
            "latency at each drive, non-increasing",
            "us",
            100,
            2_000_000,
            min_items=2,
            max_items=1024,
        ),
    ),
)

# One output beside the keys (the pedal, the sync click): where it is wired
ONE_OUTPUT: tuple[Field, ...] = (
        Field(
            "channel",
            Kind.INT,
            "global actuator index, unique, inside its board's block",
            "index",
            0,
            4095,
        ),
        Field("board", Kind.STR, "id of the driver board", pattern=ID_PATTERN),
        Field("pwm_bits", Kind.INT, "PWM resolution (<= its board's)", "bits", 1, 16),
)

PEDAL = Section(
    "pedal",
    PedalSpec,
    "Sustain-pedal actuator (optional). Shares the channel space with the keys.",
    (
        *ONE_OUTPUT,
        Field(
            "latency_us", Kind.INT, "nominal command to dampers lifted/lowered", "us", 0, 1_000_000
        ),
        Field(
            "hold_duty",
            Kind.FLOAT,
            "duty that holds the pulled-in pedal down (peak and hold, as a key)",
            "fraction",
            0.0,
            1.0,
        ),
        Field(
            "pull_in_us",
            Kind.INT,
            "full drive this long when the pedal goes down, then hold_duty (default: "
            "latency_us, at most strike.max_pulse_us)",
            "us",
            1000,
            1_000_000,
            required=False,
        ),
    ),
)

SYNC_CLICK = Section(
    "sync_click",
    SyncClickSpec,
    "A click on a spare output (optional): a piezo disc next to the microphone, driven "
    "through a MOSFET; hearing's absolute time reference (docs/hearing.md). Shares the "
    "channel space with the keys.",
    (
        *ONE_OUTPUT,
        Field(
            "delay_us", Kind.INT, "output on-edge to the click at the microphone", "us", 0, 20_000
        ),
        Field("pulse_us", Kind.INT, "output on-time per click", "us", 100, 20_000),
    ),
)

# The shared part of every family's spec: boards and outputs, supply, coil heating and
# the safety limits in them (thermal.max_on_us, power.max_simultaneous_strikes).
SHARED_FIELDS: tuple[Field, ...] = (
    Field(
        "name",
        Kind.STR,
        "spec name (the file name without .yaml); plans and calibrations record it",
        pattern=NAME_PATTERN,
    ),
    Field("description", Kind.STR, "free text"),
    Field(
        "instrument",
        Kind.ENUM,
        "instrument family: picks the family's sections and its planner; absent means "
        "piano (specs written before families load unchanged)",
        choices=SUPPORTED_FAMILIES,
        required=False,
    ),
    Field("boards", Kind.SECTION_LIST, "driver boards", section=BOARD, min_items=1, max_items=256),
    Field("thermal", Kind.SECTION, "coil heating limits", section=THERMAL),
    Field("power", Kind.SECTION, "supply and coils", section=POWER),
)

# What the piano family adds.
PIANO_FIELDS: tuple[Field, ...] = (
    Field("keys", Kind.SECTION_LIST, "one entry per key", section=KEY, min_items=1, max_items=128),
    Field("strike", Kind.SECTION, "strike drive", section=STRIKE),
    Field("timing", Kind.SECTION, "delays and repetition", section=TIMING),
    Field("nominal", Kind.SECTION, "nominal curves", section=NOMINAL),
    Field("pedal", Kind.SECTION, "sustain pedal", section=PEDAL, required=False),
    Field("sync_click", Kind.SECTION, "a click for hearing's clock", section=SYNC_CLICK, required=False),
)

PIANO = Section(
    "",
    PianoSpec,
    "A solenoid piano (`instrument: piano`). The shared part of every family's spec is "
    f"{', '.join(f.name for f in SHARED_FIELDS)}; the piano adds "
    f"{', '.join(f.name for f in PIANO_FIELDS)}.",
    SHARED_FIELDS + PIANO_FIELDS,
)

# family -> its top-level section (the loader picks it from the `instrument:` key)
FAMILY_SECTIONS: dict[str, Section] = {"piano": PIANO}

SECTIONS: tuple[Section, ...] = (
    PIANO, BOARD, KEY, STRIKE, THERMAL, POWER, TIMING, NOMINAL, PEDAL, SYNC_CLICK,
)

# Checked by the loader after the per-field checks; named here for the schema and docs.
CROSS_FIELD_RULES: tuple[str, ...] = (
    "instrument is one of piano | guitar | bass (absent: piano)",
    "board ids are unique; pca9685 boards have an i2c_address (unique), at most 16 "
    "channels, at most 12 pwm_bits and pwm_hz 24..1526; direct boards have no i2c_address",
    "keys, pedal and sync_click name a listed board; their channel lies in that board's block and "
    "is used once across them (so each board output drives one actuator); their "
    "pwm_bits <= the board's pwm_bits",
    "key pitches are unique and contiguous (the loader sorts keys by pitch)",
    "strike.min_pulse_us <= strike.default_pulse_us <= strike.max_pulse_us <= thermal.max_on_us",
    "strike.min_pulse_us <= strike.pulse_full_max_us <= strike.default_pulse_us",
    "power: supply_v / coil_ohm <= supply_a, and max_simultaneous_strikes * supply_v / "
    "coil_ohm <= supply_a; max_simultaneous_strikes <= number of actuators",
    "timing.min_repeat_us >= timing.key_return_us",
    "thermal: the firmware's duty limit keeps a coil 10 % off the spec (heat capacity, "
    "tau) within coil_max_rise_k with a duty window of at least 100 ms, and drains at "
    "least the hold_duty's weight (docs/hardware.md \"Coil heat\")",
    "nominal: drive, velocity and latency_us have the same length; drive strictly "
    "increasing and every drive > threshold; velocity strictly increasing; latency_us "
    "non-increasing; timing.pipeline_delay_us >= max(latency_us)",
)


# ---------------------------------------------------------------------------------
# JSON Schema and Markdown, both derived from the table above.


def _field_schema(f: Field) -> dict[str, Any]:
    desc = f.doc + (f" [{f.unit}]" if f.unit else "")
    out: dict[str, Any]
    if f.kind is Kind.INT:
        out = {"type": "integer", "minimum": f.lo, "maximum": f.hi}
    elif f.kind is Kind.FLOAT:
        out = {"type": "number", "minimum": f.lo, "maximum": f.hi}
    elif f.kind is Kind.STR:
        out = {"type": "string"}
        if f.pattern:
            out["pattern"] = f.pattern
    elif f.kind is Kind.ENUM:
        out = {"type": "string", "enum": list(f.choices)}
    elif f.kind is Kind.PITCH:
        out = {
            "oneOf": [
                {"type": "integer", "minimum": f.lo, "maximum": f.hi},
                {"type": "string", "pattern": NOTE_PATTERN},
            ]
        }
    elif f.kind in (Kind.INT_LIST, Kind.FLOAT_LIST):
        item = "integer" if f.kind is Kind.INT_LIST else "number"
        out = {
            "type": "array",
            "items": {"type": item, "minimum": f.lo, "maximum": f.hi},
            "minItems": f.min_items,
        }
        if f.max_items is not None:
            out["maxItems"] = f.max_items
    elif f.kind is Kind.SECTION:
        assert f.section is not None
        out = {"$ref": f"#/$defs/{f.section.cls.__name__}"}
    else:  # SECTION_LIST
        assert f.section is not None
        out = {
            "type": "array",
            "items": {"$ref": f"#/$defs/{f.section.cls.__name__}"},
            "minItems": f.min_items,
        }
        if f.max_items is not None:
            out["maxItems"] = f.max_items
    out["description"] = desc
    return out


def _section_schema(s: Section) -> dict[str, Any]:
    return {
        "type": "object",
        "description": s.doc,
        "properties": {f.name: _field_schema(f) for f in s.fields},
        "required": [f.name for f in s.fields if f.required],
        "additionalProperties": False,
    }


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a spec file, derived from the field table.

    It covers the per-field rules (keys, types, ranges); the cross-field rules are in
    its ``$comment`` and are checked by the loader only.
    """
    from .guitar_schema import GUITAR_RULES, GUITAR_SECTIONS  # it imports this module

    root = _section_schema(PIANO)
    root.pop("description")
    defs = {s.cls.__name__: _section_schema(s) for s in SECTIONS[1:]}
    defs.update({s.cls.__name__: _section_schema(s) for s in GUITAR_SECTIONS})
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "robo_player solenoid piano hardware spec",
        "description": PIANO.doc
        + " Guitar and bass specs (instrument: guitar | bass) validate against "
        "#/$defs/GuitarSpec instead.",
        "$comment": "Also checked by the loader: "
        + "; ".join(CROSS_FIELD_RULES + GUITAR_RULES),
        **root,
        "$defs": defs,
    }


def fields_markdown() -> str:
    """The field reference of ``hardware_specs/README.md`` (generated, kept in sync by a test)."""
    from .guitar_schema import GUITAR_RULES, GUITAR_SECTIONS  # it imports this module

    lines: list[str] = []
    for s in SECTIONS + GUITAR_SECTIONS:
        title = s.name or f"top level ({s.cls.__name__})"
        lines += [f"### `{title}`", "", s.doc, ""]
        lines += [
            "| key | required | type | unit | allowed | meaning |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for f in s.fields:
            kind = f.kind.value
            if f.section is not None:
                kind = f"`{f.section.name}`" + (" list" if f.kind is Kind.SECTION_LIST else "")
            allowed = f.range_text().replace("|", "\\|")
            if f.kind in (Kind.SECTION_LIST, Kind.INT_LIST, Kind.FLOAT_LIST):
                items = f"{f.min_items}..{f.max_items} items"
                allowed = f"{items}, each {allowed}" if allowed else items
            req = "yes" if f.required else "no"
            lines.append(
                f"| `{f.name}` | {req} | {kind} | {f.unit or '-'} | {allowed or '-'} | {f.doc} |"
            )
        lines.append("")
    lines += ["### Rules across fields", ""]
    lines += [f"- {r}" for r in CROSS_FIELD_RULES + GUITAR_RULES]
    return "\n".join(lines) + "\n"

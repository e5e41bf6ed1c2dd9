"""Hardware specs: the shipped files, every validation rule, the JSON Schema."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player.errors import SpecError
from robo_player.spec import (
    DEFAULT_SPEC,
    SPEC_DIR,
    Actuator,
    ActuatorKind,
    ActuatorMap,
    DriverKind,
    InstrumentSpec,
    PianoSpec,
    list_specs,
    load_spec,
    note_to_pitch,
    pitch_to_note,
    spec_from_mapping,
    spec_json_schema,
)
from robo_player.spec.loader import main as spec_cli
from robo_player.spec.schema import PIANO, SECTIONS, Field, Kind, fields_markdown

ROOT = Path(__file__).resolve().parents[1]
GRAND = SPEC_DIR / "piano-88-grand.yaml"
DIY = SPEC_DIR / "piano-61-diy.yaml"
GRAND_DOC: dict[str, Any] = yaml.safe_load(GRAND.read_text())
DIY_DOC: dict[str, Any] = yaml.safe_load(DIY.read_text())
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# Pinned: calibrations and plans record the spec hash, so a change must be deliberate.
GRAND_HASH = "d9824c0c603a9bdd"
DIY_HASH = "4228e7bca618066c"  # session 7: its mcu board grew a 62nd pin, the sync click


def grand() -> dict[str, Any]:
    return copy.deepcopy(GRAND_DOC)


def diy() -> dict[str, Any]:
    return copy.deepcopy(DIY_DOC)


def write(tmp_path: Path, doc: Any, name: str = "mutant.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.dump(doc, Dumper=DUMPER, sort_keys=False))
    return path


def load_error(tmp_path: Path, doc: Any, *fragments: str) -> str:
    """Write ``doc``, load it, and check the SpecError names the file and every fragment."""
    path = write(tmp_path, doc)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# ---------------------------------------------------------------------------------
# The shipped specs


def test_shipped_specs_are_listed_and_default_exists() -> None:
    assert list_specs() == ["bass-4", "guitar-matrix", "guitar-slider", "guitar-slider-servo", "piano-61-diy",
                            "piano-88-grand"]
    assert DEFAULT_SPEC in list_specs()
    assert load_spec(DEFAULT_SPEC) == load_spec(GRAND)


def test_grand_spec_matches_the_build() -> None:
    s = load_spec("piano-88-grand")
    assert isinstance(s, PianoSpec)
    assert (s.lowest, s.highest, len(s.keys)) == (21, 108, 88)
    assert [k.pitch for k in s.keys] == list(range(21, 109))
    assert len(s.boards) == 6
    assert all(
        b.kind is DriverKind.PCA9685 and b.channels == 16 and b.pwm_bits == 12 for b in s.boards
    )
    assert [b.i2c_address for b in s.boards] == list(range(0x40, 0x46))
    assert s.pedal is not None and s.sync_click is not None and s.actuator_count == 90
    channels = [k.channel for k in s.keys] + [s.pedal.channel]
    assert len(set(channels)) == 89
    p = s.power
    assert (p.supply_v, p.supply_a, p.coil_ohm, p.max_simultaneous_strikes) == (48.0, 40.0, 10.0, 8)
    assert p.max_simultaneous_strikes * p.supply_v / p.coil_ohm <= p.supply_a
    assert (s.strike.min_pulse_us, s.strike.default_pulse_us, s.strike.max_pulse_us) == (
        5000,
        35000,
        40000,
    )
    assert (s.strike.hold_duty, s.strike.min_drive) == (0.35, 0.2)
    assert s.thermal.max_on_us == 20_000_000 and s.thermal.coil_tau_s == 30.0
    assert s.timing.pipeline_delay_us == 300_000 and s.timing.min_repeat_us == 100_000
    assert s.timing.key_return_us == 70_000
    assert s.key(60).pitch == 60 and s.key(60).pwm_max == 4095


def test_diy_spec_matches_the_build() -> None:
    s = load_spec("piano-61-diy")
    assert (s.lowest, s.highest, len(s.keys)) == (36, 96, 61)
    assert s.pedal is None and s.actuator_count == 62  # 61 keys and the sync click
    assert s.sync_click is not None and (s.sync_click.board, s.sync_click.channel) == ("mcu", 61)
    (board,) = s.boards
    assert board.kind is DriverKind.DIRECT and board.i2c_address is None
    assert board.channels == 62 and board.pwm_bits == 8
    assert all(k.pwm_max == 255 for k in s.keys)
    p = s.power
    assert (p.supply_v, p.supply_a, p.coil_ohm, p.max_simultaneous_strikes) == (24.0, 15.0, 8.0, 4)
    assert p.supply_v / p.coil_ohm == 3.0


@pytest.mark.parametrize("path", [GRAND, DIY], ids=["grand", "diy"])
def test_nominal_curves_follow_the_simulator_physics(path: Path) -> None:
    n = load_spec(path).nominal
    assert n.threshold == 0.22
    assert len(n.drive) >= 12 and n.drive[-1] == 1.0 and 0.23 <= n.drive[0] <= 0.25
    for d, v, lat in zip(n.drive, n.velocity, n.latency_us, strict=True):
        u = (d - 0.22) / 0.78
        assert lat == pytest.approx(20_000 * u**-0.7, abs=1)
        want_v = 135 * (0.08 + 0.92 * (1 - math.exp(-2.5 * u)) / (1 - math.exp(-2.5)))
        assert v == pytest.approx(want_v, abs=0.006)
    assert max(n.latency_us) <= 300_000


def test_hashes_are_pinned_stable_and_distinct(tmp_path: Path) -> None:
    g, d = load_spec(GRAND), load_spec(DIY)
    assert g.spec_hash == GRAND_HASH
    assert d.spec_hash == DIY_HASH
    assert g.spec_hash != d.spec_hash
    # The hash is over the content, not the formatting: same spec, other YAML layout,
    # keys reversed and pitches as numbers instead of note names.
    doc = grand()
    doc["keys"] = list(reversed(doc["keys"]))
    for k in doc["keys"]:
        k["pitch"] = note_to_pitch(k["pitch"]) if isinstance(k["pitch"], str) else k["pitch"]
    doc["power"]["supply_v"] = 48  # int instead of float
    again = load_spec(write(tmp_path, doc))
    assert again == g and again.spec_hash == GRAND_HASH


def test_generator_reproduces_the_shipped_files() -> None:
    spec = importlib.util.spec_from_file_location("make_specs", ROOT / "scripts" / "make_specs.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_specs"] = mod  # dataclasses look their module up while defining
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules["make_specs"]
    files = mod.generated_files()
    assert {p.name for p in files} == {
        "piano-88-grand.yaml",
        "piano-61-diy.yaml",
        "guitar-matrix.yaml",
        "guitar-slider.yaml",
        "guitar-slider-servo.yaml",
        "bass-4.yaml",
        "schema.json",
        "README.md",
    }
    for path, text in files.items():
        assert path.read_text() == text, f"{path.name}: run python scripts/make_specs.py"


def test_cli_check_schema_and_markdown(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert spec_cli(["--check", "piano-88-grand", str(DIY)]) == 0
    out = capsys.readouterr().out
    assert f"piano-88-grand: ok (88 keys, hash {GRAND_HASH})" in out
    assert f"ok (61 keys, hash {DIY_HASH})" in out
    doc = grand()
    doc["power"]["supply_v"] = 400
    assert spec_cli(["--check", str(write(tmp_path, doc))]) == 1
    assert "power.supply_v: 400 is out of range" in capsys.readouterr().err
    assert spec_cli(["--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == spec_json_schema()
    assert spec_cli(["--markdown"]) == 0
    assert capsys.readouterr().out == fields_markdown()


# ---------------------------------------------------------------------------------
# JSON Schema, README


def _validate(
    schema: dict[str, Any], node: dict[str, Any], value: Any, where: str = "$"
) -> list[str]:
    """A small JSON Schema checker for the keywords our schema uses (no jsonschema dep)."""
    errs: list[str] = []
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        return _validate(schema, schema["$defs"][name], value, where)
    if "oneOf" in node:
        ok = [s for s in node["oneOf"] if not _validate(schema, s, value, where)]
        return [] if len(ok) == 1 else [f"{where}: matches {len(ok)} of oneOf"]
    t = node.get("type")
    types = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "number": (int, float),
    }
    if t and (not isinstance(value, types[t]) or isinstance(value, bool)):
        return [f"{where}: {value!r} is not {t}"]
    if "minimum" in node and not value >= node["minimum"]:
        errs.append(f"{where}: below minimum")
    if "maximum" in node and not value <= node["maximum"]:
        errs.append(f"{where}: above maximum")
    if "pattern" in node and not re.search(node["pattern"], value):
        errs.append(f"{where}: pattern")
    if "enum" in node and value not in node["enum"]:
        errs.append(f"{where}: enum")
    if t == "array":
        if len(value) < node.get("minItems", 0) or len(value) > node.get("maxItems", 1 << 30):
            errs.append(f"{where}: item count")
        for i, item in enumerate(value):
            errs += _validate(schema, node["items"], item, f"{where}[{i}]")
    if t == "object":
        for req in node.get("required", []):
            if req not in value:
                errs.append(f"{where}.{req}: required")
        for k, v in value.items():
            if k in node["properties"]:
                errs += _validate(schema, node["properties"][k], v, f"{where}.{k}")
            elif node.get("additionalProperties") is False:
                errs.append(f"{where}.{k}: additional property")
    return errs


def schema_errors(doc: Any) -> list[str]:
    schema = spec_json_schema()
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        return _validate(schema, schema, doc)
    validator = jsonschema.Draft202012Validator(schema)
    return [e.message for e in validator.iter_errors(doc)]


def test_schema_accepts_both_shipped_specs() -> None:
    schema = spec_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema_errors(grand()) == []
    assert schema_errors(diy()) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["strike"].update(hold_dutty=0.3),
        lambda d: d["power"].update(supply_v=400),
        lambda d: d.pop("timing"),
        lambda d: d["keys"][0].update(pitch="H2"),
        lambda d: d["boards"][0].update(kind="arduino"),
        lambda d: d["nominal"].update(drive=[0.5]),
    ],
    ids=["unknown", "range", "required", "pitch", "enum", "min-items"],
)
def test_schema_and_loader_both_reject(mutate: Any) -> None:
    doc = grand()
    mutate(doc)
    assert schema_errors(doc)
    with pytest.raises(SpecError):
        spec_from_mapping(doc, "mutant")


def test_schema_file_is_up_to_date() -> None:
    shipped = json.loads((SPEC_DIR / "schema.json").read_text())
    assert shipped == spec_json_schema(), (
        "run: python -m robo_player.spec --schema > hardware_specs/schema.json"
    )


def test_schema_is_derived_from_the_table() -> None:
    schema = spec_json_schema()
    assert set(schema["properties"]) == {f.name for f in PIANO.fields}
    assert schema["required"] == [f.name for f in PIANO.fields if f.required]
    for section in SECTIONS[1:]:
        sub = schema["$defs"][section.cls.__name__]
        assert sub["additionalProperties"] is False
        for f in section.fields:
            if f.kind in (Kind.INT, Kind.FLOAT):
                assert (
                    sub["properties"][f.name]["minimum"],
                    sub["properties"][f.name]["maximum"],
                ) == (f.lo, f.hi)
        # Every field of the dataclass is in the table and vice versa.
        assert set(section.cls.__dataclass_fields__) == set(section.names), section.name


def test_readme_field_reference_is_up_to_date() -> None:
    readme = (SPEC_DIR / "README.md").read_text()
    assert fields_markdown() in readme, "regenerate with: python -m robo_player.spec --markdown"


# ---------------------------------------------------------------------------------
# Each validation rule, on a mutated copy of a valid spec


def test_unknown_top_level_key(tmp_path: Path) -> None:
    doc = grand()
    doc["colour"] = "black"
    load_error(
        tmp_path,
        doc,
        "colour: unknown key 'colour'",
        "allowed keys: name, description, instrument, boards",
    )


def test_unknown_nested_key(tmp_path: Path) -> None:
    doc = grand()
    doc["strike"]["hold_dutty"] = 0.3
    load_error(tmp_path, doc, "strike.hold_dutty: unknown key 'hold_dutty'", "hold_duty, min_drive")


def test_unknown_key_in_list_item(tmp_path: Path) -> None:
    doc = grand()
    doc["keys"][3]["pin"] = 7
    load_error(
        tmp_path,
        doc,
        "keys[3].pin: unknown key 'pin'",
        "allowed keys: pitch, channel, board, pwm_bits",
    )


def test_unknown_key_in_pedal_and_board(tmp_path: Path) -> None:
    doc = grand()
    doc["pedal"]["invert"] = True
    load_error(tmp_path, doc, "pedal.invert: unknown key", "latency_us, hold_duty")
    doc = grand()
    doc["boards"][2]["bus"] = 1
    load_error(tmp_path, doc, "boards[2].bus: unknown key", "i2c_address")


def test_missing_required_key(tmp_path: Path) -> None:
    doc = grand()
    del doc["strike"]["max_pulse_us"]
    load_error(tmp_path, doc, "strike.max_pulse_us: missing required key", "allowed 100..200000")
    doc = grand()
    del doc["nominal"]
    load_error(tmp_path, doc, "nominal: missing required key")
    doc = grand()
    del doc["keys"][7]["board"]
    load_error(tmp_path, doc, "keys[7].board: missing required key")


def test_pedal_is_optional(tmp_path: Path) -> None:
    doc = grand()
    del doc["pedal"]
    s = load_spec(write(tmp_path, doc))
    assert s.pedal is None and s.actuator_count == 89  # the keys and the sync click


@pytest.mark.parametrize(
    ("section", "key", "value", "fragment"),
    [
        ("power", "supply_v", "48V", "power.supply_v: '48V' is not a number (allowed 5..100)"),
        (
            "power",
            "max_simultaneous_strikes",
            2.5,
            "power.max_simultaneous_strikes: 2.5 is not an integer",
        ),
        ("strike", "hold_duty", True, "strike.hold_duty: True is not a number (allowed 0..1)"),
        (
            "timing",
            "pipeline_delay_us",
            300000.0,
            "timing.pipeline_delay_us: 300000.0 is not an integer",
        ),
        ("thermal", "coil_tau_s", [30], "thermal.coil_tau_s: a list is not a number"),
        ("pedal", "board", 5, "pedal.board: 5 is not text"),
    ],
)
def test_wrong_type(tmp_path: Path, section: str, key: str, value: Any, fragment: str) -> None:
    doc = grand()
    doc[section][key] = value
    load_error(tmp_path, doc, fragment)


def test_wrong_container_types(tmp_path: Path) -> None:
    doc = grand()
    doc["boards"] = {"pca0": 1}
    load_error(tmp_path, doc, "boards: a mapping is not a list")
    doc = grand()
    doc["strike"] = 5
    load_error(tmp_path, doc, "strike: 5 is not a mapping (allowed keys: min_pulse_us")
    doc = grand()
    doc["keys"][0] = "A0"
    load_error(tmp_path, doc, "keys[0]: 'A0' is not a mapping")
    doc = grand()
    doc["nominal"]["velocity"][2] = "loud"
    load_error(tmp_path, doc, "nominal.velocity[2]: 'loud' is not a number")


@pytest.mark.parametrize(
    ("section", "key", "value", "fragment"),
    [
        ("power", "supply_v", 400, "power.supply_v: 400 is out of range (allowed 5..100)"),
        ("power", "coil_ohm", 0.1, "power.coil_ohm: 0.1 is out of range (allowed 0.5..1000)"),
        ("strike", "hold_duty", 1.5, "strike.hold_duty: 1.5 is out of range (allowed 0..1)"),
        (
            "strike",
            "min_drive",
            float("nan"),
            "strike.min_drive: nan is out of range (allowed 0..1)",
        ),
        (
            "thermal",
            "coil_max_rise_k",
            500,
            "thermal.coil_max_rise_k: 500 is out of range (allowed 1..200)",
        ),
        (
            "timing",
            "min_repeat_us",
            -5,
            "timing.min_repeat_us: -5 is out of range (allowed 1000..2000000)",
        ),
        (
            "pedal",
            "latency_us",
            5_000_000,
            "pedal.latency_us: 5000000 is out of range (allowed 0..1000000)",
        ),
    ],
)
def test_out_of_range(tmp_path: Path, section: str, key: str, value: Any, fragment: str) -> None:
    doc = grand()
    doc[section][key] = value
    load_error(tmp_path, doc, fragment)


def test_out_of_range_list_item_and_count(tmp_path: Path) -> None:
    doc = grand()
    doc["nominal"]["drive"][-1] = 1.2
    load_error(tmp_path, doc, "nominal.drive[14]: 1.2 is out of range (allowed 0..1)")
    doc = grand()
    doc["boards"] = []
    load_error(tmp_path, doc, "boards: 0 items is out of range (allowed 1..256 items)")


def test_duplicate_channel_between_keys(tmp_path: Path) -> None:
    doc = grand()
    doc["keys"][12]["channel"] = doc["keys"][3]["channel"]
    load_error(tmp_path, doc, "keys[12].channel: 3 is already used by keys[3]")


def test_pedal_shares_the_channel_space(tmp_path: Path) -> None:
    doc = grand()
    doc["pedal"]["channel"] = 87
    load_error(tmp_path, doc, "pedal.channel: 87 is already used by keys[87]")


def test_channel_beyond_its_board(tmp_path: Path) -> None:
    doc = grand()
    doc["keys"][0]["channel"] = 20
    load_error(tmp_path, doc, "keys[0].channel: 20 is outside board 'pca0'", "(allowed 0..15)")
    doc = grand()
    doc["pedal"]["channel"] = 96
    load_error(tmp_path, doc, "pedal.channel: 96 is outside board 'pca5'", "(allowed 80..95)")


def test_unknown_board(tmp_path: Path) -> None:
    doc = grand()
    doc["keys"][5]["board"] = "pca9"
    load_error(tmp_path, doc, "keys[5].board: 'pca9' is not a listed board", "'pca0', 'pca1'")


def test_key_pwm_bits_above_board(tmp_path: Path) -> None:
    doc = diy()
    doc["keys"][4]["pwm_bits"] = 12
    load_error(tmp_path, doc, "keys[4].pwm_bits: 12 is more than board 'mcu'", "(allowed 1..8)")
    doc = grand()
    doc["pedal"]["pwm_bits"] = 16
    load_error(tmp_path, doc, "pedal.pwm_bits: 16 is more than board 'pca5'", "(allowed 1..12)")


def test_lower_key_pwm_bits_are_fine(tmp_path: Path) -> None:
    doc = grand()
    doc["keys"][4]["pwm_bits"] = 10
    assert load_spec(write(tmp_path, doc)).keys[4].pwm_max == 1023


def test_duplicate_pitch(tmp_path: Path) -> None:
    doc = grand()
    doc["keys"][1]["pitch"] = 21
    load_error(tmp_path, doc, "keys[1].pitch: 21 is already used by keys[0]")


def test_gap_in_keys(tmp_path: Path) -> None:
    doc = grand()
    del doc["keys"][40]  # pitch 61
    load_error(tmp_path, doc, "keys[40].pitch: 62 leaves a gap after 60", "missing 61..61")


def test_keys_are_sorted_by_pitch(tmp_path: Path) -> None:
    doc = diy()
    doc["keys"] = doc["keys"][30:] + doc["keys"][:30]
    s = load_spec(write(tmp_path, doc))
    assert [k.pitch for k in s.keys] == list(range(36, 97))
    assert s.key(36).channel == 0


def test_bad_pitch_names(tmp_path: Path) -> None:
    doc = grand()
    doc["keys"][0]["pitch"] = "H0"
    load_error(tmp_path, doc, "keys[0].pitch: 'H0' is not a pitch", "note name")
    doc = grand()
    doc["keys"][0]["pitch"] = "G#9"
    load_error(tmp_path, doc, "keys[0].pitch: 'G#9' is MIDI 128, out of range (allowed 0..127)")
    doc = grand()
    doc["keys"][0]["pitch"] = 130
    load_error(tmp_path, doc, "keys[0].pitch: 130 is out of range")


@pytest.mark.parametrize(
    ("name", "pitch"),
    [
        ("A0", 21),
        ("C4", 60),
        ("C#4", 61),
        ("Db4", 61),
        ("c8", 108),
        ("C-1", 0),
        ("G9", 127),
        ("Bb3", 58),
    ],
)
def test_note_names(name: str, pitch: int) -> None:
    assert note_to_pitch(name) == pitch


@given(st.integers(0, 127))
def test_note_name_round_trip(pitch: int) -> None:
    assert note_to_pitch(pitch_to_note(pitch)) == pitch


def test_nominal_lengths_differ(tmp_path: Path) -> None:
    doc = grand()
    doc["nominal"]["velocity"].pop()
    load_error(tmp_path, doc, "nominal: drive, velocity and latency_us have 15, 14 and 15 items")


def test_nominal_drive_not_increasing(tmp_path: Path) -> None:
    doc = grand()
    doc["nominal"]["drive"][5] = doc["nominal"]["drive"][4]
    load_error(tmp_path, doc, "nominal.drive[5]: 0.276 is not above nominal.drive[4] = 0.276")


def test_nominal_drive_at_threshold(tmp_path: Path) -> None:
    doc = grand()
    doc["nominal"]["threshold"] = 0.25
    load_error(tmp_path, doc, "nominal.drive[0]: 0.2395 is not above nominal.threshold")


def test_nominal_velocity_not_increasing(tmp_path: Path) -> None:
    doc = grand()
    doc["nominal"]["velocity"][3] = 20.0
    load_error(tmp_path, doc, "nominal.velocity[3]: 20 is not above nominal.velocity[2] = 24.42")


def test_nominal_latency_increasing(tmp_path: Path) -> None:
    doc = grand()
    doc["nominal"]["latency_us"][6] = 130000
    load_error(
        tmp_path, doc, "nominal.latency_us[6]: 130000 is above nominal.latency_us[5] = 105096"
    )


def test_nominal_latency_may_stay_flat(tmp_path: Path) -> None:
    doc = grand()
    doc["nominal"]["latency_us"][-2] = doc["nominal"]["latency_us"][-1]
    load_spec(write(tmp_path, doc))


def test_pulse_order(tmp_path: Path) -> None:
    doc = grand()
    doc["strike"]["default_pulse_us"] = 45000
    load_error(tmp_path, doc, "strike.default_pulse_us: 45000 is out of range", "5000..40000")
    doc = grand()
    doc["strike"]["min_pulse_us"] = 36000
    load_error(tmp_path, doc, "strike.default_pulse_us: 35000 is out of range", "36000..40000")
    doc = grand()
    doc["thermal"]["max_on_us"] = 30000
    load_error(tmp_path, doc, "strike.max_pulse_us: 40000 is more than thermal.max_on_us")


def test_pulse_full_max_within_the_pulses(tmp_path: Path) -> None:
    """strike.pulse_full_max_us (optional, not hashed) lies in min_pulse_us..default_pulse_us."""
    doc = grand()
    doc["strike"]["pulse_full_max_us"] = 36000
    load_error(tmp_path, doc, "strike.pulse_full_max_us: 36000 is out of range", "5000..35000")
    doc["strike"]["pulse_full_max_us"] = 4000
    load_error(tmp_path, doc, "strike.pulse_full_max_us: 4000 is out of range", "5000..35000")
    doc["strike"]["pulse_full_max_us"] = 25000
    s = load_spec(write(tmp_path, doc))
    assert s.strike.full_pulse_us == 25000 and s.spec_hash == GRAND_HASH
    del doc["strike"]["pulse_full_max_us"]
    s = load_spec(write(tmp_path, doc))
    assert s.strike.full_pulse_us == s.strike.default_pulse_us == 35000 and s.spec_hash == GRAND_HASH


def test_pipeline_delay_below_slowest_latency(tmp_path: Path) -> None:
    doc = grand()
    doc["timing"]["pipeline_delay_us"] = 200000
    load_error(
        tmp_path,
        doc,
        "timing.pipeline_delay_us: 200000 is less than the slowest nominal latency",
        "264528",
    )


def test_min_repeat_below_key_return(tmp_path: Path) -> None:
    doc = grand()
    doc["timing"]["min_repeat_us"] = 50000
    load_error(
        tmp_path, doc, "timing.min_repeat_us: 50000 is less than timing.key_return_us", "70000"
    )


def test_power_budget(tmp_path: Path) -> None:
    doc = grand()
    doc["power"]["max_simultaneous_strikes"] = 9
    load_error(tmp_path, doc, "power.max_simultaneous_strikes: 9 needs 43.2 A", "(allowed 1..8)")
    doc = grand()
    doc["power"]["coil_ohm"] = 1.0
    load_error(tmp_path, doc, "power.coil_ohm: 1 draws 48 A", "power.supply_a 40")


def test_board_rules(tmp_path: Path) -> None:
    doc = grand()
    doc["boards"][3]["id"] = "pca1"
    load_error(tmp_path, doc, "boards[3].id: 'pca1' is already used by boards[1]")
    doc = grand()
    doc["boards"][1]["i2c_address"] = 0x40
    load_error(tmp_path, doc, "boards[1].i2c_address: 0x40 is already used by boards[0]")
    doc = grand()
    del doc["boards"][0]["i2c_address"]
    load_error(tmp_path, doc, "boards[0].i2c_address: missing required key for a pca9685")
    doc = grand()
    doc["boards"][0]["channels"] = 17
    load_error(
        tmp_path, doc, "boards[0].channels: 17 is out of range for a pca9685 (allowed 1..16)"
    )
    doc = grand()
    doc["boards"][0]["pwm_bits"] = 16
    load_error(
        tmp_path, doc, "boards[0].pwm_bits: 16 is out of range for a pca9685 (allowed 1..12)"
    )
    doc = grand()
    doc["boards"][0]["pwm_hz"] = 2000
    load_error(
        tmp_path, doc, "boards[0].pwm_hz: 2000 is out of range for a pca9685 (allowed 24..1526)"
    )
    doc = grand()
    doc["boards"][3]["pwm_hz"] = 500
    load_error(tmp_path, doc, "boards[3].pwm_hz: 500 differs from boards[0].pwm_hz (1000)")
    doc = diy()
    doc["boards"][0]["i2c_address"] = 0x40
    load_error(tmp_path, doc, "boards[0].i2c_address: 64 is not allowed on a direct board")
    doc = grand()
    doc["boards"][0]["kind"] = "arduino"
    load_error(tmp_path, doc, "boards[0].kind: 'arduino' is not allowed (allowed pca9685 | direct)")


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    load_error(tmp_path, None, "<top>: null is not a mapping", "allowed keys: name")
    load_error(tmp_path, [1, 2], "<top>: a list is not a mapping")


def test_bad_yaml_syntax_names_line_and_column(tmp_path: Path) -> None:
    text = GRAND.read_text().replace("  hold_duty: 0.35  #", "  hold_duty: [0.35  #", 1)
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: line ") and "column" in msg and "YAML syntax error" in msg
    assert isinstance(info.value.__cause__, yaml.YAMLError)


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    text = GRAND.read_text().replace("  coil_ohm: 10.0\n", "  coil_ohm: 10.0\n  coil_ohm: 8.0\n", 1)
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(
        SpecError, match=r"line \d+, column 3: YAML syntax error: duplicate key 'coil_ohm'"
    ):
        load_spec(path)


def test_errors_give_the_line_in_the_file(tmp_path: Path) -> None:
    lines = GRAND.read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if line.strip().startswith("supply_v:"))
    lines[i] = "  supply_v: 400"
    path = tmp_path / "lines.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert (
        str(info.value)
        == f"{path}: power.supply_v: 400 is out of range (allowed 5..100) (line {i + 1})"
    )


def test_missing_file_lists_known_specs(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec("piano-99-nope")
    msg = str(info.value)
    assert "piano-99-nope.yaml: spec file not found" in msg
    assert "known specs: bass-4, guitar-matrix, guitar-slider, guitar-slider-servo, piano-61-diy, piano-88-grand" in msg
    with pytest.raises(SpecError, match=re.escape(f"{tmp_path / 'x.yaml'}: spec file not found")):
        load_spec(tmp_path / "x.yaml")


def test_loaded_spec_is_frozen() -> None:
    s = load_spec(DEFAULT_SPEC)
    with pytest.raises(AttributeError):
        s.name = "other"  # type: ignore[misc]
    assert isinstance(s.keys, tuple) and isinstance(s.nominal.drive, tuple)


# ---------------------------------------------------------------------------------
# Property: bounds of the table are enforced exactly, for fields without cross rules
# (the coil's thermal numbers and the hold duties have one: the firmware's duty limit,
# tests/test_coil_heat.py)

INDEPENDENT: list[tuple[str, str]] = [
    ("strike", "min_drive"),
    ("pedal", "latency_us"),
]


def _field(section: str, key: str) -> Field:
    return next(s for s in SECTIONS if s.name == section).get(key)


@st.composite
def field_and_value(draw: st.DrawFn) -> tuple[str, str, float, bool]:
    section, key = draw(st.sampled_from(INDEPENDENT))
    f = _field(section, key)
    assert f.lo is not None and f.hi is not None
    span = f.hi - f.lo
    if f.kind is Kind.INT:
        inside = draw(st.booleans())
        if inside:
            v: float = draw(st.integers(int(f.lo), int(f.hi)))
        else:
            v = draw(
                st.one_of(
                    st.integers(int(f.hi) + 1, int(f.hi + 10 * span)),
                    st.integers(-(10**9), int(f.lo) - 1),
                )
            )
        return section, key, v, inside
    inside = draw(st.booleans())
    if inside:
        v = draw(st.floats(f.lo, f.hi))
    else:
        v = draw(
            st.one_of(
                st.floats(f.hi, f.hi + 10 * span, exclude_min=True),
                st.floats(f.lo - 10 * span, f.lo, exclude_max=True),
            )
        )
    return section, key, v, inside


@settings(max_examples=100, deadline=None)
@given(field_and_value())
def test_bounds_are_enforced(case: tuple[str, str, float, bool]) -> None:
    section, key, value, inside = case
    doc = grand()
    doc[section][key] = value
    if inside:
        s = spec_from_mapping(doc, "prop.yaml")
        assert getattr(getattr(s, section), key) == value
        assert not schema_errors(doc)
    else:
        with pytest.raises(SpecError) as info:
            spec_from_mapping(doc, "prop.yaml")
        msg = str(info.value)
        assert msg.startswith(f"prop.yaml: {section}.{key}: {value} is out of range (allowed "), msg
        assert schema_errors(doc)


def test_rewritten_file_is_reloaded(tmp_path: Path) -> None:
    # Two valid versions of one file, same size, written back to back: the second load
    # must see the second content (the loader caches by content, not by mtime).
    doc = grand()
    path = write(tmp_path, doc, "same.yaml")
    assert load_spec(path).thermal.coil_tau_s == 30.0
    doc["thermal"]["coil_tau_s"] = 31.0
    write(tmp_path, doc, "same.yaml")
    assert load_spec(path).thermal.coil_tau_s == 31.0


# ---------------------------------------------------------------------------------
# Instrument families and the actuator map (issue 8)


def test_shipped_specs_name_their_family_and_specs_without_it_load_as_piano(
    tmp_path: Path,
) -> None:
    assert GRAND_DOC["instrument"] == "piano" and DIY_DOC["instrument"] == "piano"
    doc = grand()
    del doc["instrument"]  # a spec written before families: loads unchanged, as a piano
    spec = load_spec(write(tmp_path, doc))
    assert spec.family == "piano"
    assert spec == load_spec(GRAND)
    assert spec.spec_hash == GRAND_HASH  # calibration files made before still match
    assert isinstance(spec, InstrumentSpec)


@pytest.mark.parametrize("value", ["harp", "Piano", 3, None])
def test_unknown_family_is_refused(tmp_path: Path, value: Any) -> None:
    doc = grand()
    doc["instrument"] = value
    shown = repr(value) if isinstance(value, str) else ("null" if value is None else str(value))
    load_error(
        tmp_path,
        doc,
        f"instrument: {shown} is not an instrument family",
        "allowed piano | guitar | bass",
        "(line ",
    )


@pytest.mark.parametrize("family", ["guitar", "bass"])
def test_a_piano_body_under_a_guitar_family_is_refused(tmp_path: Path, family: str) -> None:
    # guitar and bass load now (tests/test_guitar_spec.py); a piano's sections under
    # their name are refused with the keys the family allows
    doc = grand()
    doc["instrument"] = family
    load_error(tmp_path, doc, "unknown key 'keys'", "allowed keys: name, description, instrument")


def test_actuator_map_of_the_grand() -> None:
    spec = load_spec(GRAND)
    amap = spec.actuators
    assert len(amap) == 90 and amap.count == 90  # 88 keys, the pedal, the sync click
    assert [a.index for a in amap] == list(range(90))
    click = amap[89]
    assert click.role == "sync_click" and not click.on_supply and click.hold_duty == 0.0
    by_board = {b.id: b for b in spec.boards}
    first = 0
    starts = {}
    for b in spec.boards:
        starts[b.id] = first
        first += b.channels
    for k in spec.keys:
        a = amap[k.channel]
        assert a.role == f"key:{k.pitch}" and a.kind is ActuatorKind.COIL
        assert (a.board, a.output) == (k.board, k.channel - starts[k.board])
        assert a.pwm_max == k.pwm_max == 4095
        assert a.board_kind is by_board[k.board].kind
        assert a.i2c_address == by_board[k.board].i2c_address
        assert a.max_on_us == spec.thermal.max_on_us
        assert a.max_pulse_us == spec.strike.max_pulse_us
        assert a.full_a == pytest.approx(spec.power.supply_v / spec.power.coil_ohm)
        assert a.on_supply and a.travel_us == 0
    assert spec.pedal is not None
    pedal = amap.by_role("pedal")
    assert pedal.index == spec.pedal.channel and not pedal.on_supply
    assert pedal.hold_duty == spec.pedal.hold_duty
    assert amap.supply_a == spec.power.supply_a
    assert amap.max_concurrent == spec.power.max_simultaneous_strikes
    with pytest.raises(KeyError):
        amap[90]


def test_actuator_map_follows_a_replaced_spec() -> None:
    import dataclasses

    spec = load_spec(DIY)
    hot = dataclasses.replace(spec, thermal=dataclasses.replace(spec.thermal, max_on_us=5_000_000))
    assert hot.actuators[0].max_on_us == 5_000_000
    assert spec.actuators[0].max_on_us == spec.thermal.max_on_us
    assert len(spec.actuators) == 62 and all(a.board_kind is DriverKind.DIRECT for a in spec.actuators)


def _coil(index: int, board: str, output: int, role: str) -> Actuator:
    return Actuator(
        index=index, kind=ActuatorKind.COIL, board=board, board_kind=DriverKind.PCA9685,
        output=output, pwm_bits=12, role=role, max_on_us=1_000_000, max_pulse_us=40_000,
        hold_duty=0.3, full_a=2.0, on_supply=True, heat_k_per_s=5.0, tau_s=30.0,
        max_rise_k=60.0,
    )  # fmt: skip


def test_actuator_map_refuses_overlapping_outputs() -> None:
    ok = ActuatorMap((_coil(0, "pca0", 0, "key:60"), _coil(1, "pca0", 1, "key:61")), 10.0, 2)
    assert ok[1].role == "key:61"
    with pytest.raises(SpecError) as info:
        ActuatorMap(
            (_coil(0, "pca0", 3, "key:60"), _coil(5, "pca0", 3, "key:65")), 10.0, 2, "mine.yaml"
        )
    msg = str(info.value)
    assert msg.startswith("mine.yaml: actuators[key:65].output: pca0:3 is already used by key:60")
    assert "(actuator 0)" in msg
    # the same output number on another board is fine; the same index twice is not
    ActuatorMap((_coil(0, "pca0", 3, "key:60"), _coil(1, "pca1", 3, "key:61")), 10.0, 2)
    with pytest.raises(SpecError, match=r"actuators\[key:61\]\.index: 0 is already used by key:60"):
        ActuatorMap((_coil(0, "pca0", 0, "key:60"), _coil(0, "pca0", 1, "key:61")), 10.0, 2)

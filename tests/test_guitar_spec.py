"""Guitar and bass specs: the shipped files, geometry and travel, the actuator map, bad specs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from robo_player.driver.config import stepper_rates
from robo_player.errors import SpecError
from robo_player.planner.fingering import Layout
from robo_player.spec import ActuatorKind, load_spec, spec_from_mapping
from robo_player.spec.guitar import (
    DAMPER_LIFT_US,
    GuitarSpec,
    Mechanism,
    damper_lift_us,
    fret_distance_mm,
    press_position_mm,
    travel_us,
)
from robo_player.spec.guitar_loader import DEFAULT_MAX_STEPS_PER_S, load_guitar_spec
from robo_player.spec.loader import SPEC_DIR
from robo_player.spec.schema import spec_json_schema

DOCS = {n: yaml.safe_load((SPEC_DIR / f"{n}.yaml").read_text()) for n in
        ("guitar-matrix", "guitar-slider", "bass-4")}  # fmt: skip


def doc(name: str) -> dict[str, Any]:
    return copy.deepcopy(DOCS[name])


def load_error(tmp_path: Path, d: Any, *fragments: str) -> str:
    path = tmp_path / "mutant.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# ---- the shipped specs -------------------------------------------------------------


def test_shipped_guitar_specs_load_with_their_family() -> None:
    m, s, b = (load_guitar_spec(n) for n in ("guitar-matrix", "guitar-slider", "bass-4"))
    for spec, fam in ((m, "guitar"), (s, "guitar"), (b, "bass")):
        assert isinstance(spec, GuitarSpec) and spec.family == fam
    assert [st.tuning for st in m.strings] == [40, 45, 50, 55, 59, 64]  # E2 A2 D3 G3 B3 E4
    assert [st.tuning for st in b.strings] == [28, 33, 38, 43]  # E1 A1 D2 G2
    assert m.mechanism is Mechanism.MATRIX and s.mechanism is Mechanism.SLIDER
    assert m.highest == 83  # E4's string at fret 19 reaches B5
    assert m.positions(64) == [(1, 19), (2, 14), (3, 9), (4, 5), (5, 0)]
    assert len({m.spec_hash, s.spec_hash, b.spec_hash}) == 3


def test_actuator_maps() -> None:
    m = load_spec("guitar-matrix").actuators
    # 114 frets, 6 pickers, 6 dampers and the sync click (a piezo: off the coils' supply)
    assert len(m.of_kind(ActuatorKind.COIL)) == 6 * 19 + 12 + 1 and not m.of_kind(ActuatorKind.POSITIONER)
    click = m.by_role("sync_click")
    assert click.index == 120 and click.board == "frets7" and not click.on_supply and click.hold_duty == 0.0
    assert m.by_role("fret:5:19").board_kind.value == "pca9685"
    assert m.by_role("pick:0").board == "mcu" and m.by_role("pick:0").pwm_bits == 10
    s = load_spec("guitar-slider").actuators
    cars = s.of_kind(ActuatorKind.POSITIONER)
    assert len(cars) == 6 and len(s.of_kind(ActuatorKind.COIL)) == 18 + 1
    for c in cars:
        assert c.travel_mm == 440.0 and c.max_speed_mm_s == 3000.0 and c.settle_us == 10_000
        assert not c.on_supply and c.full_a == 0.0
        assert 200_000 < c.travel_us < 300_000  # the full travel, with its settle
    assert s.by_role("press:3").hold_duty == 0.4


def test_fret_geometry() -> None:
    assert fret_distance_mm(648, 12) == pytest.approx(324.0)
    assert fret_distance_mm(648, 0) == 0.0
    assert 0 < press_position_mm(648, 1) < fret_distance_mm(648, 1)
    pos = [press_position_mm(864, f) for f in range(16)]
    assert pos == sorted(pos)


def test_travel_is_trapezoidal() -> None:
    # triangular below v^2/a, then cruising: time grows with distance, continuously
    v, a = 1000.0, 10_000.0
    assert travel_us(50, v, a) == pytest.approx(2 * (50 / a) ** 0.5 * 1e6)
    assert travel_us(100, v, a) == pytest.approx((100 / v + v / a) * 1e6)
    assert travel_us(100 - 1e-9, v, a) == pytest.approx(travel_us(100, v, a))
    assert travel_us(0, v, a) == 0.0


def test_bass_carriage_matches_mechbass() -> None:
    # MechBass: 66-102 ms to the next fret, 357 ms from open to fret 12 (before its 15 % pad)
    b = load_guitar_spec("bass-4")
    c = b.strings[0].carriage
    assert c is not None
    scale = b.neck.scale_length_mm

    def move_ms(f0: int, f1: int) -> float:
        d = abs(press_position_mm(scale, f1) - press_position_mm(scale, f0))
        return (travel_us(d, c.max_speed_mm_s, c.accel_mm_s2) + c.settle_us) / 1000

    shifts = [move_ms(f, f + 1) for f in range(1, 12)]
    assert 60 <= min(shifts) and max(shifts) <= 102
    assert move_ms(0, 12) == pytest.approx(357, rel=0.05)


def test_guitar_slider_matches_lemur() -> None:
    # LEMUR GuitarBot: 544 mm in 250 ms
    c = load_guitar_spec("guitar-slider").strings[0].carriage
    assert c is not None
    assert travel_us(544, c.max_speed_mm_s, c.accel_mm_s2) / 1000 == pytest.approx(250, rel=0.05)


def test_schema_describes_the_guitar() -> None:
    from test_spec import _validate  # the suite's small JSON Schema checker

    schema = spec_json_schema()
    defs = schema["$defs"]
    assert {"GuitarSpec", "NeckSpec", "StringSpec", "CarriageSpec", "GuitarTiming"} <= set(defs)
    assert set(defs["GuitarSpec"]["properties"]) >= {"neck", "strings", "timing", "nominal"}
    for name in DOCS:
        assert _validate(schema, defs["GuitarSpec"], doc(name)) == [], name
    d = doc("bass-4")
    d["strings"][0]["tuning"] = "H2"
    d["neck"]["frets"] = 40
    assert len(_validate(schema, defs["GuitarSpec"], d)) == 2


# ---- bad specs ---------------------------------------------------------------------


def test_a_string_outside_midi_range(tmp_path: Path) -> None:
    d = doc("guitar-slider")
    d["strings"][5]["tuning"] = 120
    load_error(tmp_path, d, "strings[5].tuning: 120 + neck.frets 19 reaches MIDI 139",
               "allowed 0..108", "(line ")  # fmt: skip
    d["strings"][5]["tuning"] = "C#11"
    load_error(tmp_path, d, "strings[5].tuning: 'C#11' is not a pitch")


def _top_steps_per_s(spec: GuitarSpec, board: str) -> float:
    """Every carriage of ``board`` at its top speed at once: steps/s together."""
    return sum(((1 << c.pwm_bits) - 1) / c.travel_mm * c.max_speed_mm_s
               for st in spec.strings if (c := st.carriage) is not None and c.board == board)  # fmt: skip


@pytest.mark.parametrize("name", ["bass-4", "guitar-slider"])
def test_shipped_carriages_stay_within_their_boards_step_rate(name: str) -> None:
    # the spec's own speeds (uncapped) fit the AVR's step rate: MechBass / LEMUR speeds kept
    spec, raw = load_guitar_spec(name), doc(name)
    board = next(b for b in spec.boards if b.id == "steppers")
    assert board.max_steps_per_s == 15_000
    assert 5_000 < _top_steps_per_s(spec, "steppers") <= board.max_steps_per_s
    assert [st.carriage.max_speed_mm_s for st in spec.strings if st.carriage] == [
        st["carriage"]["max_speed_mm_s"] for st in raw["strings"]]  # fmt: skip


@pytest.mark.parametrize("rate", [None, 4_000])
def test_a_carriage_is_capped_at_its_share_of_the_step_rate(tmp_path: Path, rate: int | None) -> None:
    d = doc("bass-4")
    for st in d["strings"]:
        st["carriage"]["pwm_bits"] = 12  # 8 steps/mm: 4 x 11,240 steps/s at 1.4 m/s
    if rate is None:
        del d["boards"][1]["max_steps_per_s"]  # the default: DEFAULT_MAX_STEPS_PER_S
    else:
        d["boards"][1]["max_steps_per_s"] = rate
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    spec = load_guitar_spec(path)
    want = rate or DEFAULT_MAX_STEPS_PER_S
    total = _top_steps_per_s(spec, "steppers")
    assert want * 0.99 < total <= want * 1.001  # capped: the share, not 1.4 m/s
    c = spec.strings[0].carriage
    assert c is not None and c.max_speed_mm_s < 1400.0
    # the planner's travel table reads the capped speed: the far move takes longer
    far = press_position_mm(spec.neck.scale_length_mm, 12)
    lay = Layout(spec)
    assert lay.move_us[0][0][12] >= travel_us(far, c.max_speed_mm_s, c.accel_mm_s2)
    assert travel_us(far, c.max_speed_mm_s, c.accel_mm_s2) > travel_us(far, 1400.0, c.accel_mm_s2) * 1.5
    # and so does the firmware's configuration (steps/s)
    act = spec.actuators.by_role("carriage:0")
    assert stepper_rates(act)[0] * 4 <= want * 1.001


def test_two_actuators_on_one_output(tmp_path: Path) -> None:
    d = doc("guitar-slider")
    d["strings"][1]["damper"]["channel"] = 0  # string 0's picker
    load_error(tmp_path, d, "strings[1].damper.channel: 0 is already used by strings[0].picker")
    d = doc("guitar-matrix")
    d["strings"][2]["fret_channels"][3] = 5  # string 0's fret 6
    load_error(tmp_path, d, "strings[2].fret_channels[3].channel: 5 is already used by "
               "strings[0].fret_channels[5]")  # fmt: skip


def test_a_carriage_that_cannot_reach_its_last_fret(tmp_path: Path) -> None:
    d = doc("bass-4")
    d["strings"][2]["carriage"]["travel_mm"] = 400.0
    load_error(tmp_path, d, "strings[2].carriage.travel_mm: 400 does not reach fret 15",
               "allowed 493.6..1200")  # fmt: skip


def test_more_frets_than_the_neck_has_room_for(tmp_path: Path) -> None:
    d = doc("guitar-slider")
    d["neck"]["frets"] = 24
    d["strings"][0]["tuning"] = "E2"
    load_error(tmp_path, d, "neck.frets: 24 needs 486.0 mm of neck",
               "more than neck.neck_length_mm 450 (allowed 1..20)")  # fmt: skip


@pytest.mark.parametrize(
    ("name", "mutate", "fragments"),
    [
        ("guitar-slider", lambda d: d["strings"][0].pop("carriage"),
         ["strings[0].carriage: missing required key for a slider neck"]),
        ("guitar-slider", lambda d: d["strings"][0].update(fret_channels=[40]),
         ["strings[0].fret_channels: not allowed on a slider neck"]),
        ("guitar-matrix", lambda d: d["strings"][0]["fret_channels"].pop(),
         ["strings[0].fret_channels: 18 items (allowed exactly neck.frets = 19)"]),
        ("guitar-matrix", lambda d: d["strings"][0]["fret_channels"].__setitem__(0, 200),
         ["strings[0].fret_channels[0]: 200 is outside every board's block (allowed 0..133)"]),
        ("guitar-matrix", lambda d: d["neck"].update(capo=19),
         ["neck.capo: 19 is out of range (allowed 0..12)"]),
        ("guitar-matrix", lambda d: d["neck"].update(neck_length_mm=700.0),
         ["neck.neck_length_mm: 700 is longer than neck.scale_length_mm"]),
        ("bass-4", lambda d: d["timing"].update(pipeline_delay_us=50_000),
         ["timing.pipeline_delay_us: 50000 is less than the slowest pick latency"]),
        ("bass-4", lambda d: d["strings"][0]["carriage"].update(drive="hydraulic"),
         ["strings[0].carriage.drive: 'hydraulic' is not allowed (allowed step_dir | servo)"]),
        ("bass-4", lambda d: d["neck"].update(strings=4),
         ["neck.strings: unknown key 'strings'"]),
        ("guitar-matrix", lambda d: d["timing"].update(damper_lift_us=150_000),
         ["timing.damper_lift_us: 150000 is out of range (allowed 0..100000)", "(line "]),
        ("guitar-slider", lambda d: d["timing"].update(damper_lift_us=-1),
         ["timing.damper_lift_us: -1 is out of range (allowed 0..100000)"]),
        ("bass-4", lambda d: d["timing"].update(damper_lift_us="8 ms"),
         ["timing.damper_lift_us: '8 ms'", "integer"]),
    ],
    ids=["slider-no-carriage", "slider-frets", "matrix-count", "matrix-board", "capo",
         "neck-long", "pipeline", "drive", "unknown", "lift-high", "lift-negative", "lift-text"],
)  # fmt: skip
def test_bad_guitar_specs(tmp_path: Path, name: str, mutate: Any, fragments: list[str]) -> None:
    d = doc(name)
    mutate(d)
    load_error(tmp_path, d, *fragments)


@pytest.mark.parametrize("name", list(DOCS))
def test_damper_lift_is_a_spec_field_that_old_specs_go_without(tmp_path: Path, name: str) -> None:
    """``timing.damper_lift_us``: absent (every shipped spec), the planners wait 8 ms and
    the spec hashes as before the field existed (its plans and calibrations still fit);
    given, it is what the search's layout and the live planner wait, and the hash differs."""
    from robo_player.live.guitar import GuitarLivePlanner
    from robo_player.spec.model import _content

    shipped = load_guitar_spec(name)
    assert shipped.timing.damper_lift_us is None and damper_lift_us(shipped) == DAMPER_LIFT_US == 8000
    assert "damper_lift_us" not in _content(shipped)["timing"]  # type: ignore[index]
    d = doc(name)
    d["timing"]["damper_lift_us"] = 30_000
    path = tmp_path / "slow-damper.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    slow = load_guitar_spec(path)
    assert slow.timing.damper_lift_us == damper_lift_us(slow) == 30_000
    assert Layout(slow).lift_us == GuitarLivePlanner(slow).lift_us == 30_000
    assert Layout(shipped).lift_us == GuitarLivePlanner(shipped).lift_us == 8000
    assert slow.spec_hash != shipped.spec_hash


def test_capo_moves_every_string_up() -> None:
    d = doc("guitar-slider")
    d["neck"]["capo"] = 2
    spec = spec_from_mapping(d, "capo")
    assert isinstance(spec, GuitarSpec)
    assert spec.lowest == 42 and spec.positions(42) == [(0, 0)]
    assert spec.positions(41) == []  # below the capo
    assert (0, 3) in spec.positions(43)

"""The guitar's sync click (spec.sync_click, as the piano's): checked at load, rendered by
the room where its output pin went on, on every port that plays a guitar, and the
calibration through audio takes its clock from it (docs/guitar.md, "Calibration")."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from robo_player.driver import open_port
from robo_player.errors import SpecError
from robo_player.hearing.click import find_clicks
from robo_player.plan import Command, Op, Plan
from robo_player.spec import load_spec
from robo_player.spec.guitar import GuitarSpec

SPECS_DIR = Path(__file__).resolve().parents[1] / "hardware_specs"
GUITARS = ("guitar-matrix", "guitar-slider", "guitar-slider-servo", "bass-4")


@pytest.mark.parametrize("name", GUITARS)
def test_every_shipped_guitar_has_a_click_on_a_spare_output(name: str) -> None:
    spec = load_spec(name)
    assert isinstance(spec, GuitarSpec) and spec.sync_click is not None
    click = spec.actuators.by_role("sync_click")
    assert click.index == spec.sync_click.channel and not click.on_supply and click.hold_duty == 0.0
    others = [a for a in spec.actuators if a.role != "sync_click"]
    assert click.index not in {a.index for a in others}
    bare = replace(spec, sync_click=None)
    assert "sync_click" not in {a.role for a in bare.actuators}
    assert bare.spec_hash == spec.spec_hash  # plans and calibrations do not depend on it


def test_a_click_on_a_used_output_is_refused_naming_both(tmp_path: Path) -> None:
    text = (SPECS_DIR / "guitar-slider.yaml").read_text()
    bad = text.replace("sync_click:\n  channel: 18\n  board: coils1", "sync_click:\n  channel: 3\n  board: coils0")
    assert bad != text
    (tmp_path / "g.yaml").write_text(bad)
    with pytest.raises(SpecError, match=r"g\.yaml.*sync_click\.channel: 3 is already used by strings\[3\]\.picker"):
        load_spec(str(tmp_path / "g.yaml"))
    off = text.replace("sync_click:\n  channel: 18", "sync_click:\n  channel: 40")
    (tmp_path / "h.yaml").write_text(off)
    with pytest.raises(SpecError, match=r"sync_click\.channel: 40 is outside board 'coils1'.s channels \(allowed 16\.\.31\)"):
        load_spec(str(tmp_path / "h.yaml"))
    (tmp_path / "k.yaml").write_text(text.replace("  pulse_us: 2000", "  pulse_us: 2000\n  loud: 1"))
    with pytest.raises(SpecError, match="sync_click"):
        load_spec(str(tmp_path / "k.yaml"))


def _click_plan(spec: GuitarSpec, level: int) -> Plan:
    c = spec.sync_click
    assert c is not None
    return Plan(commands=[Command(500_000, Op.PULSE_HOLD, c.channel, level, c.pulse_us, 0)],
                pipeline_delay_us=0, spec_name=spec.name, spec_hash=spec.spec_hash)  # fmt: skip


@pytest.mark.parametrize(
    "url", ["sim://", "vmcu://", "fw-host://", pytest.param("fw-avr://", marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("name", ["guitar-slider", "bass-4"])  # (the matrix's 134 outputs: sim:// only)
def test_the_room_clicks_where_the_guitars_pin_went_on(name: str, url: str) -> None:
    """The firmware only drives an output: the room hears the click its pin's on-edge
    made (+ delay_us), whatever path the command took; a pulse at level 0 makes none."""
    spec = load_spec(name)
    assert isinstance(spec, GuitarSpec) and spec.sync_click is not None
    with open_port(f"{url}?sensor=audio&offset_s=0.2&drift_ppm=0", spec) as dev:
        perf = dev.play(_click_plan(spec, spec.sync_click.pwm_max))
        assert perf.audio is not None
        got = find_clicks(perf.audio.samples(), perf.audio.sample_rate)
        # the tolerances of the piano's (tests/test_hearing_click.py): simavr's stream zero
        # within ~0.2 ms of the plan's, the host build's pin when the OS wakes it
        tol = {"fw-avr://": 500e-6, "fw-host://": 2e-3}.get(url, 100e-6)
        assert len(got) == 1 and abs(got[0] - (0.2 + 0.5 + spec.sync_click.delay_us * 1e-6)) < tol, got
        assert perf.heard == [] and dev.energised() == []  # a click is no note; its pin is off again
        perf = dev.play(_click_plan(spec, 0))
        assert perf.audio is not None and find_clicks(perf.audio.samples(), perf.audio.sample_rate) == []


def test_calibrate_a_guitar_from_any_recorder_with_the_click(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """`calibrate --record-with-any-recorder` plays one fixed take (clicked sync patterns,
    the pickers' round); `--from-recording` learns the pickers from a recording of it, with
    the spread on: absolute (the click), each picker's full drive near the truth's. A
    take without the click refuses the spec that has one."""
    from robo_player.calibrator.guitar_listening import sync_string
    from robo_player.cli import main
    from robo_player.hearing.recording import Recording, write_wav
    from robo_player.spec.string_calibration import StringCalibration

    monkeypatch.chdir(tmp_path)
    spec = load_spec("bass-4")
    assert isinstance(spec, GuitarSpec)
    assert main(["calibrate", "--spec", "bass-4", "--port", "sim://", "--record-with-any-recorder"]) == 0
    said = capsys.readouterr().out
    assert "playing 52 picks" in said and "wrote played.json" in said
    played = json.loads((tmp_path / "played.json").read_text())
    assert played["click_delay_us"] == 100 and len(played["picks"]) == 4 * 13
    # the recorder's take: the same fixed take on a simulated bass (spread on, the default)
    from robo_player.calibrator.guitar_offline import fixed_take

    plan, again = fixed_take(spec)
    assert again == played
    with open_port("sim://?sensor=audio&gain_db=-20", spec, truth_seed=4) as dev:
        take = dev.play(plan).audio
        truth = dev._truth
    assert take is not None
    write_wav(tmp_path / "take.wav", Recording(take.samples(), take.sample_rate))
    assert main(["calibrate", "--spec", "bass-4", "--from-recording", "take.wav", "--played", "played.json",
                 "--out", "cal.yaml"]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert "calibrated 4 pickers and 0 fret contacts of bass-4 by listening (52 picks)" in said
    assert "cannot tell the fret contacts' settle" in said and "has no sync_click" not in said
    cal = StringCalibration.load(tmp_path / "cal.yaml")
    for s in range(4):  # absolute: the click; each pick 0.4-0.9 ms off its curve
        assert abs(cal.pickers[s].latency_at(1.0) - truth.strings[s].latency_full_us) < 1_000, s
    assert sync_string(spec) == 3
    # a take played for the spec without a click, learnt with the shipped spec's: refused
    played["click_delay_us"] = None
    (tmp_path / "picked.json").write_text(json.dumps(played))
    assert main(["calibrate", "--spec", "bass-4", "--from-recording", "take.wav", "--played", "picked.json",
                 "--out", "cal2.yaml"]) == 2  # fmt: skip
    assert "were picked (click_delay_us None), but spec 'bass-4' has sync_click.delay_us 100" in capsys.readouterr().err
    assert not (tmp_path / "cal2.yaml").exists()

"""Warm coils and the closed loop (issue 11 §4, robo_player/hearing/loop.py)."""

from __future__ import annotations

import numpy as np
import pytest

from robo_player.calibrator.session import calibrate_session
from robo_player.cli import main
from robo_player.driver import open_port
from robo_player.errors import TransportError
from robo_player.hearing.loop import LoopSettings, corrected_calibration, play_closed_loop
from robo_player.planner import plan as plan_for
from robo_player.report import match_heard
from robo_player.score import Note, Score
from robo_player.sim.physics import CoilEvent, PianoPhysics
from robo_player.sim.truth import COPPER_TEMPCO_PER_K, Truth
from robo_player.spec import load_spec
from robo_player.spec.calibration import Calibration

PITCHES = [57, 64, 69, 76]


@pytest.fixture(scope="module")
def spec():  # noqa: ANN201
    return load_spec("piano-88-grand")


def _warm_then_strike(spec, tempco: float):  # noqa: ANN001, ANN202
    """A cold strike, then 20 s held at the hold duty (the coil warms), then a strike."""
    a = spec.key(60).channel
    phys = PianoPhysics(spec, Truth.draw(spec, 4), tempco_per_k=tempco)
    ev = [
        CoilEvent(0, a, 0.8), CoilEvent(30_000, a, 0.0),  # cold
        CoilEvent(500_000, a, 1.0), CoilEvent(530_000, a, 0.35), CoilEvent(20_500_000, a, 0.0),
        CoilEvent(20_700_000, a, 0.8), CoilEvent(20_730_000, a, 0.0),  # warm
    ]
    perf = phys.run(ev)
    assert len(perf.heard) == 3
    return perf.heard


def test_warm_coil_strikes_later_and_softer(spec) -> None:  # noqa: ANN001
    cold = _warm_then_strike(spec, 0.0)
    warm = _warm_then_strike(spec, COPPER_TEMPCO_PER_K)
    assert warm[0] == cold[0]  # a cold coil plays as before
    assert warm[2].t_us > cold[2].t_us + 200  # the warm strike is later ...
    assert warm[2].velocity < cold[2].velocity - 1.0  # ... and softer
    # without heating, the same strike sounds the same cold or after the hold
    assert cold[2].t_us - 20_700_000 == cold[0].t_us


def test_heating_option(spec) -> None:  # noqa: ANN001
    with pytest.raises(TransportError, match=r"heating=2 \(allowed: 0 or 1\)"):
        open_port("sim://?heating=2", spec)
    with pytest.raises(ValueError, match="tempco_per_k"):
        PianoPhysics(spec, Truth.draw(spec, 0), tempco_per_k=-1.0)


@pytest.fixture(scope="module")
def hot(spec):  # noqa: ANN001, ANN201
    """A calibration of four keys (cold) and a loud, dense piece on them."""
    # calibrated through the note-level sensor: the loop is under test, not the hearing
    with open_port("sim://?sensor=notes", spec, truth_seed=2) as dev:
        cal, _ = calibrate_session(dev, spec, pitches=PITCHES)
    notes = [Note(PITCHES[i % 4], i * 150_000, 400_000, 120) for i in range(400)]
    plan, rep = plan_for(Score(notes=notes), spec, cal)
    return cal, plan, rep


def _play(spec, hot, rate: float, **kw):  # noqa: ANN001, ANN202
    _, plan, rep = hot
    pitch = {k.channel: k.pitch for k in spec.keys}
    level = {k.channel: k.pwm_max for k in spec.keys}
    with open_port("sim://?heating=1", spec, truth_seed=2) as dev:
        res = play_closed_loop(dev, plan, rep.outcomes, lambda a: pitch.get(a, -1), lambda a: level.get(a, 0),
                               LoopSettings(rate=rate, segment_us=2_000_000, **kw))  # fmt: skip
    matched = match_heard(rep.outcomes, res.heard)
    played = [o for o in rep.outcomes if o.fate.name == "PLAYED"]
    assert all(o.index in matched for o in played)  # every note heard
    on = np.array([abs(matched[o.index].t_us - o.intended_t_us) for o in played])
    vel = np.array([abs(matched[o.index].velocity - o.velocity_in) for o in played])
    return res, float(np.percentile(on, 99)), float(vel.mean())


def test_loop_reduces_error_on_a_hot_piece(spec, hot) -> None:  # noqa: ANN001
    open_res, open_p99, open_vel = _play(spec, hot, 0.0)
    res, p99, vel = _play(spec, hot, 0.5)
    assert not open_res.log and open_res.max_coil_temp_ratio > 0.2  # the coils got warm
    assert open_p99 > 2_000  # heating alone puts the open loop past 2 ms
    assert p99 < open_p99 / 2 and p99 <= 1_000
    assert vel < open_vel
    assert res.log and set(res.latency_us) == set(PITCHES)
    assert all(g > 0.0 for g in res.drive_gain.values())  # warm coils: more drive


def test_corrections_stay_in_bounds(spec, hot) -> None:  # noqa: ANN001
    res, _, _ = _play(spec, hot, 1.0, max_latency_us=300.0, max_drive=0.01)
    assert res.log
    assert max(abs(c.latency_us) for c in res.log) == pytest.approx(300.0)  # it hit the bound
    assert all(abs(c.latency_us) <= 300.0 and abs(c.drive_gain) <= 0.01 for c in res.log)


def test_settings_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match=r"rate 1.5 out of range \(allowed: 0..1\)"):
        LoopSettings(rate=1.5)
    with pytest.raises(ValueError, match="max_drive"):
        LoopSettings(max_drive=0.9)


def test_corrected_calibration_moves_the_curves(spec, hot) -> None:  # noqa: ANN001
    cal = Calibration.nominal(spec)
    res, _, _ = _play(spec, hot, 0.5)
    new = corrected_calibration(cal, res)
    p = PITCHES[0]
    lat, g = res.latency_us[p], res.drive_gain[p]
    assert new.keys[p].latency_us[0] == pytest.approx(cal.keys[p].latency_us[0] + lat)
    assert new.keys[p].drive[0] == pytest.approx(cal.keys[p].drive[0] * (1 + g))
    assert list(new.keys[p].drive) == sorted(new.keys[p].drive) and new.keys[p].drive[-1] <= 1.0
    assert new.keys[21] == cal.keys[21]  # a key the loop never heard is unchanged


def test_cli_refuses_closed_loop_without_sensor(tmp_path, capsys) -> None:  # noqa: ANN001
    song = tmp_path / "x.mid"
    out = tmp_path / "cal.yaml"
    import mido

    mid = mido.MidiFile()
    tr = mido.MidiTrack()
    tr += [mido.Message("note_on", note=60, velocity=100, time=0),
           mido.Message("note_off", note=60, velocity=0, time=480)]  # fmt: skip
    mid.tracks.append(tr)
    mid.save(song)
    rc = main(["play", str(song), "--port", "serial:///dev/null", "--closed-loop", "--write-back", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--closed-loop needs a sensor" in err and "serial:///dev/null" in err
    assert not out.exists()
    rc = main(["play", str(song), "--write-back", str(out)])
    assert rc == 2 and "--write-back goes with --closed-loop" in capsys.readouterr().err
    rc = main(["-q", "play", str(song), "--port", "sim://?heating=1", "--closed-loop", "--write-back", str(out)])
    assert rc == 0 and Calibration.load(out).keys[60].latency_us != Calibration.nominal(
        load_spec("piano-88-grand")).keys[60].latency_us

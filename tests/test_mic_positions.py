"""The microphone moved between a calibration's takes (``calibrate --mic-positions N``):
the simulated room heard from another place (its own tail and gain), the calibration's
level fitted again at each new place, and the CLI's options and prompt
(docs/calibration.md, "Session 25, positions")."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robo_player.calibrator import calibrate_session
from robo_player.calibrator import positions as positions_mod
from robo_player.calibrator.cli import MAX_MIC_POSITIONS, MOVE_PROMPT, ListeningDevice
from robo_player.calibrator.drives import FIRST_ROUND_U, round_targets
from robo_player.calibrator.positions import max_positions, planned_takes, position_of_take
from robo_player.cli import main
from robo_player.driver import open_port
from robo_player.errors import CalibrationError, TransportError
from robo_player.performance import HeardNote
from robo_player.sim.room import (
    POSITION_GAIN_DB,
    Room,
    RoomTake,
    position_gain_change_db,
    reverb_tail,
    room_tail,
)
from robo_player.spec import load_spec


@pytest.fixture(scope="module")
def spec():  # noqa: ANN201
    return load_spec("piano-88-grand")


def _take(room: Room) -> np.ndarray:
    notes = [HeardNote(100_000, 60, 80.0, 600_000), HeardNote(300_000, 72, 60.0, 700_000)]
    return RoomTake(room, notes, [], 3).samples()


def test_place_0_renders_as_before_and_another_place_its_own_tail_and_gain() -> None:
    room = Room(fixed_tail=True, seed=4)
    assert room.at_position(0) is room
    # place 0's tail is the one drawn before places existed (the room's seed alone)
    before = reverb_tail(room.sample_rate, room.rt60_s, room.wet_db, np.random.default_rng([4, 2]))
    assert np.array_equal(room_tail(room, np.random.default_rng(9)), before)
    moved = room.at_position(1)
    assert moved.position == 1
    assert not np.array_equal(room_tail(moved, np.random.default_rng(9)), before)
    assert np.array_equal(room_tail(moved, np.random.default_rng(1)), room_tail(room.at_position(1), np.random.default_rng(2)))
    change = position_gain_change_db(4, 1)
    assert 0.1 < abs(change) <= POSITION_GAIN_DB and moved.gain_db == pytest.approx(room.gain_db + change)
    assert [position_gain_change_db(s, 0) for s in range(5)] == [0.0] * 5
    changes = [position_gain_change_db(s, k) for s in range(20) for k in range(1, 5)]
    assert max(map(abs, changes)) <= POSITION_GAIN_DB and np.std(changes) > 1.0  # spread over +-3 dB
    # heard without reverb or noise, a take at the place is the first place's times its gain
    dry = Room(rt60_s=0.0, snr_db=120.0, seed=4)
    a, b = _take(dry), _take(dry.at_position(1))
    ratio_db = 20 * math.log10(float(np.sqrt(np.mean(b.astype(float) ** 2) / np.mean(a.astype(float) ** 2))))
    assert ratio_db == pytest.approx(change, abs=0.01)
    assert np.array_equal(_take(Room(rt60_s=0.0, snr_db=120.0, seed=4, move_gain_db=0.0).at_position(1)), a)
    with pytest.raises(ValueError, match="at_position from position 1"):
        moved.at_position(2)


def test_the_sim_device_moves_its_microphone_between_streams(spec) -> None:  # noqa: ANN001
    """Moving to place 0 (N = 1 asks for no move at all) renders every take as before; a
    move to another place changes the takes; a move mid-stream or past N is refused."""
    from robo_player.plan import Command, Op, Plan

    def plan() -> Plan:
        ch = spec.key(60).channel
        cmds = [Command(0, Op.STRIKE, ch, drive=int(spec.key(60).pwm_max * 0.8), pulse_us=20_000),
                Command(300_000, Op.RELEASE, ch)]
        return Plan(commands=cmds, pipeline_delay_us=0, spec_name=spec.name, spec_hash=spec.spec_hash)

    takes = {}
    for moves in ((), ((0, 1),), ((1, 2),)):
        with open_port("sim://?sensor=audio&rt60_s=0.1", spec, truth_seed=1) as dev:
            for k, n in moves:
                dev.move_microphone(k, n)
            takes[moves] = dev.play(plan()).audio.samples()
            assert dev.instrument.microphone.position == (moves[-1][0] if moves else 0)
    assert np.array_equal(takes[()], takes[((0, 1),)])
    assert not np.array_equal(takes[()], takes[((1, 2),)])
    with open_port("sim://?sensor=audio", spec, truth_seed=1) as dev:
        with pytest.raises(TransportError, match=r"position 2 of 2 \(allowed: 0..1\)"):
            dev.move_microphone(2, 2)
        dev.submit(plan().commands)
        with pytest.raises(TransportError, match="a stream is running"):
            dev.move_microphone(1, 2)
    with pytest.raises(TransportError, match=r"move_gain_db='13' out of range"):
        open_port("sim://?move_gain_db=13", spec, truth_seed=1)


def test_the_takes_split_into_places_in_order_and_the_cli_bound_is_the_sessions() -> None:
    planned = planned_takes(len(FIRST_ROUND_U), round_targets(True), True)
    assert planned == 11
    assert [position_of_take(i, 4, planned) for i in range(12)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [position_of_take(i, 1, planned) for i in range(12)] == [0] * 12
    # the first move after the first round's three takes
    assert MAX_MIC_POSITIONS == max_positions(planned, len(FIRST_ROUND_U)) == 5
    assert all(position_of_take(i, MAX_MIC_POSITIONS, planned) == 0 for i in range(len(FIRST_ROUND_U)))


class _Moves:
    """The sim device, with every move it was asked for kept and the take it came before."""

    def __init__(self, dev: Any) -> None:
        self.dev, self.plays, self.moves = dev, 0, []

    def play(self, plan: Any) -> Any:
        self.plays += 1
        return self.dev.play(plan)

    def move_microphone(self, k: int, n: int) -> None:
        self.moves.append((k, n, self.plays))
        self.dev.move_microphone(k, n)


PITCHES = [52, 60, 67, 74, 81]


def _errors(cal: Any, truth: Any, spec: Any) -> np.ndarray:
    """log(truth's loudness / wanted) at the drive each key's curve gives for velocities
    40..110 (rounded to PWM counts): (keys, 8)."""
    out = []
    for p in PITCHES:
        c, pm, kt = cal.keys[p], spec.key(p).pwm_max, truth.key(p)
        row = []
        for v in np.linspace(40, 110, 8):
            d = round(c.drive_for_velocity(v) * pm) / pm
            u = max(0.0, (d - kt.threshold) / (1.0 - kt.threshold))
            row.append(math.log(kt.gain * (kt.v0 + (1 - kt.v0) * (1 - math.exp(-kt.k * u)) / (1 - math.exp(-kt.k))) / v))
        out.append(row)
    return np.array(out)


def _calibrate(spec: Any, refit: bool, monkeypatch: Any) -> tuple[np.ndarray, Any, list[tuple[int, int, int]]]:
    if not refit:
        monkeypatch.setattr(positions_mod, "POSITION_LEVEL_PASSES", 0)
        monkeypatch.setattr(positions_mod, "POSITION_REFIT_PASSES", 0)
    # no reverb: the keys' room colour out, the level's fit alone; sensor seed 0's second
    # place is 2.80 dB quieter (sim/room.py position_gain_change_db)
    dev = open_port("sim://?sensor=audio&rt60_s=0", spec, truth_seed=2, sensor_seed=0)
    moves = _Moves(dev)
    try:
        cal, rep = calibrate_session(moves, spec, pitches=PITCHES, mic_positions=2)  # type: ignore[arg-type]
        return _errors(cal, dev._truth, spec), rep, moves.moves
    finally:
        dev.close()


def _within_bound(e: np.ndarray) -> bool:
    """Each key's curve against the truth, the common level out: the mean error under
    0.9 % and the curves' shape (each key's own mean out, rms) under 1.4 %."""
    common = float(np.median(e))
    shape = float(np.sqrt(np.mean((e - e.mean(axis=1, keepdims=True)) ** 2)))
    return float(np.mean(np.abs(e - common))) < 0.009 and shape < 0.014


def test_each_place_s_level_is_fitted_against_the_curves(spec, monkeypatch) -> None:  # noqa: ANN001
    """Two places, the second 2.80 dB quieter, no reverb: with each place's level fitted
    (its first take against the curves, then all its strikes against the final curves)
    the curves come out within the bound; without the fit the second place's strikes
    (rounds 2 and 3) read ~2.8 dB soft and the curves bend. Measured (truth seed 2, 5
    keys): the level fitted -2.76 dB; mean error 0.52 % / shape 0.93 % (without the fit
    1.33 % / 1.93 %, every key's curve too flat)."""
    assert position_gain_change_db(0, 1) == pytest.approx(-2.80, abs=0.01)
    e, rep, moves = _calibrate(spec, True, monkeypatch)
    # one move, before the seventh of the 11 takes (after the listening check's play and 6 takes)
    assert moves == [(1, 2, 7)] and rep.mic_positions == 2
    assert len(rep.position_levels_db) == 2
    assert rep.position_levels_db[1] - rep.position_levels_db[0] == pytest.approx(-2.80, abs=0.2)
    assert _within_bound(e), np.round(e - np.median(e), 3)


@pytest.mark.slow
def test_without_each_place_s_level_the_curves_bend(spec, monkeypatch) -> None:  # noqa: ANN001
    """The same calibration with the places' levels not fitted: the bound above fails
    (~27 s of a 2-core machine, so out of the default run; the fitted test above fails
    without the fit by its level check alone)."""
    e_off, rep_off, _ = _calibrate(spec, False, monkeypatch)
    assert rep_off.position_levels_db[1] == rep_off.position_levels_db[0]  # not fitted: the first place's
    assert not _within_bound(e_off), np.round(e_off - np.median(e_off), 3)


def test_too_many_places_or_a_device_that_cannot_move_is_refused(spec) -> None:  # noqa: ANN001
    with open_port("sim://?sensor=audio", spec, truth_seed=1) as dev:
        with pytest.raises(CalibrationError, match=r"mic_positions: 6 is too many for 11 takes \(allowed: 1..5"):
            calibrate_session(dev, spec, pitches=[60], mic_positions=6)

        class _PlayOnly:
            def play(self, plan: Any) -> Any:
                return dev.play(plan)

        with pytest.raises(CalibrationError, match="cannot move its microphone"):
            calibrate_session(_PlayOnly(), spec, pitches=[60], mic_positions=2)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "message"), [
    ("0", "--mic-positions: 0 is out of range (allowed: 1..5)"),
    ("2.5", "--mic-positions: '2.5' is not a whole number (allowed: 1..5)"),
    ("six", "--mic-positions: 'six' is not a whole number"),
])
def test_calibrate_refuses_a_bad_number_of_places(tmp_path: Path, capsys: Any, value: str, message: str) -> None:
    out = tmp_path / "cal.yaml"
    rc = main(["-q", "calibrate", "--spec", "piano-88-grand", "--port", "sim://", "--out", str(out),
               "--mic-positions", value])  # fmt: skip
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_recording_takes_its_places_from_played_and_a_guitar_one_place(tmp_path: Path, capsys: Any) -> None:
    # a recording's places are played.json's parts (tests/test_recording_places.py)
    rc = main(["-q", "calibrate", "--spec", "piano-88-grand", "--from-recording", "t.wav",
               "--played", str(tmp_path / "p.json"), "--mic-positions", "2", "--out", str(tmp_path / "c.yaml")])  # fmt: skip
    assert rc == 2 and "the places are played.json's" in capsys.readouterr().err
    rc = main(["-q", "calibrate", "--spec", "guitar-slider", "--port", "sim://", "--out", str(tmp_path / "g.yaml"),
               "--mic-positions", "2"])  # fmt: skip
    assert rc == 2 and "the piano's calibration only" in capsys.readouterr().err


def test_a_real_microphone_is_moved_when_the_terminal_says_so(monkeypatch: Any, capsys: Any) -> None:
    dev = ListeningDevice(object(), None)  # type: ignore[arg-type]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    dev.move_microphone(1, 4)
    assert MOVE_PROMPT.format(k=2, n=4) in capsys.readouterr().out
    assert "move the microphone to position 2 of 4, about a metre from the last" in MOVE_PROMPT.format(k=2, n=4)
    with pytest.raises(CalibrationError, match="position 3 of 4, and the terminal's input ended"):
        dev.move_microphone(2, 4)  # no more input

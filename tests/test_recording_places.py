"""A calibration recorded with any recorder from several places in the room
(``calibrate --record-with-any-recorder --mic-positions N``, then ``--from-recording``
with the N recordings): the fixed take split into parts, each place's level against the
first's, and the CLI end to end on the simulator (docs/calibration.md, "Session 26, lead")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from robo_player.calibrator import offline
from robo_player.calibrator.drives import MAX_STRIKES_PER_KEY
from robo_player.calibrator.offline import (
    FIXED_U,
    fixed_parts,
    fixed_take,
    learn_from_recording,
    part_drives,
    probe_gaps,
)
from robo_player.cli import main
from robo_player.driver import open_port
from robo_player.errors import CalibrationError
from robo_player.hearing.recording import Recording
from robo_player.sim.room import position_gain_change_db
from robo_player.spec import load_spec

PITCHES = [40, 52, 60, 67, 76, 84]


@pytest.fixture(scope="module")
def spec():  # noqa: ANN201
    return load_spec("piano-88-grand")


def test_the_take_splits_into_parts_with_full_drive_in_each(spec) -> None:  # noqa: ANN001
    assert part_drives(1) == [list(FIXED_U)]
    parts = part_drives(5)
    assert all(p[0] == FIXED_U[0] for p in parts)  # every place reads its level at full drive
    assert sorted(u for p in parts for u in p[1:]) == sorted(FIXED_U[1:])  # the rest once each
    assert sum(map(len, parts)) == len(FIXED_U) + 4  # 13 strikes a key at 5 places
    plans, played = fixed_parts(spec, 3, pitches=[60, 67])
    assert played["version"] == 2 and played["positions"] == 3 and len(plans) == len(played["parts"]) == 3
    for plan, part, us in zip(plans, played["parts"], part_drives(3), strict=True):
        probes = sum("probe_gap_us" in s for s in part["strikes"])
        assert len(part["strikes"]) == 2 * len(us) + probes and part["sync_starts_us"] and plan.commands
    # the two key-return probes a key go round the places (a part each), within the budget
    assert [sum("probe_gap_us" in s for s in part["strikes"]) for part in played["parts"]] == [2, 2, 0]
    for n in range(1, 6):  # issue 11's budget: <= 14 strikes a key, probes included
        gaps = probe_gaps(spec, n)
        assert len(FIXED_U) + n - 1 + len(gaps) <= MAX_STRIKES_PER_KEY and len(gaps) == (2 if n <= 4 else 1)
    one_plans, one = fixed_parts(spec, 1, pitches=[60, 67])
    assert one == fixed_take(spec, pitches=[60, 67])[1] and one["version"] == 1 and len(one_plans) == 1


def _record(spec: Any, n: int, sensor_seed: int) -> tuple[list[Recording], dict[str, Any], Any]:
    plans, played = fixed_parts(spec, n, pitches=PITCHES)
    recs = []
    with open_port("sim://?sensor=audio", spec, truth_seed=2, sensor_seed=sensor_seed) as dev:
        for k, plan in enumerate(plans):
            if k:
                dev.move_microphone(k, n)
            take = dev.play(plan).audio
            assert take is not None
            recs.append(Recording(take.samples(), take.sample_rate))
        return recs, played, dev._truth


def test_each_place_s_level_is_read_against_the_first(spec, monkeypatch) -> None:  # noqa: ANN001
    """Three places (sensor seed 0: the second 2.80 dB quieter, the third 2.59 dB louder):
    each place's level against the first's, from the keys' full-drive strikes, within
    0.35 dB of the move's gain (measured 6 keys: -2.80 / +2.71; the rest is the places'
    room colour over 6 keys), and the keys' latencies within 1 ms of the truth. Without the
    places' levels (taken as the first's) the second place reads 2.8 dB off."""
    recs, played, truth = _record(spec, 3, 0)
    cal, rep = learn_from_recording(spec, recs, played, ["a.wav", "b.wav", "c.wav"])
    assert rep.mic_positions == 3 and rep.play_calls == 3
    assert rep.strikes_per_key == len(FIXED_U) + 2 + 2  # two more at full drive, two probes
    rel = [x - rep.position_levels_db[0] for x in rep.position_levels_db]
    for k in (1, 2):
        assert rel[k] == pytest.approx(position_gain_change_db(0, k), abs=0.35), rel
    for p in PITCHES:
        assert abs(cal.keys[p].latency_at(1.0) - truth.key(p).latency_full_us) < 1_000, p
    monkeypatch.setattr(offline, "place_level_db", lambda a, b, sr: (0.0, 1))
    monkeypatch.setattr(offline, "refine_position_levels", lambda by, fits, refit, levels, sr: levels)
    _, flat = learn_from_recording(spec, recs, played, ["a.wav", "b.wav", "c.wav"])
    assert abs(flat.position_levels_db[1] - flat.position_levels_db[0] - position_gain_change_db(0, 1)) > 2.0


def test_recordings_that_do_not_match_the_parts_are_refused(spec) -> None:  # noqa: ANN001
    plans, played = fixed_parts(spec, 2, pitches=[60])
    rec = Recording(np.zeros(48_000, dtype="float32"), 48_000)
    with pytest.raises(CalibrationError, match=r"1 recording\(s\) for a take played in 2 part\(s\)"):
        learn_from_recording(spec, [rec], played, ["a.wav"])
    with pytest.raises(CalibrationError, match=r"sample rates differ \(48000, 44100 Hz\)"):
        learn_from_recording(spec, [rec, Recording(rec.data[:44_100], 44_100)], played, ["a.wav", "b.wav"])


def _small_spec(tmp_path: Path) -> Path:
    """piano-61-diy with five keys, C4..E4 (keys are contiguous; the sync click kept): a whole take in seconds."""
    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "hardware_specs" / "piano-61-diy.yaml").read_text())
    keep = {"C4", "C#4", "D4", "D#4", "E4"}
    doc["keys"] = [k for k in doc["keys"] if k["pitch"] in keep]
    doc["name"] = "piano-5-keys"
    path = tmp_path / "piano-5-keys.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_cli_records_from_places_and_learns_from_the_recordings(tmp_path: Path, capsys: Any,
                                                                    monkeypatch: Any) -> None:
    """`--record-with-any-recorder --mic-positions 2` on the simulator writes played.json
    (two parts) and what the simulator's microphone recorded at each place; then
    `--from-recording` with both learns from them; one recording is refused."""
    monkeypatch.chdir(tmp_path)
    spec = str(_small_spec(tmp_path))
    assert main(["calibrate", "--spec", spec, "--port", "sim://", "--record-with-any-recorder",
                 "--mic-positions", "2"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "(place 2 of 2)" in out and "wrote played-1.wav, played-2.wav" in out
    played = json.loads((tmp_path / "played.json").read_text())
    assert played["version"] == 2 and len(played["parts"]) == 2
    assert "--from-recording played-1.wav played-2.wav --played played.json" in out
    cal = tmp_path / "cal.yaml"
    assert main(["calibrate", "--spec", spec, "--from-recording", "played-1.wav", "played-2.wav",
                 "--played", "played.json", "--out", str(cal)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert cal.exists() and "heard from 2 microphone positions" in out
    assert "key return: measured on 5 of 5 keys (10 probe strikes)" in out  # two probes a key
    doc = yaml.safe_load(cal.read_text())
    assert all(k.get("return_us") for k in doc["keys"].values())
    cal.unlink()
    assert main(["calibrate", "--spec", spec, "--from-recording", "played-1.wav", "--played", "played.json",
                 "--out", str(cal)]) == 2  # fmt: skip
    assert "1 recording(s) for a take played in 2 part(s)" in capsys.readouterr().err and not cal.exists()
    assert main(["calibrate", "--spec", spec, "--from-recording", "played-1.wav", "--played", "played.json",
                 "--out", str(cal), "--mic-positions", "2"]) == 2  # fmt: skip
    assert "the places are played.json's" in capsys.readouterr().err

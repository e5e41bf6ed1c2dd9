"""The hearing commands: `mics`, `verify`, and calibrate's listening options (usage)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from robo_player.cli import main
from robo_player.driver import open_port
from robo_player.hearing.recording import Recording, write_wav
from robo_player.midi import bundled_piece, read_midi, write_midi
from robo_player.planner.piano import plan_piano
from robo_player.spec import load_spec

# verify's test plays the chorale's first 12 s (68 notes), not the whole 33 s: each verify
# hears the take twice (blind, then knowing the plan), ~1 x real time of one core, and the
# whole piece made this the default run's slowest test (110.9 s, session 26's CI; docs/testing.md)
VERIFY_SECONDS = 12.0


def test_mics_lists_inputs_or_says_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["mics"])
    err = capsys.readouterr().err
    assert rc == 0 or (rc == 1 and "sound card" in err), err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--from-recording", "t.wav"], "needs --played"),
        (["--played", "p.json"], "--played goes with"),
        (["--mic", "0", "--from-recording", "t.wav", "--played", "p.json"], "give one of"),
    ],
)
def test_calibrate_listening_usage(argv: list[str], needle: str, tmp_path, capsys) -> None:  # noqa: ANN001
    rc = main(["calibrate", "--out", str(tmp_path / "c.yaml"), *argv])
    assert rc == 2 and needle in capsys.readouterr().err


def test_record_with_any_recorder_as_the_issue_writes_it(tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    # `robo-player calibrate --port … --record-with-any-recorder`: no --out, no --played:
    # it writes played.json here, and never over an existing one
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", "--port", "sim://", "--spec", "piano-61-diy", "--record-with-any-recorder"]) == 0
    played = json.loads((tmp_path / "played.json").read_text())
    assert played["strikes"] and "wrote played.json" in capsys.readouterr().out
    before = (tmp_path / "played.json").read_text()
    assert main(["calibrate", "--port", "sim://", "--spec", "piano-61-diy", "--record-with-any-recorder"]) == 2
    assert "played.json exists here and is not overwritten" in capsys.readouterr().err
    assert (tmp_path / "played.json").read_text() == before
    # the other ways to calibrate still need --out
    assert main(["calibrate", "--port", "sim://", "--spec", "piano-61-diy"]) == 2
    assert "--out CAL.yaml is needed" in capsys.readouterr().err
    assert main(["calibrate", "--from-recording", "t.wav", "--played", "played.json"]) == 2
    assert "--out CAL.yaml is needed" in capsys.readouterr().err


def test_verify_reports_from_a_recording_and_refuses_another_piece(tmp_path, capsys) -> None:  # noqa: ANN001
    spec = load_spec("piano-88-grand")
    # the chorale's first VERIFY_SECONDS (its notes begun by then, to their written ends)
    whole = read_midi(bundled_piece("bwv66.6"))
    song = tmp_path / "chorale.mid"
    write_midi(dataclasses.replace(whole, notes=[n for n in whole.notes if n.onset_us < VERIFY_SECONDS * 1e6]), song)
    plan, plan_report = plan_piano(read_midi(song), spec)
    plan_path = tmp_path / "plan.jsonl"
    plan.write_jsonl(plan_path)
    with open_port("sim://?sensor=audio", spec, truth_seed=2) as dev:
        perf = dev.play(plan)
        take = perf.audio
    assert take is not None
    wav = write_wav(tmp_path / "take.wav", Recording(take.samples(), take.sample_rate))
    report = tmp_path / "r.json"
    rc = main(["-q", "verify", str(wav), "--plan", str(plan_path), str(song), "--report", str(report)])
    assert rc == 0, capsys.readouterr().err
    r = json.loads(report.read_text())
    assert r["heard_from"] == str(wav) and r["onsets_heard"] > 0
    assert abs(r["audio_clock"]["drift_ppm"]) <= 100.5
    assert r["onset_error_ms"]["n"] >= 0.3 * r["notes_played"]
    assert r["audio_level"]["by"] == "anchor" and r["audio_level"]["mic_db"] is None  # no --mic-gain-db
    # loudness: the take's level fitted out (one number), so the velocity error is the
    # piano's against the plan, as the simulator's note-level sensor measured it (it
    # was 124 with the detector's reference gain taken for the recording's)
    from robo_player.report import build_report

    truth = build_report(plan_report=plan_report, performance=perf, piece=str(song), spec=spec, port="sim://")
    assert abs(r["velocity_error"]["mean"] - truth["velocity_error"]["mean"]) <= 5.0, (r["velocity_error"], truth)
    assert r["audio_level_pairs"] >= 0.3 * r["notes_played"]
    # `plan --out` writes the notes after the commands: verify needs no SONG then; a take
    # 12 dB quieter gives the same figures, its level (the plan's anchor) 12 dB lower. Its
    # chain is -36 dB (12 under the detector's reference): told -36.2 dB by a measured
    # microphone, the level weighs that (-12.2 dB) with the anchor (one verify for both:
    # the anchor is reported beside the level the two give)
    plan2 = tmp_path / "plan2.jsonl"
    assert main(["-q", "plan", str(song), "--spec", "piano-88-grand", "--out", str(plan2)]) == 0
    soft = write_wav(tmp_path / "soft.wav", Recording(take.samples() * 10 ** (-12 / 20), take.sample_rate))
    rc = main(["-q", "verify", str(soft), "--plan", str(plan2), "--report", str(report), "--mic-gain-db", "-36.2"])
    assert rc == 0, capsys.readouterr().err
    r2 = json.loads(report.read_text())
    assert r2["piece"] == str(plan2) and r2["notes_in"] == r["notes_in"] and r2["notes_played"] == r["notes_played"]
    lv = r2["audio_level"]
    assert abs(lv["anchor_db"] - (r["audio_level_db"] - 12.0)) <= 1.0
    assert abs(r2["velocity_error"]["mean"] - r["velocity_error"]["mean"]) <= 1.0
    assert abs(r2["onset_error_ms"]["p50"] - r["onset_error_ms"]["p50"]) <= 1.0
    assert lv["by"] == "mic gain + anchor" and lv["mic_db"] == pytest.approx(-12.2) and lv["mic_sd_db"] == 0.3
    assert r2["audio_level_db"] == pytest.approx(lv["level_db"], abs=0.01)
    lo, hi = sorted((lv["anchor_db"], lv["mic_db"]))
    assert lo < lv["level_db"] < hi
    # a tolerance of 0: refused, nothing written
    report.unlink()
    assert main(["verify", str(soft), "--plan", str(plan2), "--report", str(report), "--mic-gain-db", "-36:0"]) == 2
    assert "--mic-gain-db: tolerance 0 dB is out of range" in capsys.readouterr().err and not report.exists()
    # the same plan against a recording of silence-and-noise: said so, nothing written
    quiet = write_wav(tmp_path / "quiet.wav", Recording(take.samples()[:48000] * 0.0, take.sample_rate))
    rc = main(["verify", str(quiet), "--plan", str(plan_path), str(song), "--report", str(tmp_path / "q.json")])
    assert rc == 1 and "silent recording" in capsys.readouterr().err
    assert not (tmp_path / "q.json").exists()

"""End-to-end tests of the `robo-player` command on a bundled piece."""

from __future__ import annotations

import argparse
import json
import os
import stat
import threading
import wave
from pathlib import Path

import pytest

from robo_player.cli import main
from robo_player.midi import DEFAULT_PIECE, bundled_pieces
from robo_player.plan import Plan

# calibrations here hear through the note-level sensor, not sim://'s default microphone:
# these tests check the command line, in seconds (through audio: test_hearing_cli.py)
NOTES = ("--port", "sim://?sensor=notes")


@pytest.fixture(scope="module")
def piece() -> Path:
    by_name = {p.stem: p for p in bundled_pieces()}
    return by_name[DEFAULT_PIECE]


@pytest.fixture(scope="module")
def small_piece() -> Path:
    return min(bundled_pieces(), key=lambda p: p.stat().st_size)


@pytest.fixture(scope="module")
def cal61(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`calibrate` of piano-61-diy (truth seed 5, the note-level sensor), written once:
    the calibrated play reads it, and a play of another spec refuses it."""
    cal = tmp_path_factory.mktemp("cal61") / "cal61.yaml"
    assert main(["-q", "calibrate", "--spec", "piano-61-diy", "--truth-seed", "5", *NOTES, "--out", str(cal)]) == 0
    return cal


def test_play_writes_report_audio_and_plot(tmp_path, small_piece, capsys):
    rep, wav, png = tmp_path / "r.json", tmp_path / "a.wav", tmp_path / "p.png"
    rc = main(["-q", "play", str(small_piece), "--truth-seed", "2",
               "--report", str(rep), "--wav", str(wav), "--plot", str(png)])
    assert rc == 0
    r = json.loads(rep.read_text())
    assert r["notes_in"] > 20
    assert r["notes_in"] == r["notes_played"] + r["notes_altered"] + r["notes_dropped"]
    assert all(d["reason"] for d in r["drops"])
    for key in ("mean", "p50", "p99", "max"):
        assert r["onset_error_ms"][key] is not None
    assert r["velocity_error"]["mean"] is not None
    assert r["notes_unheard"] == 0
    assert r["coil_failures"] == []
    with wave.open(str(wav)) as w:
        assert w.getframerate() == 44100
        assert w.getnframes() > 44100  # more than a second of audio
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*part*"))  # no temporary files left behind


def test_play_wav_is_in_the_voice_the_port_recorded(tmp_path, small_piece):
    """``play --wav`` renders the heard notes in the voice the port's microphone recorded
    (``sim://?voice=``; sim://'s default, the rich one, where it names none)."""
    pcm = {}
    for url in ("sim://?voice=plain", "sim://?voice=rich", "sim://"):
        wav = tmp_path / "a.wav"
        assert main(["-q", "play", str(small_piece), "--port", url, "--report", "/dev/null", "--wav", str(wav)]) == 0
        with wave.open(str(wav)) as w:
            pcm[url] = w.readframes(w.getnframes())
    assert pcm["sim://"] == pcm["sim://?voice=rich"]
    assert pcm["sim://?voice=plain"] != pcm["sim://?voice=rich"]


def test_bundled_name_resolves(tmp_path, small_piece):
    rep = tmp_path / "r.json"
    assert main(["-q", "simulate", small_piece.stem, "--report", str(rep)]) == 0
    assert json.loads(rep.read_text())["piece"].endswith(small_piece.name)


def test_calibrate_then_play_is_more_accurate_than_nominal(tmp_path, small_piece, cal61):
    cal = cal61
    spec = "piano-61-diy"
    rep_cal, rep_nom = tmp_path / "c.json", tmp_path / "n.json"
    assert main(["-q", "play", str(small_piece), "--spec", spec, "--truth-seed", "5",
                 "--calibration", str(cal), "--report", str(rep_cal)]) == 0
    assert main(["-q", "play", str(small_piece), "--spec", spec, "--truth-seed", "5",
                 "--report", str(rep_nom)]) == 0
    c, n = json.loads(rep_cal.read_text()), json.loads(rep_nom.read_text())
    assert c["calibration_strikes_per_key"] <= 14  # the default cap (issue 11), probes included
    assert "calibration_strikes_per_key" not in n
    assert c["onset_error_ms"]["p99"] < n["onset_error_ms"]["p99"]
    assert c["velocity_error"]["mean"] < n["velocity_error"]["mean"]



def test_calibration_records_the_simulated_instrument_and_play_uses_it(
    tmp_path, small_piece, capsys
):
    # issue 9 §5: `calibrate --truth-seed 1` then `play --calibration` without a seed plays
    # the piano the calibration learned, not seed 0; another seed is played with a warning
    cal = tmp_path / "cal.yaml"
    spec = "piano-61-diy"
    assert main(["-q", "calibrate", "--spec", spec, "--truth-seed", "1", "--max-strikes", "4", *NOTES,
                 "--out", str(cal)]) == 0  # fmt: skip
    assert "simulated: {truth_seed: 1}" in cal.read_text()
    reps = {k: tmp_path / f"{k}.json" for k in ("implicit", "explicit", "other")}
    capsys.readouterr()
    assert main(["play", str(small_piece), "--spec", spec, "--calibration", str(cal),
                 "--report", str(reps["implicit"])]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "simulated instrument: truth_seed 1" in err and "warning" not in err
    assert main(["-q", "play", str(small_piece), "--spec", spec, "--calibration", str(cal),
                 "--truth-seed", "1", "--report", str(reps["explicit"])]) == 0  # fmt: skip
    assert "warning" not in capsys.readouterr().err
    assert main(["-q", "play", str(small_piece), "--spec", spec, "--calibration", str(cal),
                 "--truth-seed", "0", "--report", str(reps["other"])]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "warning" in err and "{'truth_seed': 1}" in err and "{'truth_seed': 0}" in err
    r = {k: json.loads(v.read_text()) for k, v in reps.items()}
    assert r["implicit"]["onset_error_ms"] == r["explicit"]["onset_error_ms"]
    assert r["implicit"]["onset_error_ms"]["p99"] < r["other"]["onset_error_ms"]["p99"]


def test_help_shows_every_default(capsys):
    from robo_player.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("play", "simulate", "plan", "calibrate", "inspect"):
        sp = sub.choices[name]
        for action in sp._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings[0]}: no help text"
            if not any(action.default is d for d in (None, False, argparse.SUPPRESS)):
                assert "default" in action.help or "%(default)" in action.help or (
                    "default" in sp.format_help()
                ), f"{name} {action.option_strings[0]}: default not shown"
        text = sp.format_help()
        for action in sp._actions:
            if action.option_strings and not any(
                action.default is d for d in (None, False, argparse.SUPPRESS)
            ):
                assert str(action.default) in text, f"{name} {action.option_strings[0]}"
    assert main(["play", "--help"]) == 0
    out = capsys.readouterr().out
    assert "(default: sim://)" in out and "(default: 12)" not in out
    assert "sampling seed (default: 0)" in out


def test_plan_exports_jsonl(tmp_path, piece, capsys):
    out = tmp_path / "plan.jsonl"
    assert main(["plan", str(piece), "--spec", "piano-61-diy", "--out", str(out)]) == 0
    plan = Plan.read_jsonl(out)
    assert len(plan) > 0
    times = [c.t_us for c in plan]
    assert times == sorted(times)
    assert "wrote" in capsys.readouterr().out


def test_inspect_json(piece, capsys):
    assert main(["inspect", str(piece), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fit"]["spec"] == "piano-88-grand"
    assert "notes_out_of_range" in doc["fit"]


# ---------------------------------------------------------------- bad input: exit 2, no files


def _assert_clean_failure(rc: int, capsys, tmp_path: Path, *needles: str) -> None:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("robo-player: error:") or "usage:" in err
    assert len(err.strip().splitlines()) <= 3
    for n in needles:
        assert n in err
    leftovers = [p for p in tmp_path.iterdir() if p.suffix in {".json", ".wav", ".png", ".jsonl"}
                 or ".part" in p.name]
    assert leftovers == []


def _outputs(tmp_path: Path) -> list[str]:
    return ["--report", str(tmp_path / "r.json"), "--wav", str(tmp_path / "a.wav"),
            "--plot", str(tmp_path / "p.png")]


def test_malformed_midi(tmp_path, capsys):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x40\x00\x90")
    rc = main(["play", str(bad), *_outputs(tmp_path)])
    _assert_clean_failure(rc, capsys, tmp_path, "bad.mid")


def test_empty_midi(tmp_path, capsys):
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    rc = main(["play", str(empty), *_outputs(tmp_path)])
    _assert_clean_failure(rc, capsys, tmp_path, "empty.mid")


def test_missing_midi(tmp_path, capsys):
    rc = main(["play", str(tmp_path / "nope.mid"), *_outputs(tmp_path)])
    _assert_clean_failure(rc, capsys, tmp_path, "nope.mid")


def test_spec_with_errors(tmp_path, small_piece, capsys):
    from robo_player.spec import load_spec  # noqa: F401  (the loader resolves names)

    src = Path(__file__).resolve().parents[1] / "hardware_specs" / "piano-61-diy.yaml"
    text = src.read_text()
    bad = tmp_path / "bad-spec.yaml"
    bad.write_text(text + "\nbogus_field: 1\n")
    rc = main(["play", str(small_piece), "--spec", str(bad), *_outputs(tmp_path)])
    _assert_clean_failure(rc, capsys, tmp_path, "bad-spec.yaml", "bogus_field")


def test_calibration_for_another_spec(tmp_path, small_piece, capsys, cal61):
    rc = main(["play", str(small_piece), "--calibration", str(cal61), *_outputs(tmp_path)])
    _assert_clean_failure(rc, capsys, tmp_path, "cal61.yaml", "piano-61-diy")


def test_port_that_does_not_exist(tmp_path, small_piece, capsys):
    rc = main(["play", str(small_piece), "--port", "nosuch://x", *_outputs(tmp_path)])
    _assert_clean_failure(rc, capsys, tmp_path, "nosuch")


def test_output_path_that_is_a_directory(tmp_path, small_piece, capsys):
    (tmp_path / "out").mkdir()
    rc = main(["play", str(small_piece), "--report", str(tmp_path / "r.json"),
               "--plot", str(tmp_path / "out")])
    _assert_clean_failure(rc, capsys, tmp_path, "out: is a directory, expected a regular file")
    assert (tmp_path / "out").is_dir() and list((tmp_path / "out").iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_output_path_that_is_a_fifo_is_written_straight(tmp_path, small_piece, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    rc = main(["plan", str(small_piece), "--out", str(fifo)])
    t.join(10)
    assert rc == 0, capsys.readouterr().err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still the pipe, not a regular file
    (tmp_path / "copy.jsonl").write_bytes(got[0])
    assert len(Plan.read_jsonl(tmp_path / "copy.jsonl")) > 10
    (tmp_path / "copy.jsonl").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null here")
def test_output_path_that_is_a_device_is_written_straight(tmp_path, small_piece, capsys):
    before = os.stat("/dev/null")
    rc = main(["-q", "play", str(small_piece), "--report", "/dev/null", "--wav", "/dev/null"])
    assert rc == 2 and "given twice" in capsys.readouterr().err
    rc = main(["-q", "play", str(small_piece), "--report", "/dev/null", "--plot", str(tmp_path / "p.png")])
    assert rc == 0
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_a_failed_write_exits_1_naming_the_path(tmp_path, small_piece, capsys):
    rc = main(["-q", "plan", str(small_piece), "--out", "/dev/full"])
    err = capsys.readouterr().err
    assert rc == 1 and "/dev/full: write failed" in err and "Traceback" not in err


def test_report_dash_is_standard_output(tmp_path, small_piece, capsys):
    rc = main(["play", str(small_piece), "--report", "-"])
    out = capsys.readouterr()
    assert rc == 0
    r = json.loads(out.out)  # stdout is the report alone
    assert r["notes_in"] > 20
    assert "notes:" in out.err or "sounded" in out.err  # the summary went to stderr
    assert not (Path.cwd() / "-").exists()
    rc = main(["plan", str(small_piece), "--out", "-"])
    assert rc == 2 and "standard output is allowed for the report only" in capsys.readouterr().err


def test_the_same_output_twice(tmp_path, small_piece, capsys):
    rc = main(["plan", str(small_piece), "--out", str(tmp_path / "x.json"),
               "--report", str(tmp_path / "x.json")])
    _assert_clean_failure(rc, capsys, tmp_path, "x.json: given twice")


def test_usage_error_exit_2(capsys):
    assert main(["play", "--bogus-flag"]) == 2
    assert main([]) == 2


def test_verify_takes_its_song_before_or_after_the_options(capsys):
    """argparse itself places verify's optional SONG wherever it is given (it used to be
    left over after the options, and main() patched it in)."""
    from robo_player.cli import build_parser

    parser = build_parser()
    for argv in (["verify", "t.wav", "--plan", "p.jsonl", "s.mid"],
                 ["verify", "t.wav", "s.mid", "--plan", "p.jsonl"],
                 ["verify", "--plan", "p.jsonl", "t.wav", "s.mid"],
                 ["-q", "verify", "t.wav", "--plan", "p.jsonl", "--spec", "piano-88-grand", "s.mid", "-q"]):  # fmt: skip
        a = parser.parse_args(argv)
        assert (a.command, a.take, a.plan, a.song) == ("verify", "t.wav", "p.jsonl", "s.mid"), argv
    a = parser.parse_args(["verify", "t.wav", "--plan", "p.jsonl", "-q"])
    assert (a.take, a.song, a.quiet) == ("t.wav", None, True)
    # one positional too many, or an unknown option: a usage error naming it
    assert main(["verify", "t.wav", "--plan", "p.jsonl", "s.mid", "x.mid"]) == 2
    assert "unrecognized arguments: x.mid" in capsys.readouterr().err
    assert main(["verify", "t.wav", "--plan", "p.jsonl", "--mic-gain-db", "-30.8:0.2", "s.mid", "x.mid"]) == 2
    assert "unrecognized arguments: x.mid" in capsys.readouterr().err
    assert main(["verify", "t.wav", "--plan", "p.jsonl", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert main(["verify", "--plan", "p.jsonl"]) == 2
    assert "required: TAKE.wav" in capsys.readouterr().err
    # other commands parse as before: positionals after options were always theirs
    a = parser.parse_args(["play", "--spec", "piano-61-diy", "s.mid"])
    assert a.song == "s.mid"


def test_lost_link_then_resume_continues_from_the_last_executed_note(tmp_path, small_piece, capsys):
    state, rep1, rep2 = tmp_path / "state.json", tmp_path / "r1.json", tmp_path / "r2.json"
    common = [str(small_piece), "--spec", "piano-61-diy", "--state", str(state)]
    # the link is cut 10 s into the piece (virtual time): a runtime failure, exit 1, and
    # the partial report with the fault in it (issue 9 §7)
    rc = main(["-q", "play", *common, "--port", "vmcu://?cut=10", "--report", str(rep1)])
    assert rc == 1
    assert "link" in capsys.readouterr().err
    r1 = json.loads(rep1.read_text())
    assert r1["fault"]["kind"] == "DeviceTimeout" and "link" in r1["fault"]["message"]
    assert r1["notes_not_reached"] > 0
    saved = json.loads(state.read_text())
    assert 0 < saved["next_index"] < saved["plan_commands"]
    assert main(["-q", "play", *common, "--port", "vmcu://", "--resume", "--report", str(rep2)]) == 0
    r = json.loads(rep2.read_text())
    done = json.loads(state.read_text())
    assert done["next_index"] == done["plan_commands"]
    # the notes before the resume point were played by the first run: not unheard
    assert r["notes_unheard"] == 0 and 0 < r["notes_before_resume"] < r["notes_in"]


def test_resume_on_the_simulator_is_a_usage_error(tmp_path, small_piece, capsys):
    rc = main(["play", str(small_piece), "--resume", *_outputs(tmp_path)])
    _assert_clean_failure(rc, capsys, tmp_path, "--resume")


def test_midi_channels_are_1_to_16_where_people_read_and_type_them(tmp_path, capsys):
    from robo_player.midi import write_midi
    from robo_player.score import Note, Score

    mid = tmp_path / "drums.mid"
    # a piano part on MIDI channel 1 (0 in the file) and drums on channel 10 (9)
    write_midi(Score(notes=[Note(60, 0, 200_000, 80, channel=0),
                            Note(36, 0, 200_000, 80, channel=9)]), mid)  # fmt: skip
    assert main(["inspect", str(mid), "--include-drums", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["score"]["channels"] == [1, 10]
    assert main(["inspect", str(mid), "--channels", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["score"]["channels"] == [10]
    only_drums = tmp_path / "only.mid"
    write_midi(Score(notes=[Note(36, 0, 200_000, 80, channel=9)]), only_drums)
    assert main(["inspect", str(only_drums)]) == 2
    err = capsys.readouterr().err
    assert "MIDI channel 10" in err and "channel 9" not in err


def test_inspect_takes_a_calibration_and_predicts_what_plan_does(tmp_path, small_piece, capsys):
    from robo_player.spec import load_spec
    from robo_player.spec.calibration import Calibration

    sp = load_spec("piano-61-diy")
    cal = Calibration.nominal(sp)
    # a calibration whose keys cannot play softly: plan alters loud/soft notes because of it
    from dataclasses import replace

    cal.keys = {p: replace(c, velocity=tuple(max(v, 90.0) for v in c.velocity))
                for p, c in cal.keys.items()}  # fmt: skip
    cal.measured = True
    path = tmp_path / "cal.yaml"
    cal.save(path)
    assert main(["inspect", str(small_piece), "--spec", sp.name, "--json",
                 "--calibration", str(path)]) == 0  # fmt: skip
    with_cal = json.loads(capsys.readouterr().out)["fit"]
    assert main(["inspect", str(small_piece), "--spec", sp.name, "--json"]) == 0
    without = json.loads(capsys.readouterr().out)["fit"]
    rep = tmp_path / "plan.json"
    assert main(["-q", "plan", str(small_piece), "--spec", sp.name, "--calibration", str(path),
                 "--out", str(tmp_path / "p.jsonl"), "--report", str(rep)]) == 0  # fmt: skip
    planned = json.loads(rep.read_text())
    assert with_cal["would_alter"] == planned["notes_altered"]
    assert with_cal["would_alter"] != without["would_alter"]


def test_quiet_after_the_subcommand(tmp_path, small_piece, capsys):
    assert main(["plan", str(small_piece), "-q", "--out", str(tmp_path / "p.jsonl")]) == 0
    assert capsys.readouterr().out == ""
    assert main(["-q", "plan", str(small_piece), "--out", str(tmp_path / "p.jsonl")]) == 0
    assert capsys.readouterr().out == ""


def test_docs_report_md_documents_every_key_the_report_writes(tmp_path, small_piece):
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "report.md").read_text()
    documented = set(re.findall(r"`([a-z_0-9]+)`", doc))
    for port in ("sim://", "vmcu://"):
        rep = tmp_path / "r.json"
        assert main(["-q", "play", str(small_piece), "--port", port, "--report", str(rep)]) == 0
        missing = sorted(set(json.loads(rep.read_text())) - documented)
        assert not missing, f"{port}: report keys not in docs/report.md: {missing}"


def test_drops_and_alterations_name_the_time_and_pitch(tmp_path, capsys):
    from robo_player.midi import write_midi
    from robo_player.report import note_time
    from robo_player.score import Note, Score, TempoChange

    # 120 bpm: a beat is 0.5 s; 2.5 s is bar 2, beat 2
    tm = [TempoChange(0, 0, 500_000)]
    score = Score(notes=[Note(60, 0, 200_000, 80), Note(24, 2_500_000, 200_000, 80, channel=2),
                         Note(64, 3_000_000, 200_000, 80)], tempo_map=tm)  # fmt: skip
    assert note_time(score, 2_500_000) == "2:2.0"
    assert note_time(Score(notes=score.notes), 2_500_000) == "2.50 s"  # no tempo map
    mid = tmp_path / "drop.mid"
    write_midi(score, mid)
    rep = tmp_path / "r.json"
    assert main(["play", str(mid), "--spec", "piano-61-diy", "--out-of-range", "drop",
                 "--report", str(rep)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    (d,) = json.loads(rep.read_text())["drops"]
    assert (d["pitch"], d["at"], d["channel"]) == ("C1", "2:2.0", 3)
    assert "dropped: C1 at 2:2.0" in out
    assert "3 in, 2 sounded: 2 as written, 0 altered; 1 dropped" in out
    assert main(["inspect", str(mid), "--spec", "piano-61-diy", "--out-of-range", "drop"]) == 0
    assert "drop: C1 at 2:2.0 (channel 3)" in capsys.readouterr().out

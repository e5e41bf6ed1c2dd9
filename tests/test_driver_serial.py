"""A real board behind ``serial://``: the host firmware build on a pty stands in for an
Arduino on a USB port. No sensor listens there, so the report says so (``heard: null``)
instead of calling every note unheard, and ``calibrate`` refuses at once."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from robo_player.cli import main
from robo_player.driver.ports import has_sensor
from robo_player.midi import write_midi
from robo_player.report import summary_lines
from robo_player.score import Note, Score
from robo_player.sim import mcu_process as fwmod

HAVE_HOST = fwmod.HOST_BIN.exists() or shutil.which("cc") is not None
needs_host = pytest.mark.skipif(not HAVE_HOST, reason="no host firmware and no C compiler")

MS = 1000


@pytest.fixture()
def board(tmp_path: Path) -> Iterator[str]:
    """The host firmware on a pty: the URL a user would give for a board on a port."""
    fw = fwmod.FirmwareProcess("host", tmp_path)
    inc = fw.start()
    try:
        yield f"serial://{inc.pty}"
    finally:
        fw.stop()


@pytest.fixture()
def tiny_piece(tmp_path: Path) -> Path:
    notes = [Note(60 + 2 * i, 100 * MS + 150 * MS * i, 100 * MS, 70 + 5 * i) for i in range(6)]
    path = tmp_path / "tiny.mid"
    write_midi(Score(notes=notes), path)
    return path


def test_real_hardware_ports_have_no_sensor_of_their_own() -> None:
    for url in ("serial:///dev/ttyACM0", "socket://host:1", "rfc2217://h:2", "loop://"):
        assert not has_sensor(url)
    for url in ("sim://", "fw-host://", "fw-avr://", "vmcu://"):
        assert has_sensor(url)


@needs_host
def test_sensorless_port_reports_what_it_knows_and_no_zeros(
    tmp_path: Path, board: str, tiny_piece: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rep, wav = tmp_path / "r.json", tmp_path / "a.wav"
    rc = main(["play", str(tiny_piece), "--port", board, "--spec", "piano-61-diy",
               "--report", str(rep), "--wav", str(wav)])  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0, out.err
    r = json.loads(rep.read_text())
    assert r["heard"] is None and "no sensor" in r["heard_reason"]
    for key in ("onset_error_ms", "velocity_error", "notes_unheard", "unheard",
                "max_coil_temp_ratio", "actuation_error_us", "coil_failures"):  # fmt: skip
        assert key not in r, key  # left out, never a zero that looks measured
    assert r["commands"].get("played", 0) == 12  # 6 strikes + 6 releases executed
    assert r["firmware_counts"]["played"] == 12
    assert r["link"]["bytes_sent"] > 0
    assert not wav.exists()  # no audio: no WAV
    assert "no audio" in out.err and str(wav) in out.err
    assert " unheard" not in out.out.split("heard: nothing")[0] and "heard: nothing" in out.out
    assert "commands: 12 executed, 0 late, 0 refused" in out.out
    assert "temperature" not in out.out and "actuation error" not in out.out


def test_calibrate_on_a_port_with_no_sensor_fails_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # nothing is opened: the port does not even exist, and the message is about the sensor
    rc = main(["calibrate", "--port", "serial:///dev/ttyACM-none", "--spec", "piano-61-diy",
               "--out", str(tmp_path / "c.yaml")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2
    assert "has no sensor" in err and "--mic" in err and "microphone" in err
    assert not (tmp_path / "c.yaml").exists()


def test_sensorless_summary_lines() -> None:
    r = {"notes_in": 10, "notes_played": 7, "notes_altered": 2, "notes_dropped": 1,
         "heard": None, "heard_reason": "serial://x has no sensor",
         "commands": {"played": 17, "late": 1, "refused_concurrency": 2},
         "plan": {"supply_overloads": 3}}  # fmt: skip
    lines = "\n".join(summary_lines(r))
    assert "10 in, 9 sounded: 7 as written, 2 altered; 1 dropped" in lines
    assert "heard: nothing (serial://x has no sensor)" in lines
    assert "commands: 17 executed, 1 late, 2 refused" in lines
    assert "supply: 3 strikes" in lines
    assert "unheard" not in lines and "onset" not in lines


@needs_host
def test_ctrl_c_on_a_firmware_port_saves_the_resume_point_and_resume_finishes(
    tmp_path: Path,
) -> None:
    # issue 9 §6: SIGINT during `play` on fw-host:// saves the resume point (and the
    # partial report); `--resume` plays the rest and does not call the notes played
    # before the break unheard
    import os
    import signal
    import subprocess
    import sys
    import time

    notes = [Note(48 + (i * 7) % 36, 100 * MS + 120 * MS * i, 80 * MS, 60 + i % 40)
             for i in range(60)]  # fmt: skip
    piece = tmp_path / "long.mid"
    write_midi(Score(notes=notes), piece)
    state, rep1, rep2 = tmp_path / "state.json", tmp_path / "r1.json", tmp_path / "r2.json"
    argv = [sys.executable, "-m", "robo_player", "play", str(piece), "--port", "fw-host://",
            "--state", str(state)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [*argv, "--report", str(rep1)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(4.5)  # start-up (~1.5 s) and about 2.5 s of the 7.3 s piece
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"resume point is saved" in err
    rs = json.loads(state.read_text())
    assert 0 < rs["next_index"] < 120
    r1 = json.loads(rep1.read_text())
    assert r1["fault"]["kind"] == "interrupted"
    # the firmware's own count says what ran: the resume point is not before it
    assert rs["next_index"] >= r1["firmware_counts"]["played"]
    done = subprocess.run([*argv, "--resume", "--report", str(rep2)], capture_output=True,
                          env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    r2 = json.loads(rep2.read_text())
    assert r2["notes_before_resume"] > 0
    assert r2["notes_unheard"] == 0
    assert r2["onset_error_ms"]["n"] + r2["notes_before_resume"] >= 58


@needs_host
@pytest.mark.allow_energised  # SIGKILLed: its trace stops where it died, with no all-off
def test_a_killed_firmware_is_named_and_the_partial_report_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 9 §7: a play that ends in a fault writes the partial report with the fault
    # in it, and names what died (not pyserial's generic text)
    import signal
    import threading
    import time

    from robo_player.driver.ports import OPEN_DEVICES

    notes = [Note(60 + i % 12, 100 * MS + 150 * MS * i, 80 * MS, 70) for i in range(60)]
    piece = tmp_path / "p.mid"
    write_midi(Score(notes=notes), piece)
    rep = tmp_path / "r.json"

    def kill_the_firmware() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            be = getattr(OPEN_DEVICES[-1], "last_backend", None) if OPEN_DEVICES else None
            runs = getattr(getattr(be, "fw", None), "runs", [])
            if runs:
                time.sleep(2.0)
                runs[-1].proc.send_signal(signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_firmware, daemon=True)
    killer.start()
    rc = main(["play", str(piece), "--port", "fw-host://", "--report", str(rep),
               "--state", str(tmp_path / "s.json")])  # fmt: skip
    killer.join(30)
    err = capsys.readouterr().err
    assert rc == 1
    assert "host firmware process" in err and "killed by signal 9" in err, err
    assert "device reports readiness" not in err
    r = json.loads(rep.read_text())  # the partial report was written
    assert "killed by signal 9" in r["fault"]["message"] and "killed by signal 9" in r["error"]
    assert 0 < r["commands"].get("played", 0) < 120

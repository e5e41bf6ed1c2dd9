"""The firmware process of ``fw-host://`` never outlives ``robo-player`` (issue 9).

``robo-player play --port fw-host://`` runs the host build as a child process. A
SIGTERM to robo-player stops it as Ctrl-C does (every output off, the partial report
written, exit 143) and stops the child; a SIGKILL, which robo-player cannot catch,
leaves the child to notice on its own (``--parent``: its parent is gone) and exit with
every output off. Linux only (the children are found through /proc).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robo_player.driver.trace import read_trace
from robo_player.sim.mcu_process import ensure_built

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_watchdog import _children  # noqa: E402  (the one /proc walk)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def running(pid: int) -> bool:
    """Alive and not a zombie (a re-parented child may wait to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def start_play(tmp_path: Path) -> tuple[subprocess.Popen[bytes], list[int], Path]:
    """``play`` on fw-host://, returned once the firmware has switched an output."""
    ensure_built("host")
    trace_dir = tmp_path / "traces"
    trace_dir.mkdir()
    argv = [sys.executable, "-m", "robo_player", "play", "mazurka06-2", "-q",
            "--port", f"fw-host://?trace_dir={trace_dir}", "--report", str(tmp_path / "r.json")]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    trace = trace_dir / "trace0.txt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if trace.exists() and any(
            line and not line.startswith("#") for line in trace.read_text().splitlines()
        ):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"play never switched an output: rc {proc.returncode}: {err.decode()[-2000:]}")
    kids = [k for k, _argv in _children(proc.pid) if running(k)]
    assert kids, "no firmware process under robo-player"
    return proc, kids, trace


def gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(running(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if running(p)]


def last_levels(trace: Path) -> dict[int, int]:
    last: dict[int, int] = {}
    for _clock, actuator, level in read_trace(trace).changes:
        last[actuator] = level
    return last


def test_sigterm_stops_play_like_ctrl_c_and_its_firmware_with_it(tmp_path: Path) -> None:
    proc, kids, trace = start_play(tmp_path)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("robo-player did not stop within 60 s of SIGTERM")
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    assert "resume point is saved" in err.decode()
    assert gone_within(kids, 5.0) == [], "the firmware process outlived robo-player"
    levels = last_levels(trace)
    assert levels and all(v == 0 for v in levels.values()), levels  # every coil off
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["fault"]["kind"] == "interrupted"
    assert "SIGTERM" in report["fault"]["message"] or "interrupted" in report["fault"]["message"]


def test_a_killed_robo_player_leaves_no_firmware_behind(tmp_path: Path) -> None:
    proc, kids, trace = start_play(tmp_path)
    proc.kill()  # SIGKILL: nothing in robo-player runs
    proc.communicate(timeout=30)
    assert gone_within(kids, 5.0) == [], "the firmware process outlived a killed robo-player"
    text = trace.read_text()
    assert "# exit" in text  # it stopped itself, and closed its trace
    levels = last_levels(trace)
    assert levels and all(v == 0 for v in levels.values()), levels


def _policy(pid: int) -> int:
    """The scheduling policy (/proc/PID/stat field 41: 0 normal, 1 SCHED_FIFO)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[38])


@pytest.mark.parametrize("realtime", [0, 1])
def test_the_host_build_says_which_scheduling_it_got(tmp_path: Path, realtime: int) -> None:
    """--realtime 1 (what fw-host:// asks by default): SCHED_FIFO where the OS allows it
    (root), else nice -10, else nothing; the trace's ``# sched=`` line says which, and
    it is what the OS reports for the process."""
    (binary,) = ensure_built("host")
    trace = tmp_path / "t.txt"
    p = subprocess.Popen(
        [str(binary), "--trace", str(trace), "--parent", str(os.getpid()),
         "--realtime", str(realtime)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert p.stdout is not None and p.stdout.readline().startswith(b"PTY ")
        policy = _policy(p.pid)
        nice = int(Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    finally:
        p.terminate()
        p.communicate(timeout=10)
    said = [ln for ln in trace.read_text().splitlines() if ln.startswith("# sched=")]
    assert len(said) == 1
    got = said[0].split("=", 1)[1]
    assert got == {1: "fifo"}.get(policy, "nice" if nice < 0 else "normal")
    if not realtime:
        assert got == "normal" and policy == 0
    elif os.geteuid() == 0:
        assert got == "fifo"  # root may take the real-time class


def test_the_host_build_refuses_a_parent_that_is_already_gone(tmp_path: Path) -> None:
    (binary,) = ensure_built("host")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    r = subprocess.run([str(binary), "--parent", str(gone.pid)], capture_output=True,
                       text=True, timeout=30)  # fmt: skip
    assert r.returncode == 1 and f"--parent {gone.pid} is gone" in r.stderr


@pytest.mark.parametrize("kind", ["host", "avr"])
def test_each_firmware_binary_exits_when_its_parent_is_killed(tmp_path: Path, kind: str) -> None:
    """The --parent check of the host build and of the simavr harness: a parent process
    that started it is SIGKILLed; the firmware exits on its own, its trace closed."""
    from robo_player.sim.mcu_process import FirmwareProcess

    try:
        argv = FirmwareProcess(kind, tmp_path)._argv(tmp_path / "t.txt", None)
    except Exception as err:  # no simavr here: the AVR side cannot be built
        pytest.skip(f"fw-{kind} cannot be built: {err}")
    # a parent that starts the firmware with --parent <its own pid> and says its pid
    script = (
        "import os, subprocess, sys, time\n"
        "argv = sys.argv[1:]\n"
        "argv[argv.index('--parent') + 1] = str(os.getpid())\n"
        "p = subprocess.Popen(argv, stdout=subprocess.PIPE)\n"
        "line = b''\n"
        "while not line.startswith(b'PTY '):  # simavr chats first\n"
        "    line = p.stdout.readline()\n"
        "    if not line:\n"
        "        sys.exit('no PTY line')\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, *argv], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    said = parent.stdout.readline()
    assert said.strip().isdigit(), f"the firmware did not start: {said!r}"
    child = int(said)
    assert running(child)
    parent.kill()
    parent.wait(timeout=30)
    assert gone_within([child], 10.0) == [], f"fw-{kind} outlived its killed parent"
    # (the host build's last line; the harness ends its trace with its own totals)
    last = (tmp_path / "t.txt").read_text().splitlines()[-1]
    assert last.startswith("# exit" if kind == "host" else "# ")

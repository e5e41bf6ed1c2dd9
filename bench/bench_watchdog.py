"""Watchdog bench (issue 9 §6): a busy host must not end a performance, and a host that
is really gone must leave every output off within the watchdog window.

    nice -n 5 .venv/bin/python bench/bench_watchdog.py [--plays 20] [--piece mazurka06-2]
        [--kills 3] [--no-load] [--watchdog-ms MS] [--drain-ms MS]

The window is the spec's ``thermal.watchdog_ms`` (W) plus ``thermal.watchdog_drain_ms``
(D): after W of silence the firmware's watchdog fires, what is queued on it plays out
for at most D (nothing new is taken), then every output goes off (docs/protocol.md
"Watchdog").

1. Host pauses: while a load process keeps both cores busy (two spinning workers), a
   thread that asks to wake every 5 ms records how late it woke: the pauses a stream
   loop and its keep-alive thread see. Printed as p50/p99/p99.9/max; the watchdog
   window the specs use is chosen from the max, with margin (docs/driver.md).
2. Plays: ``--plays`` plays of ``--piece`` on ``fw-host://`` beside the same load;
   counted: watchdog shutdowns (target 0), other faults, the longest quiet line the
   keep-alive thread saw.
3. Kills: the host firmware on a pty, ``robo-player play --port serial://PTY`` in a
   child process, killed (SIGKILL) part way, beside the same load. The kill's instant is
   placed on the firmware's own clock (its trace header gives clock 0 on
   CLOCK_MONOTONIC); from the trace: when every output was off for good after the kill
   (target: within W + D, 0 ms past), the strikes that started after the kill (the
   queue playing out) and after W (the watchdog had fired: its drain).
4. ``--avr-kills N``: the same on ``fw-avr://`` (the AVR firmware under simavr, on
   simulated time): ``robo-player play --port fw-avr://`` killed once the trace shows
   strikes; the simavr harness it started lives on, and the kill is placed on the MCU's
   clock by the harness's clock file (its cycle count at the kill).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
Row = tuple[int, tuple[int, ...], int]  # a trace's (clock, output, level)


def _spin(stop: Any) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF


class Load:
    """Another process keeping both cores busy (two spinning workers)."""

    def __init__(self, workers: int = 2) -> None:
        self.stop = mp.Event()
        self.procs = [mp.Process(target=_spin, args=(self.stop,), daemon=True) for _ in range(workers)]

    def __enter__(self) -> Load:
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(2)
            if p.is_alive():
                p.kill()


def host_pauses(seconds: float, period_s: float = 0.005) -> list[float]:
    """How late (ms) a thread woke, asking to every ``period_s``, for ``seconds``."""
    late: list[float] = []

    def run() -> None:
        end = time.perf_counter() + seconds
        while (t := time.perf_counter()) < end:
            time.sleep(period_s)
            late.append((time.perf_counter() - t - period_s) * 1e3)

    th = threading.Thread(target=run)
    th.start()
    th.join()
    return late


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def plays(
    n: int, piece: str, spec: str, watchdog_ms: int | None, drain_ms: int | None
) -> dict[str, Any]:
    from robo_player.driver.ports import open_port
    from robo_player.errors import DeviceShutdown, RoboPlayerError
    from robo_player.midi import read_midi, resolve_piece
    from robo_player.planner import plan as plan_for
    from robo_player.spec import load_spec

    sp = load_spec(spec)
    plan, _ = plan_for(read_midi(resolve_piece(piece)), sp, None, None)
    q = [f"watchdog_ms={watchdog_ms}"] if watchdog_ms else []
    q += [f"watchdog_drain_ms={drain_ms}"] if drain_ms is not None else []
    url = "fw-host://" + ("?" + "&".join(q) if q else "")
    out: dict[str, Any] = {"plays": 0, "watchdog": 0, "other_faults": [], "max_quiet_ms": 0.0,
                           "wall_s": []}  # fmt: skip
    for i in range(n):
        t0 = time.perf_counter()
        with open_port(url, sp) as dev:
            perf: Any
            try:
                perf = dev.play(plan)
            except (DeviceShutdown, RoboPlayerError) as err:
                perf = getattr(err, "performance", None)
                if "WATCHDOG" in str(err):
                    out["watchdog"] += 1
                else:
                    out["other_faults"].append(f"{type(err).__name__}: {err}")
        out["plays"] += 1
        out["wall_s"].append(round(time.perf_counter() - t0, 1))
        if perf is not None and "keepalive" in perf.extra:
            out["max_quiet_ms"] = max(out["max_quiet_ms"], perf.extra["keepalive"]["max_quiet_ms"])
        print(f"  play {i + 1}/{n}: {out['watchdog']} watchdog, "
              f"{len(out['other_faults'])} other, max quiet {out['max_quiet_ms']:.1f} ms",
              flush=True)  # fmt: skip
    return out


def _trace_t0_ns(trace: Path) -> int:
    """Clock 0 of the host build's trace on CLOCK_MONOTONIC (its header line)."""
    head = trace.read_text().split("\n", 1)[0]
    for word in head.split():
        if word.startswith("t0_monotonic_ns="):
            return int(word.split("=", 1)[1])
    raise SystemExit(f"{trace}: no t0_monotonic_ns in the header {head!r} (rebuild the firmware)")


def kill_test(
    piece: str, spec: str, after_s: float, window_ms: tuple[int, int], drain_opt: int | None
) -> dict[str, Any]:
    """SIGKILL the host process part way; when, on the firmware's clock, was every output
    off for good, and what did it still play?"""
    from robo_player.sim.mcu_process import FirmwareProcess

    wd_ms, drain_ms = window_ms
    work = Path(tempfile.mkdtemp(prefix="bench_wd_"))
    fw = FirmwareProcess("host", work)
    inc = fw.start()
    t0_ns = _trace_t0_ns(inc.trace)  # the firmware's clock: µs since t0 (ppm 0)
    url = f"serial://{inc.pty}" + (f"?watchdog_drain_ms={drain_opt}" if drain_opt is not None else "")
    child = subprocess.Popen(
        [sys.executable, "-m", "robo_player", "-q", "play", piece, "--spec", spec,
         "--port", url, "--state", str(work / "state.json")],  # fmt: skip
        cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # streaming for a while (a loaded machine takes seconds to start the child), then
    # ``after_s`` more
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        if sum(1 for ln in inc.trace.read_text().split("\n") if ln[:1].isdigit()) >= 20:
            break
        time.sleep(0.2)
    time.sleep(after_s)
    killed_ns = time.monotonic_ns()
    child.send_signal(signal.SIGKILL)
    child.wait()
    time.sleep((wd_ms + drain_ms) / 1000 + 1.0)
    stopped_us = (time.monotonic_ns() - t0_ns) / 1e3
    fw.stop()
    rows: list[Row] = []
    for line in inc.trace.read_text().split("\n"):
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit():
            rows.append((int(parts[0]), (int(parts[1]),), int(parts[2])))
    kill_us = (killed_ns - t0_ns) / 1e3
    return {"killed_after_s": after_s,
            **after_kill(rows, kill_us, stopped_us, 1_000_000, window_ms)}  # fmt: skip


def after_kill(
    rows: list[Row], kill: float, stop: float, hz: int,
    window_ms: tuple[int, int],
) -> dict[str, Any]:  # fmt: skip
    """From a firmware trace's (clock, output, level) rows: how many outputs were on at
    the kill, when every output was off for good after it (ms; the kill itself if none
    was on), how far past the window that was, and the strikes (an output switched on
    from off) after the kill and after the watchdog fired. Rows after ``stop`` (the
    firmware's own all-off when the bench stops it) are not counted."""
    wd_ms, drain_ms = window_ms
    fired = kill + wd_ms * hz / 1000
    level: dict[tuple[int, ...], int] = {}
    on_at_kill: int | None = None
    all_off = kill
    onsets = onsets_fired = 0
    for clock, out, lv in rows:
        if clock > stop:
            break
        if clock > kill:
            if on_at_kill is None:
                on_at_kill = sum(1 for v in level.values() if v)
            if lv and not level.get(out):
                onsets += 1
                onsets_fired += clock > fired
            level[out] = lv
            if not any(level.values()):
                all_off = clock
        else:
            level[out] = lv
    off_ms = (all_off - kill) * 1000 / hz
    return {"on_at_kill": on_at_kill or 0, "left_on": sum(1 for v in level.values() if v),
            "all_off_ms_after_kill": round(off_ms, 2),
            "past_window_ms": round(max(0.0, off_ms - wd_ms - drain_ms), 2),
            "strikes_after_kill": onsets, "strikes_after_watchdog": onsets_fired}  # fmt: skip


def _children(pid: int) -> list[tuple[int, list[str]]]:
    """(pid, argv) of the processes whose parent is ``pid``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                argv = (d / "cmdline").read_bytes().split(b"\0")
                out.append((int(d.name), [a.decode() for a in argv if a]))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _cycles(clock_file: Path) -> int:
    """The simavr harness's cycle count (its --clock-file: "RPCK", Hz u32, cycles u64)."""
    b = clock_file.read_bytes()[:16]
    return int.from_bytes(b[8:16], "little") if b[:4] == b"RPCK" else 0


def avr_kill_test(piece: str, spec: str, window_ms: tuple[int, int]) -> dict[str, Any]:
    """SIGKILL ``play --port fw-avr://`` once strikes show in its harness's trace; when,
    on the MCU's clock, was every output off for good?"""
    wd_ms, drain_ms = window_ms
    work = Path(tempfile.mkdtemp(prefix="bench_wd_avr_"))
    child = subprocess.Popen(
        [sys.executable, "-m", "robo_player", "-q", "play", piece, "--spec", spec,
         "--port", "fw-avr://", "--state", str(work / "state.json")],  # fmt: skip
        cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    sim: tuple[int, list[str]] | None = None
    deadline = time.monotonic() + 120
    trace = clock_file = None
    while time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.5)
        sims = [c for c in _children(child.pid) if any("robo_sim" in a for a in c[1][:1])]
        if sims and sim is None:
            sim = sims[0]
            argv = sim[1]
            trace = Path(argv[argv.index("--trace") + 1])
            clock_file = Path(argv[argv.index("--clock-file") + 1])
        if trace is not None and trace.exists():
            changes = sum(1 for ln in trace.read_text().split("\n") if ln[:1].isdigit())
            if changes >= 60:  # streaming for a while: strikes, holds, releases
                break
    if sim is None or trace is None or clock_file is None or child.poll() is not None:
        child.kill()
        return {"error": "fw-avr:// did not start streaming within 120 s"}
    hz = 16_000_000
    kill_cycles = _cycles(clock_file)
    child.send_signal(signal.SIGKILL)
    child.wait()
    # the harness lives on (orphaned): wait until its clock is past the window
    want = kill_cycles + int((wd_ms + drain_ms + 300) * hz / 1000)
    deadline = time.monotonic() + 120
    while _cycles(clock_file) < want and time.monotonic() < deadline:
        time.sleep(0.2)
    stop_cycles = _cycles(clock_file)
    os.kill(sim[0], signal.SIGTERM)  # the harness this bench's child started
    for _ in range(50):
        if not Path(f"/proc/{sim[0]}").exists():
            break
        time.sleep(0.1)
    text = trace.read_text()
    base = 0
    for line in text.split("\n"):
        if line.startswith("# timer1 clock = cycle - "):
            base = int(line[len("# timer1 clock = cycle - "):].split()[0])
    rows: list[Row] = []  # "<clock> <out_kind> <out_addr> <out_channel> <level>"
    for line in text.split("\n"):
        parts = line.split()
        if len(parts) == 5 and parts[0].isdigit():
            rows.append((int(parts[0]), (int(parts[1]), int(parts[2]), int(parts[3])), int(parts[4])))
    return after_kill(rows, kill_cycles - base, stop_cycles - base, hz, window_ms)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plays", type=int, default=20, help="plays on fw-host:// (default 20)")
    ap.add_argument("--piece", default="mazurka06-2", help="the long piece (default mazurka06-2)")
    ap.add_argument("--spec", default="piano-88-grand", help="spec (default piano-88-grand)")
    ap.add_argument("--kills", type=int, default=3, help="kill tests (default 3)")
    ap.add_argument("--pause-s", type=float, default=20.0, help="pause probe length (default 20)")
    ap.add_argument("--no-load", action="store_true", help="without the busy process (baseline)")
    ap.add_argument("--watchdog-ms", type=int, help="override the spec's window")
    ap.add_argument("--drain-ms", type=int, help="override the spec's watchdog_drain_ms")
    ap.add_argument("--avr-kills", type=int, default=0,
                    help="kill tests on fw-avr:// under simavr (default 0; the spec's window)")
    args = ap.parse_args()
    from robo_player.driver.keepalive import watchdog_drain_ms_for, watchdog_ms_for
    from robo_player.spec import load_spec

    sp = load_spec(args.spec)
    window = args.watchdog_ms or watchdog_ms_for(sp)
    drain = watchdog_drain_ms_for(sp) if args.drain_ms is None else args.drain_ms
    rows: list[tuple[str, str, str]] = []
    load = Load() if not args.no_load else None
    try:
        if load:
            load.__enter__()
        late = host_pauses(args.pause_s)
        rows.append(("host pause p50 / p99 / p99.9 / max (ms)",
                     f"{_pct(late, .5):.2f} / {_pct(late, .99):.2f} / {_pct(late, .999):.2f} / "
                     f"{max(late):.2f}", f"< watchdog {window} ms"))  # fmt: skip
        if args.plays:
            r = plays(args.plays, args.piece, args.spec, args.watchdog_ms, args.drain_ms)
            rows.append((f"watchdog shutdowns in {r['plays']} plays of {args.piece}",
                         str(r["watchdog"]), "0"))  # fmt: skip
            rows.append(("other faults", str(len(r["other_faults"])), "0"))
            rows.append(("longest quiet line seen by the keep-alive thread (ms)",
                         f"{r['max_quiet_ms']:.1f}", f"< {window}"))  # fmt: skip
            rows.append(("wall time per play (s, median)", f"{statistics.median(r['wall_s']):.1f}", ""))
            for f in r["other_faults"][:3]:
                print("  fault:", f)
        past: list[float] = []
        for k in range(args.kills):
            kr = kill_test(args.piece, args.spec, 1.0 + 1.7 * k, (window, drain), args.drain_ms)
            print("  kill", k + 1, json.dumps(kr), flush=True)
            past.append(kr["past_window_ms"] + 1e6 * kr["left_on"])
            rows.append((f"kill {k + 1}: all outputs off after the kill (ms)",
                         f"{kr['all_off_ms_after_kill']:.1f} ({kr['on_at_kill']} on at the kill, "
                         f"{kr['left_on']} left on)",
                         f"<= {window} + {drain}"))  # fmt: skip
            rows.append((f"kill {k + 1}: strikes after the kill / more than W after it",
                         f"{kr['strikes_after_kill']} / {kr['strikes_after_watchdog']}",
                         "> 0 / > 0 with a drain (the queue plays out)" if drain else "- / 0"))  # fmt: skip
        if past:
            rows.append(("kills: most ms past the window (W + D)", f"{max(past):.1f}", "0"))
        for k in range(args.avr_kills):
            kr = avr_kill_test(args.piece, args.spec, (window, drain))
            print("  avr kill", k + 1, json.dumps(kr), flush=True)
            if "error" in kr:
                rows.append((f"fw-avr:// kill {k + 1}", kr["error"], ""))
                continue
            rows.append((f"fw-avr:// kill {k + 1}: all outputs off after the kill (ms)",
                         f"{kr['all_off_ms_after_kill']:.1f} ({kr['on_at_kill']} on at the kill, "
                         f"{kr['left_on']} left on; {kr['past_window_ms']:.1f} past)",
                         f"<= {window} + {drain}, 0 past"))  # fmt: skip
            rows.append((f"fw-avr:// kill {k + 1}: strikes after the kill / more than W after it",
                         f"{kr['strikes_after_kill']} / {kr['strikes_after_watchdog']}", ""))
    finally:
        if load:
            load.__exit__()
    w = max(len(r[0]) for r in rows)
    print(json.dumps({"load": not args.no_load, "watchdog_ms": window, "drain_ms": drain,
                      "loadavg": os.getloadavg()}))  # fmt: skip
    print(f"{'measure'.ljust(w)}  {'value':>28}  target")
    for name, val, tgt in rows:
        print(f"{name.ljust(w)}  {val:>28}  {tgt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

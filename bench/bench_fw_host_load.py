# ruff: noqa: T201  (a benchmark: it prints its results)
"""fw-host:// timing on a busy machine, with and without the real-time hint.

    .venv/bin/python bench/bench_fw_host_load.py [PIECE] [--spec piano-61-diy]
        [--plays 2] [--load]

The host build of the firmware is an ordinary process: on a loaded machine the OS runs
it late, its outputs switch late (actuation error) and commands come due after the
firmware's late slack (10 ms: LATE, not played). ``fw-host://?realtime=1`` (the
default) has it ask for SCHED_FIFO (else nice -10) and 1 µs timer slack; ``realtime=0``
is ordinary scheduling. The plays alternate between the two, so both see the same
load; ``--load`` adds two spinning workers (``bench_watchdog.Load``) to whatever the
machine is doing. One row per play: what the trace says the firmware got (``sched``),
the actuation error (trace against plan: mean / p99 / max, µs), late commands, notes
heard, wire bytes per note, and the load average at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from bench_watchdog import Load

from robo_player.driver.ports import open_port
from robo_player.midi import read_midi, resolve_piece
from robo_player.planner import plan as plan_for
from robo_player.spec import load_spec


def _sched(trace_dir: str) -> str:
    for f in sorted(Path(trace_dir).glob("trace*.txt")):
        for line in f.read_text(errors="replace").splitlines()[:4]:
            if line.startswith("# sched="):
                return line.split("=", 1)[1]
    return "?"


def play_once(plan: Any, spec: Any, realtime: int) -> list[str]:
    trace_dir = tempfile.mkdtemp(prefix="bench_fwhost_")
    with open_port(f"fw-host://?realtime={realtime}&trace_dir={trace_dir}", spec) as dev:
        perf = dev.play(plan)
    act = perf.extra.get("actuation_error_us") or {}
    cmds = perf.extra.get("commands", {})
    late = cmds.get("late", 0) + cmds.get("late_release", 0)
    return [
        str(realtime),
        _sched(trace_dir),
        f"{act.get('mean', 0):.0f} / {act.get('p99', 0):.0f} / {act.get('max', 0):.0f}",
        str(late),
        str(len(perf.heard)),
        f"{perf.extra.get('wire_bytes_per_note', 0):.2f}",
        f"{os.getloadavg()[0]:.1f}",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("piece", nargs="?", default="mazurka06-2")
    ap.add_argument("--spec", default="piano-61-diy")
    ap.add_argument("--plays", type=int, default=2, help="plays per setting (default: 2)")
    ap.add_argument("--load", action="store_true", help="add two spinning workers")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    spec = load_spec(args.spec)
    plan, _ = plan_for(read_midi(resolve_piece(args.piece)), spec, None, None)
    head = ["realtime", "sched", "act error mean / p99 / max µs", "late", "heard",
            "wire B/note", "load avg"]  # fmt: skip
    rows: list[list[str]] = []
    with Load() if args.load else contextlib.nullcontext():
        for i in range(2 * args.plays):
            rows.append(play_once(plan, spec, realtime=i % 2))
            print("  ".join(rows[-1]), flush=True)
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(f"\n{args.piece} on {args.spec}, fw-host://" + (" + 2 spinning workers" if args.load else ""))
    for r in [head, *rows]:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

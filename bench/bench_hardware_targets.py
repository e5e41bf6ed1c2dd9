# ruff: noqa: T201  (a benchmark: it prints its results)
"""Issue 9's targets on hidden pieces: sim:// against fw-host:// and fw-avr://, one table.

    .venv/bin/python bench/bench_hardware_targets.py [PIECE.mid ...]
        [--specs piano-61-diy piano-88-grand] [--ports fw-host fw-avr] [--avr-speed 1.0]
        [--sensor notes|audio]

Each piece (default: two ASAP scores of 1000+ notes at /work/shared/data/asap, not bundled) is planned
for each spec and played through ``sim://`` (the reference) and each firmware port, the
way ``play`` does (``build_report``), every port with the same simulated sensor
(``--sensor``, default ``notes``: ``sim://?sensor=notes``, ``fw-host://?sensor=notes``, ...;
reports read the note-level sensor with either, ``audio`` only adds a room recording to
each take). One row per piece, spec and port:

- unheard beyond sim: notes unheard on the port that ``sim://`` heard (target 0), and
  the other way: notes ``sim://`` left unheard that the port heard (both listed by
  score index under the row when there are any); heard is the one matcher's
  (robo_player/matching.py, with its causality rule since session 9);
- refused: the firmware's refused commands (target 0); late: strikes the firmware did
  not play because it reached them past its late slack (``fw-host://``: the OS ran it
  late);
- actuation p99: the trace clock of each actuation against its planned time (target
  <= 20 µs on direct pins; ``fw-host://`` is timed by the host's OS and shows its load);
- wire B/note: scheduled records with their framing and the device's ACKs of them, per
  note sounded (target <= 8 on pieces of 800 notes or more in the score; marked below);
- counts agree: the driver's played/late/refused/flushed equal the firmware's counters;
- irq-off: on ``fw-avr://``, the longest interrupts-off stretch the simavr harness saw
  in that run (target <= 100 µs; a UART byte at 115200 baud takes 87 µs) and the UART
  bytes lost to the ATmega2560's 2-byte receive buffer;
- load: the machine's 1-minute load average when the row ended (``fw-host://``'s timing
  depends on it).

``fw-avr://`` runs on simulated time, paced at ``--avr-speed`` simulated s per wall s
(a 60 s piece at the default 1.0 takes a minute or more on a loaded machine). Needs
``make firmware``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from robo_player.driver import open_port
from robo_player.fileio import write_text
from robo_player.midi import read_midi
from robo_player.planner import PlanOptions
from robo_player.planner import plan as plan_for
from robo_player.report import build_report
from robo_player.spec import load_spec

ASAP = Path("/work/shared/data/asap")
DEFAULT_PIECES = (
    ASAP / "Bach/Prelude/bwv_856/midi_score.mid",  # 1071 notes, 54 s
    ASAP / "Chopin/Etudes_op_25/8/midi_score.mid",  # 1547 notes, 63 s
)
WIRE_MIN_NOTES = 800  # the wire-bytes target holds on pieces this long


def _irq_off(trace_dir: str) -> tuple[float | None, int]:
    """The longest interrupts-off stretch (µs) and UART overruns the harness wrote."""
    worst: float | None = None
    overruns = 0
    for f in Path(trace_dir).glob("trace*.txt"):
        text = f.read_text(errors="replace")
        m = re.search(r"# interrupts off for at most (\d+) cycles", text)
        if m:
            worst = max(worst or 0.0, int(m[1]) / 16.0)  # 16 MHz
        m = re.search(r"# uart rx overruns (\d+) of", text)
        if m:
            overruns += int(m[1])
    return worst, overruns


def _play(url: str, spec: Any, score: Any, piece: str) -> dict[str, Any]:
    plan, plan_report = plan_for(score, spec, None, PlanOptions())
    with open_port(url, spec) as dev:
        perf = dev.play(plan)
    return build_report(plan_report=plan_report, performance=perf, piece=piece, spec=spec,
                        port=url, score=score)  # fmt: skip


def _unheard_diff(rep: dict[str, Any], ref: dict[str, Any]) -> str:
    """The notes (score indices) one port left unheard and the other heard, for a
    diagnosis ('' when none)."""
    mine, sims = set(rep.get("unheard", [])), set(ref.get("unheard", []))
    if mine == sims:
        return ""
    return f"unheard beyond sim: notes {sorted(mine - sims)}; sim's beyond: notes {sorted(sims - mine)}"


def _row(piece: str, spec: str, port: str, rep: dict[str, Any], ref: dict[str, Any],
         irq: tuple[float | None, int] | None) -> list[str]:  # fmt: skip
    beyond = len(set(rep.get("unheard", [])) - set(ref.get("unheard", [])))
    short = len(set(ref.get("unheard", [])) - set(rep.get("unheard", [])))  # the other way
    cmds = rep.get("commands", {})
    refused = sum(v for k, v in cmds.items() if k.startswith("refused"))
    act = rep.get("actuation_error_us") or {}
    wire = rep.get("wire_bytes_per_note")
    notes = rep["notes_sounded"]
    agree = rep.get("counts_agree")
    irq_s = "-"
    if irq is not None:
        irq_s = "no line" if irq[0] is None else f"{irq[0]:.1f} µs ({irq[1]} ovr)"
    return [
        Path(piece).parent.name + "/" + Path(piece).name if "asap" in piece else Path(piece).name,
        spec,
        port.split("?")[0],
        str(notes),
        f"{rep.get('heard')}/{ref.get('heard')}",
        f"{beyond} / {short}",
        str(refused),
        str(cmds.get("late", 0)),
        f"{act['p99']:.1f}" if act else "-",
        f"{wire:.2f}" + ("" if rep["notes_in"] >= WIRE_MIN_NOTES else " (<800 in)")
        if wire is not None else "-",
        str(agree),
        irq_s,
        f"{os.getloadavg()[0]:.1f}",  # the machine's load: fw-host:// is timed by its OS
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pieces", nargs="*", default=[str(p) for p in DEFAULT_PIECES])
    ap.add_argument("--specs", nargs="+", default=["piano-61-diy", "piano-88-grand"])
    ap.add_argument("--ports", nargs="+", default=["fw-host", "fw-avr"],
                    choices=["fw-host", "fw-avr", "vmcu"])  # fmt: skip
    ap.add_argument("--avr-speed", type=float, default=1.0,
                    help="fw-avr: simulated s per wall s (default: 1.0)")  # fmt: skip
    ap.add_argument("--keep", default="", help="write each report JSON into this folder")
    ap.add_argument("--sensor", default="notes", choices=["notes", "audio"],
                    help="the simulated sensor of EVERY port, sim:// included, so that the "
                         "comparison is fair (default: notes; reports read the note-level "
                         "sensor either way, audio adds a room recording to each take)")  # fmt: skip
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    head = ["piece", "spec", "port", "notes", "heard/sim", "unheard beyond sim / sim's beyond", "refused",
            "late", "act p99 µs", "wire B/note", "counts agree", "irq-off (UART overruns)", "load"]  # fmt: skip
    rows: list[list[str]] = []
    for piece in args.pieces:
        score = read_midi(piece)
        for name in args.specs:
            spec = load_spec(name)
            ref = _play(f"sim://?sensor={args.sensor}", spec, score, piece)
            for port in args.ports:
                trace_dir = tempfile.mkdtemp(prefix="bench_hw_")
                if port == "fw-avr":
                    url = f"fw-avr://?speed={args.avr_speed}&trace_dir={trace_dir}&sensor={args.sensor}"
                elif port == "fw-host":
                    url = f"fw-host://?sensor={args.sensor}"
                else:
                    url = f"vmcu://?sensor={args.sensor}"
                rep = _play(url, spec, score, piece)
                irq = _irq_off(trace_dir) if port == "fw-avr" else None
                if args.keep:
                    out = Path(args.keep) / f"{Path(piece).parent.name}-{name}-{port}.json"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    write_text(out, json.dumps({**rep, "irq_off_us": irq, "trace_dir": trace_dir}, indent=1))
                rows.append(_row(piece, name, url, rep, ref, irq))
                print("  ".join(rows[-1]), flush=True)  # progress: a long run shows each row
                diff = _unheard_diff(rep, ref)
                if diff:
                    print(f"    {diff}", flush=True)
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print()
    for r in [head, *rows]:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    print("targets: unheard beyond sim 0, refused 0, act p99 <= 20 µs on direct pins (fw-avr), "
          f"wire <= 8 B/note on pieces of >= {WIRE_MIN_NOTES} notes, counts agree True, "
          "irq-off <= 100 µs with 0 overruns")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

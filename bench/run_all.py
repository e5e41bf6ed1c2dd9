"""Run the benchmarks: every one in bench/ in turn (each prints its own table), or, with
``--baseline REV``, issue 8's before/after table: the same benches on git revision REV
and on this tree, one run each, their figures side by side.

    .venv/bin/python bench/run_all.py                      # every bench_*.py
    .venv/bin/python bench/run_all.py --baseline 6fda615   # issue 8: before | after
    .venv/bin/python bench/run_all.py --baseline 6fda615 --quick   # fewer seeds, shorter

The before/after benches (issue 8's targets): ``bench_piano.py`` (piano fidelity on the
bundled pieces: onset and velocity error, calibration strikes per key, notes unheard),
``bench_link.py`` (actuation error and wire bytes through the AVR firmware under simavr,
clock-sync error) and ``bench_planner.py`` (planning speed against mido parsing). REV is
unpacked with ``git archive`` into a temporary folder, its firmware built there (``make -C
firmware host avr sim``), and each bench runs on that tree's code; this tree's firmware is
built the same way. Both sides run in this one process's turn, one after the other, so a
busy machine slows both; the speed rows are ratios for that reason.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# bench -> its arguments for (full, quick) runs
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "bench_piano.py": ([], ["--seeds", "1"]),
    "bench_link.py": ([], ["--quick"]),
    "bench_planner.py": ([], ["--repeat", "5"]),
}


def run_every_bench() -> int:
    status = 0
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n===== {script.name} =====", flush=True)
        rc = subprocess.call([sys.executable, str(script)])
        status = status or rc
    return status


def _rows_piano(out: str) -> dict[str, str]:
    """The summary table's rows, and notes unheard per mode from the timing table."""
    rows: dict[str, str] = {}
    section = ""
    for line in out.splitlines():
        if line.startswith("## "):
            section = line
            continue
        if section.startswith("## Summary") and line and not line.startswith("measure"):
            rest = line[42:].split()  # target (may hold a space), measured, status
            if len(rest) >= 3:
                rows[line[:42].strip()] = rest[-2]
        elif section.startswith("## Timing") and line and not line.startswith("mode"):
            m = re.match(r"(.{20})\s+" + r"(\S+)\s+" * 5 + r"(\d+)", line)
            if m:
                rows[f"notes unheard, {m.group(1).strip()}"] = m.group(7)
        elif section.startswith("## Calibration cost") and "strikes per key" in line:
            rows["calibration strikes per key (mean)"] = line.split("mean ")[1].split(",")[0]
    return rows


def _rows_link(out: str) -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in out.splitlines()[1:]:
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) >= 2 and not line.startswith("#"):
            rows[parts[0]] = parts[1]
    return rows


def _rows_planner(out: str) -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0].startswith("piano-"):
            rows[f"planning us/note (plan+write), {parts[0]}"] = parts[4]
            rows[f"(plan+write)/mido parse, {parts[0]}"] = parts[5]
    return rows


PARSERS = {"bench_piano.py": _rows_piano, "bench_link.py": _rows_link,
           "bench_planner.py": _rows_planner}  # fmt: skip


def _unpack(rev: str, dest: Path) -> None:
    subprocess.run(f"git -C {ROOT} archive {rev} | tar -x -C {dest}", shell=True, check=True)


def _build_firmware(tree: Path) -> str:
    """Build the firmware of ``tree``; "" when done, else why not (the AVR rows then say so)."""
    res = subprocess.run(
        ["make", "-s", "-C", str(tree / "firmware"), "host", "avr", "sim"],
        capture_output=True,
        text=True,
    )
    return "" if res.returncode == 0 else res.stderr.strip().splitlines()[-1:][0]


def _run(tree: Path, script: str, args: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree))
    res = subprocess.run(
        [sys.executable, str(tree / "bench" / script), *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        print(f"# {script} in {tree} exited {res.returncode}: {res.stderr[-400:]}", flush=True)
    return res.stdout


def before_after(rev: str, quick: bool, only: list[str]) -> int:
    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "base"
        base.mkdir()
        _unpack(rev, base)
        for tree in (base, ROOT):
            why = _build_firmware(tree)
            if why:
                print(f"# firmware of {tree} not built: {why}", flush=True)
        w = 64
        print(f"\n## Issue 8: before ({rev}) and after (this tree), one run each")
        print(f"{'measure':<{w}} {'before':>20} {'after':>20}")
        for script, (full, short) in BENCHES.items():
            if only and script.removeprefix("bench_").removesuffix(".py") not in only:
                continue
            args = short if quick else full
            print(f"# {script} {' '.join(args)}", flush=True)
            before = PARSERS[script](_run(base, script, args))
            after = PARSERS[script](_run(ROOT, script, args))
            names = [*before, *(k for k in after if k not in before)]
            wn = max([w, *map(len, names)])
            for name in names:
                b, a = before.get(name, "-"), after.get(name, "-")
                print(f"{name:<{wn}} {b:>20} {a:>20}", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline", help="git revision for the before column (e.g. 6fda615)")
    ap.add_argument("--quick", action="store_true", help="fewer seeds and rounds")
    ap.add_argument(
        "--only", default="", help="comma-separated subset of piano,link,planner (default all)"
    )
    args = ap.parse_args()
    if not args.baseline:
        return run_every_bench()
    only = [x for x in args.only.split(",") if x]
    return before_after(args.baseline, args.quick, only)


if __name__ == "__main__":
    sys.exit(main())

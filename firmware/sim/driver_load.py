# ruff: noqa: T201  (a command-line script: it prints its results)
"""AVR CPU load at 100 notes/s with the real driver, as ``bench/bench_link.py`` measures
it, with an optional per-address profile of the busy cycles.

    .venv/bin/python firmware/sim/driver_load.py [PROFILE_FILE] [--speed 0.15]
    .venv/bin/python firmware/sim/driver_load.py --rate 20 --notes 20   # bench's timing row
    .venv/bin/python firmware/sim/driver_load.py --spec piano-88-grand  # PCA9685 outputs

Plays 450 single notes at 100 notes/s on the 61-key DIY spec (direct pins, software
PWM; ``--spec``: another) through ``fw-avr://`` and
prints the load of each whole simulated second between the first and last actuation
(the bench's row). With PROFILE_FILE the harness writes its ``--profile`` histogram
there: ``firmware/sim/profile.py PROFILE_FILE`` sums it per function.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from driver_helpers import make_plan  # noqa: E402

from robo_player.sim import mcu_process  # noqa: E402
from robo_player.sim.ports import open_fw_avr  # noqa: E402
from robo_player.spec.loader import load_spec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", nargs="?")
    ap.add_argument("--speed", type=float, default=0.15)
    ap.add_argument("--rate", type=float, default=100.0, help="notes/s (bench: 100; 20 for timing)")
    ap.add_argument("--notes", type=int, default=450)
    ap.add_argument("--spec", default="piano-61-diy", help="spec name (default piano-61-diy)")
    ap.add_argument("--elf", default="", help="another AVR build (default: build/avr's)")
    args = ap.parse_args(argv)
    orig = mcu_process.FirmwareProcess._argv  # type: ignore[attr-defined]
    traces: list[Path] = []

    def argv_with_profile(self, trace, clock_file):  # type: ignore[no-untyped-def]
        traces.append(Path(trace))
        extra = ["--profile", str(Path(args.profile).resolve())] if args.profile else []
        return [*orig(self, trace, clock_file), *extra]

    mcu_process.FirmwareProcess._argv = argv_with_profile  # type: ignore[attr-defined,method-assign]
    sp = load_spec(args.spec)
    plan = make_plan(sp, notes=args.notes, gap_us=int(1e6 / args.rate), chord=1)
    keep = tempfile.mkdtemp(prefix="driver_load_")  # the trace stays: its last lines
    elf = f"&elf={Path(args.elf).resolve()}" if args.elf else ""
    dev = open_fw_avr(f"fw-avr://?speed={args.speed}&trace_dir={keep}{elf}", sp)
    perf = dev.play(plan)
    tr = dev.last_trace
    changes = [clk for clk, _, _ in tr.changes] if tr else []
    secs = tr.busy_between(min(changes), max(changes)) if tr and changes else []
    if secs:
        print(
            f"worst second {100 * max(secs):.2f} % mean {100 * sum(secs) / len(secs):.2f} % "
            f"({len(secs)} s); whole run {100 * perf.extra.get('avr_cpu_load', 0):.2f} %; "
            f"{perf.extra['commands']}"
        )
        print("seconds:", " ".join(f"{100 * s:.2f}" for s in secs))
    # the harness's own lines: the longest stretch with interrupts off, UART overruns
    text = traces[0].read_text() if traces and traces[0].exists() else ""
    for line in text.splitlines():
        if line.startswith(("# interrupts off for", "# uart rx overruns")):
            print(line[2:])
    a = perf.extra.get("actuation_error_us", {})
    if a:
        print(f"actuation error p99 {a['p99']:.1f} us (mean {a['mean']:.1f}, max {a['max']:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

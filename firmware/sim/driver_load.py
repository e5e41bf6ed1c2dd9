# ruff: noqa: T201  (a command-line script: it prints its results)
"""AVR CPU load at 100 notes/s with the real driver, as ``bench/bench_link.py`` measures
it, with an optional per-address profile of the busy cycles.

    .venv/bin/python firmware/sim/driver_load.py [PROFILE_FILE] [--speed 0.15]

Plays 450 single notes at 100 notes/s on the 61-key DIY spec through ``fw-avr://`` and
prints the load of each whole simulated second between the first and last actuation
(the bench's row). With PROFILE_FILE the harness writes its ``--profile`` histogram
there: ``firmware/sim/profile.py PROFILE_FILE`` sums it per function.
"""

from __future__ import annotations

import argparse
import sys
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
    args = ap.parse_args(argv)
    if args.profile:
        orig = mcu_process.FirmwareProcess._argv  # type: ignore[attr-defined]

        def argv_with_profile(self, trace, clock_file):  # type: ignore[no-untyped-def]
            return [*orig(self, trace, clock_file), "--profile", str(Path(args.profile).resolve())]

        mcu_process.FirmwareProcess._argv = argv_with_profile  # type: ignore[attr-defined]
    sp = load_spec("piano-61-diy")
    plan = make_plan(sp, notes=450, gap_us=10_000, chord=1)
    dev = open_fw_avr(f"fw-avr://?speed={args.speed}", sp)
    perf = dev.play(plan)
    tr = dev.last_trace
    changes = [clk for clk, _, _ in tr.changes] if tr else []
    secs = tr.busy_between(min(changes), max(changes)) if tr and changes else []
    print(
        f"worst second {100 * max(secs):.2f} % mean {100 * sum(secs) / len(secs):.2f} % "
        f"({len(secs)} s); whole run {100 * perf.extra.get('avr_cpu_load', 0):.2f} %; "
        f"{perf.extra['commands']}"
    )
    print("seconds:", " ".join(f"{100 * s:.2f}" for s in secs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

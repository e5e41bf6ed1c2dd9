# ruff: noqa: T201  (a benchmark: it prints its results)
"""Direct AVR pins under software PWM: one plan through ``sim://`` and ``fw-avr://``.

    .venv/bin/python bench/bench_soft_pwm.py [--notes 450] [--elf OTHER.elf]

Plays ``notes`` single notes at 100 notes/s on ``piano-61-diy`` (drives 0.5..1 of full,
25 ms pulses, 35 % hold, released after 60 ms) through the simulated piano directly
(``sim://``, the plan's levels) and through the AVR firmware under simavr (the levels
measured from the pin trace), and prints one table: notes heard on each, notes heard on
both (same pitch, onsets within 5 ms), the velocity difference (the sensor adds 1 unit
s.d. to each), the actuation error and the AVR's CPU load. ``--elf`` runs another AVR
build (e.g. one without software PWM) for comparison. Needs ``make -C firmware avr sim``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from driver_helpers import make_plan  # noqa: E402

from robo_player.driver.ports import open_port  # noqa: E402
from robo_player.spec.loader import load_spec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notes", type=int, default=450)
    ap.add_argument("--elf", default="")
    args = ap.parse_args(argv)
    sp = load_spec("piano-61-diy")
    plan = make_plan(sp, notes=args.notes, gap_us=10_000, chord=1)
    url = "fw-avr://?speed=0.15" + (f"&elf={args.elf}" if args.elf else "")
    with open_port("sim://", sp) as dev:
        ref = dev.play(plan)
    with open_port(url, sp) as dev:
        fw = dev.play(plan)
    by_pitch: dict[int, list] = {}
    for h in fw.heard:
        by_pitch.setdefault(h.pitch, []).append(h)
    diffs = []
    for h in ref.heard:
        near = [x for x in by_pitch.get(h.pitch, []) if abs(x.t_us - h.t_us) < 5000]
        if near:
            diffs.append(abs(near[0].velocity - h.velocity))
    d = np.asarray(diffs or [0.0])
    err = fw.extra["actuation_error_us"]
    rows = [
        ("notes planned", f"{args.notes}", ""),
        ("heard on sim://", f"{len(ref.heard)}", ""),
        ("heard on fw-avr://", f"{len(fw.heard)}", "every note sim:// hears"),
        ("heard on both (onsets within 5 ms)", f"{len(diffs)}", ""),
        ("velocity difference p50 / p95 / max", f"{np.median(d):.2f} / {np.percentile(d, 95):.2f} / {d.max():.2f}",
         "within the sensor noise (1 s.d. each)"),
        ("actuation error p99 / max (us)", f"{err['p99']} / {err['max']}", "<= 20"),
        ("AVR CPU load (whole run)", f"{100 * fw.extra.get('avr_cpu_load', 0):.2f} %", "<= 10 %"),
    ]  # fmt: skip
    w = max(len(r[0]) for r in rows)
    print(f"{'row':<{w}}  {'value':<22}  target")
    for name, value, target in rows:
        print(f"{name:<{w}}  {value:<22}  {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The guitar's absolute time through audio, with and without its sync click.

For each spec and hidden truth seed: calibrate through ``sim://?sensor=audio`` (spread
as asked) with the shipped spec (its ``sync_click``) and with the same spec without it
(``replace(spec, sync_click=None)``: ``c`` read from the pickers' curves), and print
``c``'s error against the truth: the sync picker's full-drive latency as the
calibration has it (with the click: its calibrated curve at full drive; without:
``sync_offset_us``) less the truth's, and the worst string's full-drive latency error.

    nice .venv/bin/python bench/bench_guitar_clock.py --specs guitar-slider bass-4 --seeds 1 3 7
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from robo_player.calibrator.guitar import calibrate_guitar
from robo_player.calibrator.guitar_listening import sync_string
from robo_player.driver import open_port
from robo_player.spec.guitar_loader import load_guitar_spec


def c_error(name: str, seed: int, spread: str, click: bool) -> tuple[float, float, str, float]:
    """(c's error ms, worst string's full-drive error ms, clock_by, CPU s)."""
    spec = load_guitar_spec(name)
    if not click:
        spec = replace(spec, sync_click=None)
    t0 = time.process_time()
    with open_port(f"sim://?sensor=audio&spread={spread}", spec, truth_seed=seed) as dev:
        cal, rep = calibrate_guitar(dev, spec)
        truth = dev._truth  # the bench compares with the hidden truth; the calibrator never reads it
    s = sync_string(spec)
    mine = rep.sync_offset_us if rep.sync_offset_us is not None else cal.pickers[s].latency_at(1.0)
    worst = max(abs(kc.latency_at(1.0) - truth.strings[k].latency_full_us) for k, kc in cal.pickers.items())
    return (mine - truth.strings[s].latency_full_us) / 1000, worst / 1000, str(rep.clock_by), time.process_time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specs", nargs="+", default=["guitar-slider", "bass-4"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 3, 7])
    ap.add_argument("--spread", choices=("0", "1"), default="1")
    args = ap.parse_args(argv)
    print(f"spread={args.spread}: c's error (ms; the sync picker's full-drive latency against the truth's) "
          "and the worst string's full-drive latency error (ms)")
    print("| spec | seed | click: c error | click: worst string | no click: c error | no click: worst string |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.specs:
        for seed in args.seeds:
            a = c_error(name, seed, args.spread, True)
            b = c_error(name, seed, args.spread, False)
            print(f"| {name} | {seed} | {a[0]:+.3f} ({a[2]}) | {a[1]:.3f} | {b[0]:+.3f} ({b[2]}) | {b[1]:.3f} |",
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The band model's cost (issue 11, session 19): the plan-known pass's time over the
take's length (x rt) with the detector's constants as they are and with ``--off``'s
assignments (default: the complex second opinion off), alternated ``--reps`` times in
one process on the cached takes of ``detector_takes.py`` (a loaded machine's swings hit
both alike), and their ratio (the medians').

    nice .venv/bin/python bench/band_cost.py --cache /tmp/takes18 --random 2 [--midi F ...] [--reps 3]

Also the seconds inside the band model (``bands.band_residuals``, ``stepfit.step_onset``)
with the constants as they are. The truth is not read.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detector_takes import add_row_args, intended_onsets, set_constants, takes  # noqa: E402

from robo_player.hearing import bands  # noqa: E402
from robo_player.hearing import detector as det_mod  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_row_args(ap, cache=True)
    ap.add_argument("--off", nargs="*", default=["JOINT_COMPLEX=0", "JOINT_LONE=0"], metavar="NAME=VALUE",
                    help="the constants of the run to compare with (default: the complex model off)")
    ap.add_argument("--reps", type=int, default=3, help="runs of each, alternated")
    args = ap.parse_args()
    set_constants(args.set)
    on = {name: getattr(det_mod, name) for name, _, _ in (kv.partition("=") for kv in args.off)}
    off = {name: type(on[name])(ast.literal_eval(v)) for name, _, v in (kv.partition("=") for kv in args.off)}
    spent = [0.0]
    plain = {"br": bands.band_residuals, "so": det_mod.step_onset}

    def timer(f):  # noqa: ANN001, ANN202
        def timed(*a, **kw):  # noqa: ANN002, ANN003, ANN202
            t0 = time.perf_counter()
            try:
                return f(*a, **kw)
            finally:
                spent[0] += time.perf_counter() - t0
        return timed

    print(f"{'take':<40} {'x rt':>6} {'off':>6} {'ratio':>6} {'band s':>7}")
    for take in takes(args, args.cache):
        walls: dict[str, list[float]] = {"on": [], "off": []}
        fit_s = []
        for _ in range(args.reps):
            for mode, values in (("on", on), ("off", off)):
                for name, v in values.items():
                    setattr(det_mod, name, v)
                bands.band_residuals = timer(plain["br"]) if mode == "on" else plain["br"]
                det_mod.step_onset = timer(plain["so"]) if mode == "on" else plain["so"]
                spent[0] = 0.0
                det = take.detector()
                t0 = time.perf_counter()
                intended_onsets(det, take)
                walls[mode].append((time.perf_counter() - t0) / take.seconds)
                if mode == "on":
                    fit_s.append(spent[0])
        for name, v in on.items():
            setattr(det_mod, name, v)
        bands.band_residuals, det_mod.step_onset = plain["br"], plain["so"]
        x_on, x_off = float(np.median(walls["on"])), float(np.median(walls["off"]))
        print(f"{take.name:<40} {x_on:>6.2f} {x_off:>6.2f} {x_on / x_off:>6.2f} {float(np.median(fit_s)):>7.1f}",
              flush=True)


if __name__ == "__main__":
    main()

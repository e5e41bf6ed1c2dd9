"""Where the plan-known detector times a sounded note 20-100 ms off (issue 11's largest
F1 loss), on the detector bench's takes cached once (``detector_takes.py``).

    nice .venv/bin/python bench/timing_breakdown.py --cache /tmp/takes --random 1 2 3 [--midi F ...] [--list]

The first run renders each take (as ``bench_hearing.py --part detector`` does: truth
seed 1, calibrated plan, offset 0.1 s) and keeps its audio, sounded notes, plan and
blind onsets under ``--cache``; later runs reread them, so a change of the plan-known
search is measured in seconds per piece. Prints per take the intended F1 (the bench's
scoring), the median error, the fakes heard (the bench's fakes) and the counts of
timed-off / unheard / false onsets; ``--list`` lists every timed-off note with its
candidates (frame, coarse onset, refined onset, share) and the nearest other planned
strike; ``--set NAME=VALUE`` sets a detector constant for the run (a rule's switch or
threshold). The truth is read here only to score and list, never by the detector.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detector_takes import (  # noqa: E402
    OFF_US,
    OFFSET_S,
    Take,
    candidates,
    fakes_heard,
    intended_onsets,
    parse_list_args,
    score,
    takes,
)


def run(take: Take, seed: int, listing: bool) -> tuple[int, int, int, int]:
    det = take.detector()
    t0 = time.perf_counter()
    ons = intended_onsets(det, take)
    wall = time.perf_counter() - t0
    s = score(take, ons)
    fakes, fake_heard, _ = fakes_heard(det, take, seed)
    print(f"{take.name:<40} {len(take.truth):>5} {s.f1:>6.3f} {s.median_ms:>+7.2f} {len(s.timed_off):>4} "
          f"{len(s.unheard):>7} {s.false:>5} {sum(fake_heard):>3}/{len(fakes):<4} {wall / take.seconds:>5.2f}", flush=True)
    if listing:
        truth = take.struck
        for i in s.timed_off:
            t, p = truth[i]
            ta = t * 1e-6 + OFFSET_S
            near = [u for u, q in s.heard if q == p and abs(u - t) < OFF_US]
            others = sorted((abs(u - t), u - t, q) for u, q in truth if q != p and abs(u - t) < OFF_US)
            oth = " ".join(f"{q}@{dt / 1000:+.0f}" for _, dt, q in others[:5])
            print(f"  key {p} v{take.truth[i][2]:.0f} t={ta:.3f}: heard {', '.join(f'{(u - t) / 1000:+.1f}' for u in near)} "
                  f"ms; others {oth}")
            ip = min(take.intended, key=lambda x: abs(x[0] - ta) if x[1] == p else 1e9)
            for c in candidates(det, p, ip[0], take.intended):
                if c.mid_s is None:
                    continue
                print(f"      frame {(c.frame_s - ta) * 1e3:+6.1f} coarse {(c.mid_s - ta) * 1e3:+6.1f} "
                      f"refined {(c.refined_s - ta) * 1e3:+6.1f} rise {c.rise_db:5.1f} risen {c.risen:.2f} "
                      f"share {c.share:7.0f} | at frame: share {c.frame_share:7.0f} "
                      f"refined {(c.frame_refined_s - ta) * 1e3:+6.1f}")
    return len(s.timed_off), len(s.unheard), s.false, sum(fake_heard)


def main() -> None:
    args = parse_list_args(__doc__, "every timed-off note with its candidates")
    print(f"{'take':<40} {'notes':>5} {'F1':>6} {'med ms':>7} {'off':>4} {'unheard':>7} {'false':>5} {'fakes':>8} {'x rt':>5}")
    tot = np.zeros(4)
    for take in takes(args, args.cache):
        tot += run(take, args.seed, args.list)
    print(f"{'total':<40} {'':>5} {'':>6} {'':>7} {tot[0]:>4.0f} {tot[1]:>7.0f} {tot[2]:>5.0f} {tot[3]:>3.0f}")


if __name__ == "__main__":
    main()

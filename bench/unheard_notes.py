"""Why a planned, sounded note goes unheard by the plan-known detector, and why a fake
planned neighbour is heard (issue 11, session 16): the bench's detector takes
(``bench_hearing.py --part detector``, the same pieces, truth seed and plan) rendered
once and kept under ``--cache``, then ``Detector.detect_intended`` on each, and per
sounded note it misses: key, velocity, the loudest related key sounding, its candidates'
rise, the owner test's new share, the informed stage's rise / loose ratio / explained
fraction (4096 and, below BASS_MAX_PITCH, 8192 windows).

    A=/work/shared/data/asap; nice .venv/bin/python bench/unheard_notes.py --cache /tmp/unheard_takes \
        --random 1 2 3 [--midi $A/Chopin/Etudes_op_25/8/DeTurck02.mid] [--fakes]
"""

from __future__ import annotations

import argparse
import bisect
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detector_takes as dt  # noqa: E402

from robo_player.hearing import detector as det_mod  # noqa: E402
from robo_player.hearing.detector import Detector  # noqa: E402

KIN_SHARED = (-24, -19, -12, -7, -5, 5, 7, 12, 19, 24, 28, 31)


def trace(det: Detector, intended: list[tuple[float, int]], t: float, p: int) -> str:
    """What each stage of detect_intended says of planned (t, p)."""
    b, a = dt.BEFORE_S, dt.AFTER_S
    times = sorted(intended)
    ts = [x[0] for x in times]
    near_s = b + a + det_mod.OTHERS_S
    near = [q for u, q in times[bisect.bisect_left(ts, t - near_s):bisect.bisect_right(ts, t + near_s)] if q != p]
    sounding = [q for _, q in times[bisect.bisect_left(ts, t - det_mod.INFORMED_RING_S):bisect.bisect_right(ts, t + a)]]
    own = sorted({q for _, q in times[bisect.bisect_left(ts, t - b):bisect.bisect_right(ts, t + a)]} - {p})
    cands = []
    for c in dt.candidates(det, p, t, intended):
        head = f"{(c.frame_s - t) * 1e3:+.0f}ms {c.rise_db:.1f}dB risen {c.risen:.2f}"
        cands.append(f"{head} -" if c.mid_s is None else
                     f"{head} mid {(c.mid_s - t) * 1e3:+.0f} share {c.share:.0f}/{c.share_raw:.0f}")
    inf = det.informed_tests(p, t - b, t + a, sounding)
    s = f"cands[{'; '.join(cands) or 'none'}] inf rise {inf[0]:.0f} loose {inf[1]:.2f} expl {inf[2]:.2f}"
    if p < det_mod.BASS_MAX_PITCH:
        bi = det.bass.informed_tests(p, t - b, t + a, sounding)
        s += f" | bass rise {bi[0]:.0f} loose {bi[1]:.2f} expl {bi[2]:.2f}"
    got = det.find(p, t - b, t + a, others=near, min_risen=det_mod.TIGHT_MIN_FRACTION, own=own, planned=True)
    s += f" | find {'-' if got is None else f'{(got.t_s - t) * 1e3:+.1f}'}"
    if got is not None:
        s += f" veto-rise {det.informed_rise(p, t - b, t + a, sounding):.0f}"
    else:
        o = det.informed(p, t - b, t + a, sounding, own)
        s += f" informed {'-' if o is None else f'{(o.t_s - t) * 1e3:+.1f}'}"
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dt.add_row_args(ap, cache=True)
    ap.add_argument("--fakes", action="store_true", help="also list the fakes heard")
    ap.add_argument("--quiet", action="store_true", help="only the rows' figures")
    args = ap.parse_args()
    dt.set_constants(args.set)
    tot = {"unheard": 0, "off": 0, "false": 0, "fakes": 0, "nf": 0}
    for take in dt.takes(args, args.cache):
        det = take.detector()
        res = dt.score(take, dt.intended_onsets(det, take))
        fakes, fake_heard, _ = dt.fakes_heard(det, take, args.seed)
        print(f"{take.name:<40} F1 {res.f1:.3f} P {res.precision:.3f} R {res.recall:.3f} med {res.median_ms:+.2f} ms "
              f"notes {len(take.truth)} unheard {len(res.unheard)} timed-off {len(res.timed_off)} false {res.false} "
              f"fakes {sum(fake_heard)}/{len(fakes)}", flush=True)
        tot["unheard"] += len(res.unheard)
        tot["off"] += len(res.timed_off)
        tot["false"] += res.false
        tot["fakes"] += sum(fake_heard)
        tot["nf"] += len(fakes)
        if args.quiet:
            continue
        tr = take.truth
        for i in res.unheard:
            tu, p, v = float(tr[i][0]), int(tr[i][1]), float(tr[i][2])
            t = tu * 1e-6 + dt.OFFSET_S
            ring = [(q, vv, (u - tu) / 1e3) for u, q, vv in tr if -3e6 < u - tu < 30_000 and int(q) != p]
            rel = [(vv, int(q), dt) for q, vv, dt in ring if int(q) - p in KIN_SHARED + (-2, -1, 1, 2)]
            loud = max(rel) if rel else None
            chord = any(abs(u - tu) < 30_000 and int(q) != p for u, q, _ in tr)
            plan = min(take.intended, key=lambda x: (x[1] != p, abs(x[0] - t)))
            lr = f"{loud[1] - p:+d} v{loud[0]:.0f} at {loud[2]:+.0f}ms" if loud else "none"
            print(f"  {t:7.3f}s key {p:3d} v{v:5.1f} {'chord' if chord else 'alone'} loudest-kin {lr} "
                  f"plan {(plan[0] - t) * 1e3:+.0f}ms :: {trace(det, take.intended, plan[0], p)}", flush=True)
        if args.fakes:
            for (t, q, d), h in zip(fakes, fake_heard, strict=True):
                if h:
                    print(f"  FAKE {t:7.3f}s key {q} ({d:+d}) :: {trace(det, sorted(take.intended + [(t, q)]), t, q)}")
    print(f"total unheard {tot['unheard']} timed-off {tot['off']} false {tot['false']} fakes {tot['fakes']}/{tot['nf']}")


if __name__ == "__main__":
    main()

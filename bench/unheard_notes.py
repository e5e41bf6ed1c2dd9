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
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hearing import crop, fake_neighbours, random_piece  # noqa: E402

from robo_player.hearing import detector as det_mod  # noqa: E402
from robo_player.hearing.detector import Detector  # noqa: E402
from robo_player.matching import ONSET_WINDOW, Window, match_onsets  # noqa: E402

KIN_SHARED = (-24, -19, -12, -7, -5, 5, 7, 12, 19, 24, 28, 31)


def take(name: str, score_fn, cache: Path, seed: int) -> dict:  # noqa: ANN001
    """The bench's rendered take of one piece (cached): audio, sample rate, truth (t_us,
    pitch, velocity) and the intended (audio s, pitch)."""
    path = cache / f"{name.replace('/', '_').replace(' ', '_')}.npz"
    if path.exists():
        z = np.load(path)
        return {k: z[k] for k in z.files}
    from robo_player.calibrator import calibrate_session
    from robo_player.driver import open_port
    from robo_player.planner.piano import plan_piano
    from robo_player.planner.report import Fate
    from robo_player.spec import load_spec

    spec = load_spec("piano-88-grand")
    global _CAL
    if _CAL is None:
        with open_port("sim://?sensor=notes", spec, truth_seed=seed) as dev:
            _CAL, _ = calibrate_session(dev, spec)
    plan, report = plan_piano(score_fn(), spec, _CAL)
    with open_port("sim://?sensor=audio&offset_s=0.1&drift_ppm=0", spec, truth_seed=seed,
                   timing_sd_us=0, loudness_sd=0) as dev:
        perf = dev.play(plan)
    assert perf.audio is not None
    intended = [(o.target_t_us * 1e-6 + 0.1, o.pitch_out) for o in report.outcomes
                if o.fate is not Fate.DROPPED and o.pitch_out is not None]
    out = {
        "y": perf.audio.samples().astype(np.float32), "sr": np.array(perf.audio.sample_rate),
        "truth": np.array([(h.t_us, h.pitch, h.velocity) for h in perf.heard], dtype=float),
        "intended": np.array(intended, dtype=float),
    }
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


_CAL = None


def score(det: Detector, truth: np.ndarray, intended: list[tuple[float, int]], fakes) -> dict:  # noqa: ANN001
    w = ONSET_WINDOW
    t0 = time.perf_counter()
    ons = det.detect_intended(intended, w.before_us * 1e-6, w.after_us * 1e-6, det._blind)
    wall = time.perf_counter() - t0
    tr = [(int(t), int(p)) for t, p, _ in truth]
    heard = [(int((o.t_s - 0.1) * 1e6), o.pitch) for o in ons]
    pairs = match_onsets(tr, heard, Window(20_000, 20_000))
    tp = len(pairs)
    p = tp / max(1, len(heard))
    r = tp / max(1, len(tr))
    err = np.array([heard[j][0] - tr[i][0] for i, j in pairs.items()], dtype=float)
    res = {"f1": 2 * p * r / max(1e-9, p + r), "p": p, "r": r, "med": float(np.median(err)) / 1000,
           "pairs": pairs, "heard": heard, "wall": wall, "n": len(tr)}
    if fakes is not None:
        wf = det.detect_intended(sorted(intended + [(t, q) for t, q, _ in fakes]), w.before_us * 1e-6,
                                 w.after_us * 1e-6, det._blind)
        res["fakes"] = [any(o.pitch == q and -w.before_us * 1e-6 <= o.t_s - t <= w.after_us * 1e-6 for o in wf)
                        for t, q, _ in fakes]
    return res


def trace(det: Detector, intended: list[tuple[float, int]], t: float, p: int) -> str:
    """What each stage of detect_intended says of planned (t, p)."""
    w = ONSET_WINDOW
    b, a = w.before_us * 1e-6, w.after_us * 1e-6
    times = sorted(intended)
    ts = [x[0] for x in times]
    near_s = b + a + det_mod.OTHERS_S
    near = [q for u, q in times[bisect.bisect_left(ts, t - near_s):bisect.bisect_right(ts, t + near_s)] if q != p]
    sounding = [q for _, q in times[bisect.bisect_left(ts, t - det_mod.INFORMED_RING_S):bisect.bisect_right(ts, t + a)]]
    own = sorted({q for _, q in times[bisect.bisect_left(ts, t - b):bisect.bisect_right(ts, t + a)]} - {p})
    r = det.rise_db(p)
    hop_s = det.hop / det.sr
    f0, f1 = max(0, int((t - b) / hop_s)), min(len(r), int(np.ceil((t + a) / hop_s)) + 1)
    seg = r[f0:f1]
    ok = (seg >= det_mod.PLANNED_RISE_DB) & (seg >= np.roll(seg, 1)) & (seg >= np.roll(seg, -1))
    cols = det.own_partials(p, own) if own else None
    cands = []
    for j in np.nonzero(ok)[0]:
        i = f0 + int(j)
        frac = det.risen_fraction(p, i)
        if frac < det_mod.TIGHT_MIN_FRACTION:
            cands.append(f"{(i * hop_s - t) * 1e3:+.0f}ms {r[i]:.1f}dB risen {frac:.2f} -")
            continue
        tm = det._planned_midpoint(p, i, cols)
        sh = det.new_share(p, tm, near, unplanned=True)
        sh_raw = det.new_share(p, tm, near)
        cands.append(f"{(i * hop_s - t) * 1e3:+.0f}ms {r[i]:.1f}dB risen {frac:.2f} mid {(tm - t) * 1e3:+.0f} "
                     f"share {sh:.0f}/{sh_raw:.0f}")
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
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--random", type=int, nargs="*", default=[])
    ap.add_argument("--pieces", nargs="*", default=[])
    ap.add_argument("--midi", nargs="*", default=[])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--fakes", action="store_true", help="also list the fakes heard")
    ap.add_argument("--quiet", action="store_true", help="only the rows' figures")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="detector constants to try (e.g. INFORMED_LOOSE_X=2)")
    args = ap.parse_args()
    for kv in args.set:
        k, v = kv.split("=", 1)
        if not hasattr(det_mod, k):
            raise SystemExit(f"--set: detector has no constant {k}")
        setattr(det_mod, k, type(getattr(det_mod, k))(v))
    from robo_player.midi import bundled_piece, read_midi

    rows = [(f"random{s}", lambda s=s: random_piece(200 + s, 30.0)) for s in args.random]
    rows += [(n, lambda n=n: read_midi(bundled_piece(n))) for n in args.pieces]
    rows += [("/".join(Path(m).parts[-3:]).removesuffix(".mid"), lambda m=m: crop(read_midi(m), args.seconds))
             for m in args.midi]
    tot = {"unheard": 0, "off": 0, "false": 0, "fakes": 0, "nf": 0}
    for name, fn in rows:
        tk = take(name, fn, args.cache, args.seed)
        det = Detector(tk["y"].astype(np.float64), int(tk["sr"]))
        det._blind = det.detect()  # type: ignore[attr-defined]
        intended = [(float(t), int(p)) for t, p in tk["intended"]]
        fakes = fake_neighbours(intended, [(int(t), int(p)) for t, p, _ in tk["truth"]], 0.1, args.seed)
        res = score(det, tk["truth"], intended, fakes)
        nf = sum(res["fakes"])
        unheard, off = [], 0
        for i, (tu, p, v) in enumerate(tk["truth"]):
            if i in res["pairs"]:
                continue
            if any(q == p and 20_000 <= abs(u - tu) < 100_000 for u, q in res["heard"]):
                off += 1
                continue
            unheard.append((tu, int(p), v))
        used = set(res["pairs"].values())
        false = sum(1 for j, (u, q) in enumerate(res["heard"]) if j not in used
                    and not any(int(p) == q and abs(tu - u) < 100_000 for tu, p, _ in tk["truth"]))
        print(f"{name:<40} F1 {res['f1']:.3f} P {res['p']:.3f} R {res['r']:.3f} med {res['med']:+.2f} ms "
              f"notes {res['n']} unheard {len(unheard)} timed-off {off} false {false} fakes {nf}/{len(fakes)} "
              f"intended pass {res['wall']:.1f} s", flush=True)
        tot["unheard"] += len(unheard)
        tot["off"] += off
        tot["false"] += false
        tot["fakes"] += nf
        tot["nf"] += len(fakes)
        if args.quiet:
            continue
        tr = tk["truth"]
        for tu, p, v in unheard:
            t = tu * 1e-6 + 0.1
            ring = [(q, vv, (u - tu) / 1e3) for u, q, vv in tr if -3e6 < u - tu < 30_000 and int(q) != p]
            rel = [(vv, int(q), dt) for q, vv, dt in ring if int(q) - p in KIN_SHARED + (-2, -1, 1, 2)]
            loud = max(rel) if rel else None
            chord = any(abs(u - tu) < 30_000 and int(q) != p for u, q, _ in tr)
            plan = min(intended, key=lambda x: (x[1] != p, abs(x[0] - t)))
            lr = f"{loud[1] - p:+d} v{loud[0]:.0f} at {loud[2]:+.0f}ms" if loud else "none"
            print(f"  {t:7.3f}s key {p:3d} v{v:5.1f} {'chord' if chord else 'alone'} loudest-kin {lr} "
                  f"plan {(plan[0] - t) * 1e3:+.0f}ms :: {trace(det, intended, plan[0], p)}", flush=True)
        if args.fakes:
            for (t, q, d), h in zip(fakes, res["fakes"], strict=True):
                if h:
                    print(f"  FAKE {t:7.3f}s key {q} ({d:+d}) :: {trace(det, sorted(intended + [(t, q)]), t, q)}")
    print(f"total unheard {tot['unheard']} timed-off {tot['off']} false {tot['false']} fakes {tot['fakes']}/{tot['nf']}")


if __name__ == "__main__":
    main()

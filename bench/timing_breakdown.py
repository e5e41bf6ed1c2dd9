"""Where the plan-known detector times a sounded note 20-100 ms off (issue 11's largest
F1 loss), on the takes of ``bench_hearing.py --part detector`` cached once.

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

import argparse
import ast
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hearing import crop, fake_neighbours, random_piece  # noqa: E402

from robo_player.hearing import detector as det_mod  # noqa: E402
from robo_player.hearing.detector import Detector, Onset  # noqa: E402
from robo_player.matching import ONSET_WINDOW, Window, match_onsets  # noqa: E402
from robo_player.midi import bundled_piece, read_midi  # noqa: E402

OFFSET_S = 0.1


def build(cache: Path, name: str, score, spec, cal, seed: int) -> Path:  # noqa: ANN001
    from robo_player.driver import open_port
    from robo_player.planner.piano import plan_piano
    from robo_player.planner.report import Fate

    path = cache / (name.replace("/", "_").replace(" ", "_") + ".npz")
    if path.exists():
        return path
    plan, report = plan_piano(score, spec, cal)
    with open_port("sim://?sensor=audio&offset_s=0.1&drift_ppm=0", spec, truth_seed=seed,
                   timing_sd_us=0, loudness_sd=0) as dev:
        perf = dev.play(plan)
    assert perf.audio is not None
    y = perf.audio.samples()
    truth = np.array([(h.t_us, h.pitch, h.velocity) for h in perf.heard], dtype=float).reshape(-1, 3)
    intended = np.array([(o.target_t_us * 1e-6 + OFFSET_S, o.pitch_out) for o in report.outcomes
                         if o.fate is not Fate.DROPPED and o.pitch_out is not None], dtype=float).reshape(-1, 2)
    det = Detector(y, perf.audio.sample_rate)
    blind = det.detect()
    b = np.array([(o.t_s, o.pitch, o.velocity, o.rise_db, o.risen, o.sure) for o in blind], dtype=float).reshape(-1, 6)
    np.savez(path, y=y, sr=perf.audio.sample_rate, truth=truth, intended=intended, blind=b)
    return path


def load(path: Path) -> dict:
    z = np.load(path)
    return {k: z[k] for k in z.files}


def score(truth: list[tuple[int, int]], ons: list[Onset]) -> tuple[float, float, dict[int, int], list[tuple[int, int]]]:
    heard = [(int((o.t_s - OFFSET_S) * 1e6), o.pitch) for o in ons]
    pairs = match_onsets(truth, heard, Window(20_000, 20_000))
    tp = len(pairs)
    p, r = tp / max(1, len(heard)), tp / max(1, len(truth))
    f1 = 2 * p * r / max(1e-9, p + r)
    err = np.array([heard[j][0] - truth[i][0] for i, j in pairs.items()], dtype=float)
    return f1, float(np.median(err)) / 1000 if len(err) else float("nan"), pairs, heard


def classes(truth: list[tuple[int, int]], heard: list[tuple[int, int]], pairs: dict[int, int]) -> tuple[list[int], int, int]:
    off, unheard = [], 0
    for i, (t, p) in enumerate(truth):
        if i in pairs:
            continue
        if any(q == p and 20_000 <= abs(u - t) < 100_000 for u, q in heard):
            off.append(i)
        else:
            unheard += 1
    used = set(pairs.values())
    false = sum(1 for j, (u, q) in enumerate(heard) if j not in used
                and not any(p == q and abs(t - u) < 100_000 for t, p in truth))
    return off, unheard, false


def run(path: Path, listing: bool) -> tuple[str, float, float, int, int, int, int, int, float, float]:
    d = load(path)
    det = Detector(d["y"], int(d["sr"]))
    blind = [Onset(float(t), int(p), float(v), float(r), float(f), bool(s)) for t, p, v, r, f, s in d["blind"]]
    truth = [(int(t), int(p)) for t, p, _ in d["truth"]]
    intended = [(float(t), int(p)) for t, p in d["intended"]]
    w = ONSET_WINDOW
    b, a = w.before_us * 1e-6, w.after_us * 1e-6
    t0 = time.perf_counter()
    ons = det.detect_intended(intended, b, a, blind)
    wall = time.perf_counter() - t0
    f1, med, pairs, heard = score(truth, ons)
    off, unheard, false = classes(truth, heard, pairs)
    fakes = fake_neighbours(intended, truth, OFFSET_S, 1)
    wf = det.detect_intended(sorted(intended + [(t, q) for t, q, _ in fakes]), b, a, blind)
    n_fake = sum(any(o.pitch == q and -b <= o.t_s - t <= a for o in wf) for t, q, _ in fakes)
    if listing:
        for i in off:
            t, p = truth[i]
            ta = t * 1e-6 + OFFSET_S
            near = [u for u, q in heard if q == p and abs(u - t) < 100_000]
            v = d["truth"][i][2]
            others = sorted((abs(u - t), u - t, q) for u, q in truth if q != p and abs(u - t) < 100_000)
            oth = " ".join(f"{q}@{dt / 1000:+.0f}" for _, dt, q in others[:5])
            print(f"  key {p} v{v:.0f} t={ta:.3f}: heard {', '.join(f'{(u - t) / 1000:+.1f}' for u in near)} ms; others {oth}")
            ip = min(intended, key=lambda x: abs(x[0] - ta) if x[1] == p else 1e9)
            for c in candidates(det, p, ip[0], b, a, intended):
                print(f"      frame {(c[0] - ta) * 1e3:+6.1f} coarse {(c[1] - ta) * 1e3:+6.1f} "
                      f"refined {(c[2] - ta) * 1e3:+6.1f} rise {c[3]:5.1f} risen {c[4]:.2f} share {c[5]:7.0f}"
                      f" | at frame: share {c[6]:7.0f} refined {(c[7] - ta) * 1e3:+6.1f}")
    seconds = len(d["y"]) / float(d["sr"])
    return (path.stem, f1, med, len(off), unheard, false, n_fake, len(fakes), wall / seconds, len(truth))


def candidates(det: Detector, p: int, t: float, b: float, a: float, intended: list[tuple[float, int]]) -> list:
    near_s = b + a + det_mod.OTHERS_S
    others = [q for u, q in intended if abs(u - t) <= near_s and q != p]
    own = sorted({q for u, q in intended if t - b <= u <= t + a} - {p})
    cols = det.own_partials(p, own) if own else None
    r = det.rise_db(p)
    hop_s = det.hop / det.sr
    f0, f1 = max(0, int((t - b) / hop_s)), min(len(r), int(np.ceil((t + a) / hop_s)) + 1)
    seg = r[f0:f1]
    ok = (seg >= det_mod.PLANNED_RISE_DB) & (seg >= np.roll(seg, 1)) & (seg >= np.roll(seg, -1))
    out = []
    for j in np.nonzero(ok)[0]:
        i = f0 + int(j)
        frac = det.risen_fraction(p, i)
        if frac < det_mod.TIGHT_MIN_FRACTION:
            continue
        t_mid = det._planned_midpoint(p, i, cols)
        share = det.new_share(p, t_mid, others, unplanned=True)
        o = det._refine(p, t_mid, float(r[i]))
        fs = det.new_share(p, i * hop_s, others, unplanned=True)
        of = det._refine(p, i * hop_s, float(r[i]))
        out.append((i * hop_s, t_mid, o.t_s, float(r[i]), frac, share, fs, of.t_s))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--random", type=int, nargs="*", default=[])
    ap.add_argument("--pieces", nargs="*", default=[])
    ap.add_argument("--midi", nargs="*", default=[])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="detector constants")
    args = ap.parse_args()
    for kv in args.set:
        k, v = kv.split("=")
        setattr(det_mod, k, type(getattr(det_mod, k))(ast.literal_eval(v)))
    args.cache.mkdir(parents=True, exist_ok=True)
    pieces = [(f"random {s}", lambda s=s: random_piece(200 + s, 30.0)) for s in args.random]
    pieces += [(n, lambda n=n: read_midi(bundled_piece(n))) for n in args.pieces]
    pieces += [("/".join(Path(m).parts[-3:]).removesuffix(".mid"), lambda m=m: crop(read_midi(m), args.seconds))
               for m in args.midi]
    spec = cal = None
    paths = []
    for name, make in pieces:
        path = args.cache / (name.replace("/", "_").replace(" ", "_") + ".npz")
        if not path.exists():
            if cal is None:
                from robo_player.calibrator import calibrate_session
                from robo_player.driver import open_port
                from robo_player.spec import load_spec
                spec = load_spec("piano-88-grand")
                with open_port("sim://?sensor=notes", spec, truth_seed=args.seed) as dev:
                    cal, _ = calibrate_session(dev, spec)
            build(args.cache, name, make(), spec, cal, args.seed)
        paths.append(path)
    print(f"{'take':<40} {'notes':>5} {'F1':>6} {'med ms':>7} {'off':>4} {'unheard':>7} {'false':>5} {'fakes':>8} {'x rt':>5}")
    tot = np.zeros(4)
    for path in paths:
        name, f1, med, off, unh, fal, nf, nfk, xrt, n = run(path, args.list)
        tot += (off, unh, fal, nf)
        print(f"{name:<40} {n:>5} {f1:>6.3f} {med:>+7.2f} {off:>4} {unh:>7} {fal:>5} {nf:>3}/{nfk:<4} {xrt:>5.2f}", flush=True)
    print(f"{'total':<40} {'':>5} {'':>6} {'':>7} {tot[0]:>4.0f} {tot[1]:>7.0f} {tot[2]:>5.0f} {tot[3]:>3.0f}")


if __name__ == "__main__":
    main()

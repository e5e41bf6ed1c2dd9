"""Train the plan-known search's learned choice (robo_player/hearing/ranker.py).

Renders random pieces that no bench row plays (``--seeds``: the bench's ``--random``
numbering, default 100-130; truth pianos 2-5 in turn, never the bench's 1), each with
the bench's fake planned neighbours (planned notes nobody struck: every hypothesis of
theirs is false), and collects every hypothesis of every planned note
(:meth:`Detector.planned_hypotheses`, with the plan's other keys as detect_intended
passes them), labelled true where a sounded onset of its key lies within 20 ms. A
linear score over the standardised features, fitted listwise (numpy, L2: per note a
softmax over its hypotheses and "not heard"); the threshold maximises the notes' F1 on
the training rows. Writes robo_player/data/detector_ranker.json.

    nice .venv/bin/python bench/train_detector_ranker.py --cache /tmp/ranker_rows [--seeds 100 150 200 211] [--jobs 2]

Minutes on 2 CPU cores (rendering and hypotheses ~10 s a piece; the fit a second).
"""

from __future__ import annotations

import argparse
import bisect
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hearing import crop, fake_neighbours, random_piece  # noqa: E402

from robo_player.calibrator import calibrate_session  # noqa: E402
from robo_player.driver import open_port  # noqa: E402
from robo_player.hearing import detector as det_mod  # noqa: E402
from robo_player.hearing import ranker  # noqa: E402
from robo_player.hearing.detector import Detector  # noqa: E402
from robo_player.matching import ONSET_WINDOW  # noqa: E402
from robo_player.midi import bundled_piece, read_midi  # noqa: E402
from robo_player.planner.piano import plan_piano  # noqa: E402
from robo_player.planner.report import Fate  # noqa: E402
from robo_player.score import PedalEvent, Score  # noqa: E402
from robo_player.spec import load_spec  # noqa: E402

TRUTH_SEEDS = (2, 3, 4, 5)  # the bench's rows all play truth seed 1
MATCH_S = 0.020  # the bench's F1 window
PLAIN_LAST = 130  # training random pieces up to this one are played without the pedal


def hypotheses_of_take(det: Detector, intended: list[tuple[float, int]], struck: dict[int, list[float]],
                       before_s: float, after_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X (H, F), label (H,), note id (H,), sounded (N,): whether each planned note has a
    sounded onset of its key within its window) over every planned note of one take,
    its rivals as :meth:`Detector.detect_intended` passes them."""
    order = sorted(range(len(intended)), key=lambda k: intended[k][0])
    times = [intended[k][0] for k in order]
    near_s = before_s + after_s + det_mod.OTHERS_S
    xs, ys, gs, sounded = [], [], [], []
    for n, k in enumerate(order):
        t, p = intended[k]
        lo, hi = bisect.bisect_left(times, t - near_s), bisect.bisect_right(times, t + near_s)
        others = [intended[order[m]][1] for m in range(lo, hi) if intended[order[m]][1] != p]
        lo, hi = bisect.bisect_left(times, t - before_s), bisect.bisect_right(times, t + after_s)
        own = sorted({intended[order[m]][1] for m in range(lo, hi)} - {p})
        mine = struck.get(p, [])
        sounded.append(any(-before_s <= u - t <= after_s for u in mine))
        for h in det.planned_hypotheses(p, t - before_s, t + after_s, others, det_mod.TIGHT_MIN_FRACTION, own):
            xs.append(h.features)
            ys.append(any(abs(u - h.onset.t_s) <= MATCH_S for u in mine))
            gs.append(n)
    f = len(ranker.FEATURES)
    return (np.array(xs).reshape(-1, f), np.array(ys, dtype=bool), np.array(gs, dtype=int),
            np.array(sounded, dtype=bool))


def with_pedal(score: Score, seed: int) -> Score:
    """``score`` with the sustain pedal down over spans of 0.5-2.5 s, lifted for 60 ms
    between (most of the held-out music is pedalled: notes ring on under new ones), and
    the notes held 1.5-3 x longer (legato)."""
    rng = np.random.default_rng(seed + 7919)
    end = max(n.end_us for n in score.notes)
    pedal, t = [], int(rng.uniform(0.0, 0.5) * 1e6)
    while t < end:
        pedal.append(PedalEvent(t, 127))
        t += int(rng.uniform(0.5, 2.5) * 1e6)
        pedal.append(PedalEvent(t, 0))
        t += 60_000
    notes = [replace(n, duration_us=int(n.duration_us * rng.uniform(1.5, 3.0))) for n in score.notes]
    return Score(notes=notes, pedal=pedal, ticks_per_beat=score.ticks_per_beat, source=score.source)


def piece(seed: int) -> Score:
    """Training piece ``seed``: a random piece (random_piece(200 + seed), 30 s), pedalled
    and legato above PLAIN_LAST; 200-211, 30 s of a bundled piece that no bench row
    plays (maple_leaf_rag, mazurka06-2; bwv66.6 is held out), every second one pedalled."""
    if seed < 200:
        score = random_piece(200 + seed, 30.0)
        return with_pedal(score, seed) if seed > PLAIN_LAST else score
    k = seed - 200  # 200-207: the rag from 0, 30, 60, 90 s; 208-211: the mazurka from 0, 30 s
    if not 0 <= k < 12:
        raise ValueError(f"training piece {seed}: the bundled chunks are 200-211")
    name, c = ("maple_leaf_rag", k) if k < 8 else ("mazurka06-2", k - 8)
    score = crop(read_midi(bundled_piece(name)), 30.0, 30.0 * (c // 2))
    return with_pedal(score, seed) if c % 2 else score


_CAL: dict[int, object] = {}


def rows_of_seed(seed: int, cache: Path) -> Path:
    """Render training piece ``seed`` (:func:`piece`) on truth piano TRUTH_SEEDS[seed %
    4] with its calibrated plan, and save its hypotheses."""
    out = cache / f"random{seed}.npz"
    if out.exists():
        return out
    spec = load_spec("piano-88-grand")
    truth_seed = TRUTH_SEEDS[seed % len(TRUTH_SEEDS)]
    if truth_seed not in _CAL:
        with open_port("sim://?sensor=notes", spec, truth_seed=truth_seed) as dev:
            _CAL[truth_seed], _ = calibrate_session(dev, spec)
    plan, report = plan_piano(piece(seed), spec, _CAL[truth_seed])  # type: ignore[arg-type]
    with open_port("sim://?sensor=audio&offset_s=0.1&drift_ppm=0", spec, truth_seed=truth_seed,
                   timing_sd_us=0, loudness_sd=0) as dev:
        perf = dev.play(plan)
    assert perf.audio is not None
    truth = [(h.t_us, h.pitch) for h in perf.heard]
    struck: dict[int, list[float]] = {}
    for t_us, p in truth:
        struck.setdefault(p, []).append(t_us * 1e-6 + 0.1)
    intended = [(o.target_t_us * 1e-6 + 0.1, o.pitch_out) for o in report.outcomes
                if o.fate is not Fate.DROPPED and o.pitch_out is not None]
    fakes = [(t, q) for t, q, _ in fake_neighbours(intended, truth, 0.1, seed)]
    det = Detector(perf.audio.samples(), perf.audio.sample_rate)
    w = ONSET_WINDOW
    x, y, g, s = hypotheses_of_take(det, sorted(intended + fakes), struck, w.before_us * 1e-6, w.after_us * 1e-6)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(out, x=x, y=y, g=g, s=s)
    return out


def fit(sets: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], l2: float = 1e-3,
        iters: int = 4000, lr: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, scale, weights, bias) of a linear score over the standardised features,
    fitted listwise: per planned note a softmax over its hypotheses and "not heard"
    (score -bias); the loss is -log of the chance given to its true hypotheses (any of
    them), or to "not heard" where it has none (a fake, a note timed wrong by every one).
    A hypothesis' chance against "not heard" is then sigmoid(score + bias)."""
    x = np.concatenate([s[0] for s in sets])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (x - mean) / scale
    y = np.concatenate([s[1] for s in sets]).astype(float)
    gid = np.concatenate([g + k * 100_000 for k, (_, _, g, _) in enumerate(sets)])
    _, gid = np.unique(gid, return_inverse=True)
    n_g = int(gid.max()) + 1
    has = np.bincount(gid, weights=y, minlength=n_g) > 0
    w, none = np.zeros(z.shape[1]), 0.0
    m_w, v_w, m_n, v_n = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0  # Adam
    for step in range(1, iters + 1):
        sc = z @ w
        top = np.maximum(np.full(n_g, none), np.maximum.reduceat(sc[np.argsort(gid, kind="stable")],
                                                              np.searchsorted(np.sort(gid), np.arange(n_g))))
        e = np.exp(sc - top[gid])
        e_none = np.exp(none - top)
        tot = np.bincount(gid, weights=e, minlength=n_g) + e_none
        pos = np.bincount(gid, weights=e * y, minlength=n_g)
        # d loss / d score: P(h) - P(h | true) where the note has a true hypothesis
        p_h = e / tot[gid]
        q_h = np.where(has[gid], e * y / np.maximum(pos[gid], 1e-300), 0.0)
        g_s = (p_h - q_h) / n_g
        g_none = float(np.sum(e_none / tot - (~has)) / n_g)
        g_w = z.T @ g_s + l2 * w
        m_w, v_w = 0.9 * m_w + 0.1 * g_w, 0.999 * v_w + 0.001 * g_w**2
        m_n, v_n = 0.9 * m_n + 0.1 * g_none, 0.999 * v_n + 0.001 * g_none**2
        c1, c2 = 1 - 0.9**step, 1 - 0.999**step
        w -= lr * 0.01 * (m_w / c1) / (np.sqrt(v_w / c2) + 1e-8)
        none -= lr * 0.01 * (m_n / c1) / (math.sqrt(v_n / c2) + 1e-8)
    return mean, scale, w, -none


def notes_f1(model: ranker.Ranker, sets: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
             threshold: float) -> tuple[float, int, int, int]:
    """(F1, tp, fp, fn) of the planned notes when each takes its most likely hypothesis
    where its chance >= ``threshold`` (the search alone: no informed stage, no strays)."""
    tp = fp = fn = 0
    for x, y, g, s in sets:
        p = model.chance(x) if len(x) else np.zeros(0)
        for n in range(len(s)):
            idx = np.nonzero(g == n)[0]
            if len(idx) and p[idx].max() >= threshold:
                k = idx[int(np.argmax(p[idx]))]
                tp += bool(y[k])
                fp += not y[k]
                fn += bool(s[n]) and not y[k]
            else:
                fn += bool(s[n])
    return 2 * tp / max(1, 2 * tp + fp + fn), tp, fp, fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[100, 150, 200, 211], metavar="FIRST LAST",
                    help="training pieces FIRST..LAST, more pairs for more ranges (piece(): random pieces "
                         "below 200, chunks of the bundled maple_leaf_rag and mazurka06-2 from 200)")
    ap.add_argument("--cache", type=Path, required=True, help="where each piece's hypotheses are kept")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ranker.WEIGHTS_PATH)
    args = ap.parse_args()
    if len(args.seeds) % 2:
        ap.error("--seeds: pairs FIRST LAST")
    seeds = [s for a, b in zip(args.seeds[::2], args.seeds[1::2], strict=True) for s in range(a, b + 1)]
    if any(1 <= s <= 6 for s in seeds):
        ap.error("--seeds: 1-6 are the bench's held-out rows; train on others (e.g. 100 130)")
    with ProcessPoolExecutor(args.jobs) as ex:
        paths = list(ex.map(rows_of_seed, seeds, [args.cache] * len(seeds)))
    sets = []
    for path in paths:
        d = np.load(path)
        sets.append((d["x"], d["y"], d["g"], d["s"]))
    x = np.concatenate([s[0] for s in sets])
    y = np.concatenate([s[1] for s in sets])
    mean, scale, w, b = fit(sets)
    best = (-1.0, 0.5)
    for thr in np.arange(0.05, 0.96, 0.05):
        f1 = notes_f1(ranker.Ranker(mean, scale, w, b, float(thr)), sets, float(thr))[0]
        best = max(best, (f1, float(thr)))
    model = ranker.Ranker(mean, scale, w, b, best[1])
    f1, tp, fp, fn = notes_f1(model, sets, best[1])
    print(f"{len(seeds)} pieces, {len(x)} hypotheses ({int(y.sum())} true); threshold {best[1]:.2f}: "
          f"the search's notes F1 {f1:.4f} (tp {tp}, fp {fp}, fn {fn})")
    for name, wi in sorted(zip(ranker.FEATURES, w, strict=True), key=lambda t: -abs(t[1])):
        print(f"  {name:<16} {wi:+.3f}")
    args.out.write_text(model.to_json())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

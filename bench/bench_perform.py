"""Expressive rendering of the bundled pieces: rules (render.py) against a model (perform_model.py).

    .venv/bin/python bench/bench_perform.py [--model models/performance.pt] [--seed 0]
                                            [--temperature 1.0] [--max-shift-ms 30]

For each piece and renderer: velocity std and range over the notes, the std of the
onset deviations from the score (ms), and the wall time of the rendering. Then it says
plainly whether the model adds dynamics: it does when its velocity std is at least
2 units (a quarter of one of its 32 bins' width is 1; the rules give ~6-10).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from robo_player.midi import bundled_pieces, read_midi
from robo_player.model.perform_model import ModelRenderOptions, perform_from_file
from robo_player.model.render import RenderRules, perform
from robo_player.score import Score

ADDS_DYNAMICS_STD = 2.0  # velocity units


def _stats(plain: Score, out: Score, wall_s: float) -> dict[str, float]:
    vel = np.array([n.velocity for n in out.notes], float)
    dev = np.array([o.onset_us - n.onset_us for o, n in zip(out.notes, plain.notes, strict=True)]) / 1000.0
    return {"vel_std": float(vel.std()), "vel_lo": float(vel.min()), "vel_hi": float(vel.max()),
            "onset_dev_std_ms": float(dev.std()), "wall_s": wall_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/performance.pt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--max-shift-ms", type=int, default=30)
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        print("bench_perform: needs the `model` extra (torch)")
        return 2
    opts = ModelRenderOptions(temperature=args.temperature, max_shift_ms=args.max_shift_ms, seed=args.seed)
    print(f"model {args.model}, temperature {args.temperature}, max shift {args.max_shift_ms} ms, "
          f"seed {args.seed}")
    print(f"{'piece':16s} {'notes':>5s} {'renderer':8s} {'vel std':>7s} {'vel range':>9s} "
          f"{'onset dev std':>13s} {'moved':>6s} {'wall':>7s}")
    model_stds: list[float] = []
    for path in bundled_pieces():
        plain = read_midi(path)
        in_vel = np.array([n.velocity for n in plain.notes], float)
        rows = []
        t0 = time.perf_counter()
        rules = perform(plain, RenderRules(seed=args.seed))
        rows.append(("rules", _stats(plain, rules, time.perf_counter() - t0), ""))
        t0 = time.perf_counter()
        r = perform_from_file(plain, args.model, opts)
        st = _stats(plain, r.score, time.perf_counter() - t0)
        moved = sum(1 for d in r.shift_steps if d) / max(1, len(r.shift_steps))
        rows.append(("model", st, f"{moved:.0%}"))
        model_stds.append(st["vel_std"])
        print(f"{path.stem:16s} {len(plain.notes):5d} {'score':8s} {in_vel.std():7.2f} "
              f"{in_vel.min():4.0f}..{in_vel.max():<4.0f} {0.0:13.1f} {'':>6s} {'':>7s}")
        for name, s, mv in rows:
            print(f"{'':16s} {'':5s} {name:8s} {s['vel_std']:7.2f} {s['vel_lo']:4.0f}..{s['vel_hi']:<4.0f} "
                  f"{s['onset_dev_std_ms']:10.1f} ms {mv:>6s} {s['wall_s']:6.2f}s")
    adds = [s >= ADDS_DYNAMICS_STD for s in model_stds]
    if all(adds):
        verdict = "the model-based render ADDS dynamics on every piece"
    elif any(adds):
        verdict = f"the model-based render adds dynamics on {sum(adds)} of {len(adds)} pieces"
    else:
        verdict = ("the model-based render adds NO dynamics with this model (velocity std < "
                   f"{ADDS_DYNAMICS_STD:g} on every piece): it was trained on scores with almost no "
                   "dynamics markings, so it plays near one velocity; use the rules (the default)")
    print(f"\nverdict: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

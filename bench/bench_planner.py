"""Planner speed: plan_piano on a random 5000-note score against mido parsing the same
notes from a MIDI file, printed as µs per note and as a ratio (target: <= 1).

    .venv/bin/python bench/bench_planner.py [--notes 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import mido

from robo_player.midi import write_midi
from robo_player.planner import plan_piano
from robo_player.score import Note, PedalEvent, Score
from robo_player.spec import load_spec


def random_score(n: int, seed: int = 1) -> Score:
    rng = random.Random(seed)
    notes, t = [], 0
    for _ in range(n):
        t += rng.choice([0, 0, 50_000, 100_000, 200_000])
        notes.append(
            Note(rng.randint(15, 115), t, rng.randint(10_000, 2_000_000), rng.randint(1, 127))
        )
    pedal = [PedalEvent(k * 4_000_000, 127 if k % 2 == 0 else 0) for k in range(t // 4_000_000)]
    return Score(notes, pedal)


def best_of(repeat: int, fn: object) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--notes", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    score = random_score(args.notes)
    print(f"{'spec':<16} {'plan us/note':>12} {'mido us/note':>12} {'plan/mido':>9}")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "random.mid"
        write_midi(score, path)
        for name in ("piano-88-grand", "piano-61-diy"):
            spec = load_spec(name)
            plan_piano(score, spec)  # warm the drive cache, as a second piece would
            t_plan = best_of(args.repeat, lambda spec=spec: plan_piano(score, spec))
            t_mido = best_of(args.repeat, lambda: mido.MidiFile(path))
            n = len(score.notes)
            print(
                f"{name:<16} {t_plan / n * 1e6:>12.1f} {t_mido / n * 1e6:>12.1f} "
                f"{t_plan / t_mido:>9.2f}"
            )


if __name__ == "__main__":
    main()

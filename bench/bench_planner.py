"""Planner speed: planning a 20,000-note file, with the plan written as JSON Lines,
against mido parsing the same file, per note and as a ratio (issue 8 target: <= 1).

    .venv/bin/python bench/bench_planner.py [--notes 20000] [--repeat 5] [--piece maple_leaf_rag]

The score is a bundled piece repeated back to back until it has ``--notes`` notes (the
Maple Leaf Rag by default), written once as a Standard MIDI File. Each row times, best
of ``--repeat`` runs (the least disturbed run on a shared machine):

- ``mido``: ``mido.MidiFile(path)`` on that file (parsing only, no note pairing);
- ``plan``: the spec's planner on the score (nominal curves, as a first run would);
- ``write``: ``Plan.write_jsonl`` of that plan;
- ``plan+write``: both, the figure the target is about. It is more than the two above
  added: the planner pauses the cyclic garbage collector while it runs, and the first
  collection after it walks the plan's fresh objects once (as it would for a user).

The four take turns within each round (best CPU time of ``--repeat`` rounds each), so
that a busy spell on a shared machine slows them alike.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mido

from robo_player.midi import bundled_pieces, read_midi, write_midi
from robo_player.planner import plan as run_planner  # the one entry point (issue 8)
from robo_player.score import Note, PedalEvent, Score
from robo_player.spec import load_spec
from robo_player.spec.model import InstrumentSpec


def repeated_score(piece: str, notes: int) -> Score:
    """``piece`` (a bundled name) repeated back to back until it has ``notes`` notes."""
    path = next(p for p in bundled_pieces() if p.stem == piece)
    one = read_midi(path)
    span = max(n.end_us for n in one.notes) + 500_000
    out: list[Note] = []
    pedal: list[PedalEvent] = []
    k = 0
    while len(out) < notes:
        shift = k * span
        for n in one.notes:
            if len(out) >= notes:
                break
            out.append(
                Note(n.pitch, n.onset_us + shift, n.duration_us, n.velocity, n.channel, n.track)
            )
        pedal += [PedalEvent(e.t_us + shift, e.value, e.channel) for e in one.pedal]
        k += 1
    last = out[-1].onset_us
    return Score(out, [e for e in pedal if e.t_us <= last], ticks_per_beat=one.ticks_per_beat)


def best_of_interleaved(repeat: int, fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best CPU time (s) of each of ``fns`` over ``repeat`` rounds, the functions taking
    turns within a round: on a shared machine, a busy spell then slows all of them alike
    instead of one, so their ratios hold. CPU time of this process (all four are
    CPU-bound), so the time other processes hold the cores does not count."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--notes", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--piece", default="maple_leaf_rag")
    args = ap.parse_args()
    score = repeated_score(args.piece, args.notes)
    n = len(score.notes)
    with tempfile.TemporaryDirectory() as d:
        midi_path = Path(d) / f"{args.piece}_x.mid"
        plan_path = Path(d) / "plan.jsonl"
        write_midi(score, midi_path)
        print(
            f"## Planning speed: {args.piece} repeated to {n} notes ({len(score.pedal)} pedal events)"
        )
        print(
            f"{'spec':<16} {'mido us/note':>12} {'plan us/note':>12} {'write us/note':>13} "
            f"{'plan+write':>10} {'(plan+write)/mido':>17}"
        )
        for name in ("piano-88-grand", "piano-61-diy"):
            spec = load_spec(name)
            plan, _ = run_planner(score, spec)  # warm the caches

            def both(spec: InstrumentSpec = spec) -> None:
                p, _ = run_planner(score, spec)
                p.write_jsonl(plan_path)

            best = best_of_interleaved(
                args.repeat,
                {
                    "mido": lambda: mido.MidiFile(midi_path),
                    "plan": lambda spec=spec: run_planner(score, spec),  # type: ignore[misc]
                    "write": lambda plan=plan: plan.write_jsonl(plan_path),  # type: ignore[misc]
                    "both": both,
                },
            )
            us = {k: v / n * 1e6 for k, v in best.items()}
            print(
                f"{name:<16} {us['mido']:>12.2f} {us['plan']:>12.2f} {us['write']:>13.2f} "
                f"{us['both']:>10.2f} {best['both'] / best['mido']:>17.2f}"
            )
    print("target: (plan+write)/mido <= 1.0")


if __name__ == "__main__":
    main()

"""Guitar planner: fretter travel per note against a greedy baseline, and planning speed.

    .venv/bin/python bench/bench_guitar.py [--tunes 8] [--notes 20000] [--repeat 3]

Pieces (none shipped with the project): with ``--corpus N``, N tunes of Ryan's Mammoth
Collection from music21's corpus (when music21 is installed; at the tempo the file
gives, else 120 per quarter), and folk-style tunes made here with a fixed seed
(reels and jigs, AABB, 8 bars a part, in D, G and A major over D4..B5, at their written
tempo: reels at 8ths of 270 ms, jigs at 8ths of 190 ms; mostly stepwise with arpeggio
leaps and repeated parts, as fiddle tunes go) and, for chords and a bass line, the
bundled Bach chorale bwv66.6 (4 voices; its bass line an octave down for the bass).

Rows per spec and piece: notes, fretter travel per note (frets) of the planner's
search and of the greedy baseline (every note on the string with the lowest fret; its
travel counted without timing, so it drops nothing; ``greedy_dropped`` is what the
same assignment would drop when planned), their ratio (issue target on the slider: <= 0.55), notes dropped and cut.

Speed: ``plan_guitar`` (assignment + commands + checks) and ``write_jsonl`` on the
tunes repeated to ``--notes`` notes, best CPU time of ``--repeat`` (target >= 20,000
notes/s).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from robo_player.midi import bundled_pieces, read_midi
from robo_player.planner.guitar import plan_guitar, prepare
from robo_player.score import Note, Score
from robo_player.spec import load_spec
from robo_player.spec.guitar import GuitarSpec, Mechanism

SCALES = {"D": (62, [0, 2, 4, 5, 7, 9, 11]), "G": (55, [0, 2, 4, 5, 7, 9, 11]),
          "A": (57, [0, 2, 4, 5, 7, 9, 11])}  # fmt: skip
LOW, HIGH = 62, 83  # D4..B5, a fiddle tune's range


def _pitches(tonic: int, steps: list[int]) -> list[int]:
    out = [tonic + 12 * o + s for o in range(-2, 4) for s in steps]
    return sorted(p for p in out if LOW <= p <= HIGH)


def folk_tune(seed: int) -> tuple[str, Score]:
    """An AABB reel or jig (8 bars a part), seeded."""
    rng = random.Random(seed)
    key = rng.choice(list(SCALES))
    tonic, steps = SCALES[key]
    scale = _pitches(tonic, steps)
    jig = rng.random() < 0.5
    eighth = 190_000 if jig else 270_000
    per_bar = 6 if jig else 8

    def part() -> list[tuple[int, int]]:  # (scale index, eighths)
        i = rng.randrange(2, len(scale) - 4)
        out: list[tuple[int, int]] = []
        for bar in range(8):
            left = per_bar
            while left:
                d = 2 if left >= 2 and rng.random() < 0.15 else 1
                r = rng.random()
                if r < 0.55:
                    i += rng.choice((-1, 1))
                elif r < 0.75:
                    i += rng.choice((-2, 2))
                elif r < 0.9:
                    i += rng.choice((-4, -3, 3, 4))
                elif r < 0.95:
                    i += rng.choice((-7, 7))
                i = max(0, min(len(scale) - 1, i))
                out.append((i, d))
                left -= d
            if bar == 3:
                out[-1] = (out[-1][0], out[-1][1])
        return out

    a, b = part(), part()
    notes: list[Note] = []
    t = 0
    for idx, d in a + a + b + b:
        notes.append(Note(scale[idx], t, d * eighth - 10_000, 80))
        t += d * eighth
    return f"{'jig' if jig else 'reel'}-{seed}-{key}", Score(notes)


def corpus_tunes(count: int) -> list[tuple[str, Score]]:
    """``count`` tunes of Ryan's Mammoth Collection from music21's corpus (every k-th
    file, sorted by name), at the tempo their file gives (music21: 120 per quarter when
    none); chords keep every note, tied notes are joined."""
    from music21 import corpus  # optional: only with --corpus

    paths = sorted(str(p) for p in corpus.getPaths() if "ryansMammoth" in str(p))
    step = max(1, len(paths) // max(1, count))
    out: list[tuple[str, Score]] = []
    for path in paths[::step][:count]:
        s = corpus.parse(path)
        for sc in getattr(s, "scores", None) or [s]:
            flat = sc.flatten()
            marks = list(flat.getElementsByClass("MetronomeMark"))
            us_q = 60e6 / (marks[0].getQuarterBPM() if marks else 120.0)
            notes: list[Note] = []
            for el in flat.notes:
                tie = getattr(el, "tie", None)
                if tie is not None and tie.type in ("stop", "continue"):
                    continue
                on = round(float(el.offset) * us_q)
                dur = max(20_000, round(float(el.quarterLength) * us_q) - 10_000)
                for p in el.pitches:
                    notes.append(Note(int(p.midi), on, dur, 80))
            if notes:
                out.append((Path(path).stem, Score(notes)))
    return out


def chorale() -> Score:
    path = next(p for p in bundled_pieces() if p.stem == "bwv66.6")
    return read_midi(path)


def bass_line(score: Score) -> Score:
    """The lowest note of every onset, an octave down."""
    low: dict[int, Note] = {}
    for n in score.notes:
        if n.onset_us not in low or n.pitch < low[n.onset_us].pitch:
            low[n.onset_us] = n
    return Score([Note(n.pitch - 12, n.onset_us, n.duration_us, n.velocity) for n in low.values()])


def greedy_travel(spec: GuitarSpec, score: Score) -> int:
    """Frets the carriages travel when every note takes the string with the lowest fret
    (the baseline; pure travel: it ignores timing, so it drops no note)."""
    if spec.mechanism is not Mechanism.SLIDER:
        return 0  # no carriages
    onsets, _ = prepare(spec, score)
    car = [0] * len(spec.strings)
    total = 0
    for o in onsets:
        k = min(range(len(o.fingerings)), key=lambda k: sum(f for _, f in o.fingerings[k]))
        for s, f in o.fingerings[k]:
            if f > 0:
                total += abs(car[s] - f)
                car[s] = f
    return total


def row(spec_name: str, piece: str, score: Score) -> dict[str, object]:
    spec = load_spec(spec_name)
    assert isinstance(spec, GuitarSpec)
    _, rep = plan_guitar(score, spec)
    _, base = plan_guitar(score, spec, fingering="lowest")
    n = len(score.notes)
    per, per_base = rep.fretter_travel_frets / n, greedy_travel(spec, score) / n
    return {
        "spec": spec_name,
        "piece": piece,
        "notes": n,
        "travel/note": round(per, 3),
        "greedy/note": round(per_base, 3),
        "ratio": round(per / per_base, 3) if per_base else float("nan"),
        "dropped": rep.notes_dropped,
        "greedy_dropped": base.notes_dropped,
        "cut": rep.cut_notes,
        "string_changes": rep.string_changes,
    }


def speed(spec_name: str, tunes: list[Score], notes: int, repeat: int,
          beam: int = 8) -> tuple[float, float]:  # fmt: skip
    spec = load_spec(spec_name)
    out: list[Note] = []
    t0 = 0
    while len(out) < notes:
        for sc in tunes:
            out += [Note(n.pitch, n.onset_us + t0, n.duration_us, n.velocity) for n in sc.notes]
            t0 = max(n.end_us for n in out) + 500_000
    score = Score(out[:notes])
    best_plan = best_all = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            c0 = time.process_time()
            plan, _ = plan_guitar(score, spec, beam=beam)  # type: ignore[arg-type]
            c1 = time.process_time()
            plan.write_jsonl(Path(tmp) / "p.jsonl")
            c2 = time.process_time()
            best_plan, best_all = min(best_plan, c1 - c0), min(best_all, c2 - c0)
    return len(score.notes) / best_plan, len(score.notes) / best_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tunes", type=int, default=8)
    ap.add_argument("--notes", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus", type=int, default=0, metavar="N",
                    help="also N tunes of Ryan's Mammoth Collection (needs music21)")
    args = ap.parse_args(argv)
    tunes = [folk_tune(seed) for seed in range(args.tunes)]
    if args.corpus:
        tunes += corpus_tunes(args.corpus)
    rows = []
    for name, sc in tunes:
        rows.append(row("guitar-slider", name, sc))
    ch = chorale()
    rows.append(row("guitar-slider", "bwv66.6 (4 voices)", ch))
    rows.append(row("guitar-matrix", "bwv66.6 (4 voices)", ch))
    rows.append(row("bass-4", "bwv66.6 bass, 8vb", bass_line(ch)))
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))
    for label, made in (("synthetic", True), ("Ryan's Mammoth", False)):
        folk = [r for r in rows if r["spec"] == "guitar-slider" and r["piece"] != "bwv66.6 (4 voices)"
                and str(r["piece"]).startswith(("jig-", "reel-")) == made]  # fmt: skip
        if not folk:
            continue
        tot = sum(float(r["travel/note"]) * int(r["notes"]) for r in folk)  # type: ignore[arg-type]
        tot_b = sum(float(r["greedy/note"]) * int(r["notes"]) for r in folk)  # type: ignore[arg-type]
        drops = sum(int(r["dropped"]) for r in folk)  # type: ignore[call-overload]
        print(f"{label} tunes ({len(folk)}) on guitar-slider: travel {tot / tot_b:.3f} x greedy "
              f"(target <= 0.55), {drops} notes dropped")  # fmt: skip
    for spec_name, beam in (("guitar-slider", 8), ("guitar-slider", 4), ("guitar-slider", 1),
                            ("guitar-matrix", 8)):  # fmt: skip
        plan_rate, all_rate = speed(spec_name, [sc for _, sc in tunes], args.notes, args.repeat, beam)
        print(f"{spec_name} (beam {beam}): plan {plan_rate:,.0f} notes/s, plan+write "
              f"{all_rate:,.0f} notes/s (target >= 20,000)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Make the bundled MIDI pieces in robo_player/data/pieces/ from music21's corpus.

music21 is needed only here (``pip install -e .[corpus]``), not at run time. The
corpus scores are public domain. Run from the repository root:

    .venv/bin/python scripts/make_pieces.py            # writes the .mid files
    .venv/bin/python scripts/make_pieces.py --check    # prints stats, writes nothing

Velocities come from the written dynamics, by our own table (music21's export maps
``f`` to 126, which would make half a rag fortissimo): the level of the latest
marking in any part (a piano's dynamics stand between the staves and serve both
hands), ``mf`` before the first; an accent adds 16. Repeats are expanded where the
score's repeat marks are well formed; otherwise they are removed (played once).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from music21 import articulations, bar, chord, corpus, dynamics, note, repeat, stream, tempo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from robo_player.midi import PIECES_DIR, read_midi, score_stats  # noqa: E402

log = logging.getLogger("make_pieces")

VELOCITY = {"ppp": 20, "pp": 33, "p": 49, "mp": 64, "mf": 80, "f": 96, "ff": 112, "fff": 124}
DEFAULT_LEVEL = "mf"
ACCENT = 16
MAX_BYTES = 100_000


@dataclass(frozen=True)
class Piece:
    corpus_path: str
    out_name: str
    title: str
    qpm: float | None  # tempo to set (quarter notes per minute); None keeps the score's
    expand_repeats: bool


PIECES = [
    # The corpus file has no tempo mark (music21 would play it at 120); 66 suits a chorale.
    Piece("bach/bwv66.6", "bwv66.6", "J. S. Bach, four-part chorale from cantata BWV 66 "
          "(movement 6)", 66.0, True),
    Piece("joplin/maple_leaf_rag", "maple_leaf_rag", "Scott Joplin, Maple Leaf Rag (1899), "
          "piano", None, True),
    # Its repeat marks are malformed for music21's expander: played once through.
    Piece("chopin/mazurka06-2", "mazurka06-2", "Frédéric Chopin, Mazurka in C-sharp minor, "
          "Op. 6 No. 2, piano", None, False),
]


def _strip_repeats(score: stream.Score) -> None:
    for mark in list(score.recurse().getElementsByClass((bar.Repeat, repeat.RepeatMark))):
        site = mark.activeSite
        if isinstance(mark, bar.Repeat) and isinstance(site, stream.Measure):
            if site.leftBarline is mark:
                site.leftBarline = None
            if site.rightBarline is mark:
                site.rightBarline = None
        elif site is not None:
            site.remove(mark)
    for bracket in list(score.recurse().getElementsByClass(("RepeatBracket",))):
        if bracket.activeSite is not None:
            bracket.activeSite.remove(bracket)


def _set_tempo(score: stream.Score, qpm: float) -> None:
    for mark in list(score.recurse().getElementsByClass(tempo.MetronomeMark)):
        mark.activeSite.remove(mark)
    for part in score.parts:
        first = part.getElementsByClass(stream.Measure).first()
        (first or part).insert(0, tempo.MetronomeMark(number=qpm))


def _apply_dynamics(score: stream.Score) -> dict[str, int]:
    """Set every note's velocity from the dynamics of all parts; return marks used."""
    marks: list[tuple[float, str]] = []
    used: dict[str, int] = {}
    for dyn in score.recurse().getElementsByClass(dynamics.Dynamic):
        value = str(dyn.value)
        if value in VELOCITY:
            marks.append((float(dyn.getOffsetInHierarchy(score)), value))
            used[value] = used.get(value, 0) + 1
        else:
            log.warning("dynamic %r at offset %s not in the table, ignored", value,
                        dyn.getOffsetInHierarchy(score))
    marks.sort()
    offsets = [m[0] for m in marks]
    for item in score.recurse().getElementsByClass((note.Note, chord.Chord)):
        at = float(item.getOffsetInHierarchy(score))
        level = DEFAULT_LEVEL
        # the latest mark at or before this note (bisect by hand: offsets are few)
        for off, value in zip(offsets, (m[1] for m in marks), strict=True):
            if off > at + 1e-9:
                break
            level = value
        velocity = VELOCITY[level]
        if any(isinstance(a, articulations.Accent | articulations.StrongAccent)
               for a in item.articulations):
            velocity += ACCENT
        velocity = min(velocity, 127)
        targets = list(item.notes) if isinstance(item, chord.Chord) else []
        for target in [item, *targets]:
            target.volume.velocity = velocity
            target.volume.velocityIsRelative = False
    return used


def make(piece: Piece, out_dir: Path, write: bool) -> dict[str, object]:
    score = corpus.parse(piece.corpus_path)
    if piece.expand_repeats:
        score = score.expandRepeats()
    else:
        _strip_repeats(score)
    if piece.qpm is not None:
        _set_tempo(score, piece.qpm)
    used = _apply_dynamics(score)
    out = out_dir / f"{piece.out_name}.mid"
    tmp = out_dir / f".{piece.out_name}.tmp.mid"
    score.write("midi", fp=str(tmp))
    size = tmp.stat().st_size
    stats = score_stats(read_midi(tmp))
    stats.update(bytes=size, dynamics=used, corpus=piece.corpus_path, title=piece.title)
    if size > MAX_BYTES:
        tmp.unlink()
        raise SystemExit(f"{out}: {size} bytes, allowed up to {MAX_BYTES}")
    if write:
        tmp.replace(out)
    else:
        tmp.unlink()
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="print stats, write nothing")
    parser.add_argument("--out", type=Path, default=PIECES_DIR, help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    for piece in PIECES:
        stats = make(piece, args.out, write=not args.check)
        print(f"{piece.out_name}.mid: {stats['title']}")
        print(f"  corpus {stats['corpus']}, {stats['bytes']} bytes, {stats['notes']} notes, "
              f"{stats['duration_s']:.1f} s, {stats['pitch_range']}, velocities "
              f"{stats['velocity_min']}..{stats['velocity_max']} (mean "
              f"{stats['velocity_mean']:.1f}), max polyphony {stats['max_polyphony']}, "
              f"dynamics {stats['dynamics']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

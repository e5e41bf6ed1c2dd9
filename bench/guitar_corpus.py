"""Pieces for the guitar bench from music21's corpus, parsed once and cached.

    from guitar_corpus import tunes, chorales
    tunes("ryans", 30)      # [(name, Score)], every k-th tune of the collection
    chorales(20)            # 4-voice Bach chorales (soprano, alto, tenor, bass)

Collections: ``ryans`` (Ryan's Mammoth Collection, one tune a file), ``oneills``
(O'Neill's 1850, opus files of many tunes), ``essen`` (Essen folk songs, opus files).
Each piece is at the tempo its file gives (the first metronome mark; 120 per quarter
when there is none, music21's default), chords keep every note, tied notes are joined,
every note lasts its written length less 10 ms (a player's articulation), velocity 80.

music21 (``pip install -e '.[corpus]'``) is needed only the first time: the notes are
cached as JSON under ``~/.cache/robo_player/corpus/`` (``$ROBO_PLAYER_CACHE`` moves it).
Nothing here runs in the default test suite.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from robo_player.score import Note, Score

COLLECTIONS = {"ryans": "ryansMammoth", "oneills": "oneills1850", "essen": "essenFolksong"}
Piece = tuple[str, Score]


def cache_dir() -> Path:
    root = os.environ.get("ROBO_PLAYER_CACHE") or str(Path.home() / ".cache" / "robo_player")
    d = Path(root) / "corpus"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _notes_of(stream: Any, parts: bool = False) -> list[list[int]]:
    """[[pitch, onset_us, duration_us, velocity]] of a music21 score (or one part)."""
    flat = stream.flatten()
    marks = list(flat.getElementsByClass("MetronomeMark"))
    us_q = 60e6 / (marks[0].getQuarterBPM() if marks and marks[0].getQuarterBPM() else 120.0)
    out: list[list[int]] = []
    for el in flat.notes:
        tie = getattr(el, "tie", None)
        if tie is not None and tie.type in ("stop", "continue"):
            continue
        ql = float(el.quarterLength)
        if tie is not None and tie.type == "start":  # join the tied notes that follow
            nxt = el.next("Note") if hasattr(el, "next") else None
            while nxt is not None and getattr(nxt, "tie", None) is not None and nxt.tie.type in ("continue", "stop"):
                ql += float(nxt.quarterLength)
                if nxt.tie.type == "stop":
                    break
                nxt = nxt.next("Note")
        on = round(float(el.offset) * us_q)
        dur = max(20_000, round(ql * us_q) - 10_000)
        for p in el.pitches:
            out.append([int(p.midi), on, dur, 80])
    out.sort(key=lambda n: (n[1], n[0]))
    return out


def _cached(key: str, build: Any) -> list[tuple[str, list[list[int]]]]:
    path = cache_dir() / f"{key}.json"
    if path.exists():
        return [(n, v) for n, v in json.loads(path.read_text())]
    data = build()
    path.write_text(json.dumps(data))
    return data


def _scores(data: list[tuple[str, list[list[int]]]]) -> list[Piece]:
    return [(name, Score([Note(*n) for n in notes])) for name, notes in data if notes]


def tunes(collection: str, count: int) -> list[Piece]:
    """``count`` tunes of ``collection`` (``ryans``, ``oneills``, ``essen``), spread
    evenly over the collection in file order."""

    def build() -> list[tuple[str, list[list[int]]]]:
        from music21 import corpus

        key = COLLECTIONS[collection]
        paths = sorted(str(p) for p in corpus.getPaths() if f"/{key}/" in str(p))
        out: list[tuple[str, list[list[int]]]] = []
        if collection == "ryans":
            step = max(1, len(paths) // max(1, count))
            for path in paths[::step][:count]:
                s = corpus.parse(path)
                for i, sc in enumerate(getattr(s, "scores", None) or [s]):
                    out.append((f"{Path(path).stem}" + (f"-{i}" if i else ""), _notes_of(sc)))
            return out[:count]
        # opus files of many tunes each (music21 parses a whole file at once): up to 10
        # tunes a file, files spread evenly over the collection
        per_file = max(1, min(10, count))
        nfiles = -(-count // per_file)
        for path in paths[:: max(1, len(paths) // nfiles)]:
            s = corpus.parse(path)
            scores = list(getattr(s, "scores", None) or [s])
            step = max(1, len(scores) // per_file)
            for i, sc in enumerate(scores[::step][:per_file]):
                out.append((f"{Path(path).stem}-{i * step}", _notes_of(sc)))
            if len(out) >= count:
                break
        return out[:count]

    return _scores(_cached(f"{collection}-{count}", build))


def chorales(count: int) -> tuple[list[Piece], list[Piece]]:
    """``count`` 4-voice Bach chorales (every k-th of music21's with exactly 4 parts),
    and their bass parts an octave down (the bass spec's pieces)."""

    def build() -> list[tuple[str, list[list[int]]]]:
        from music21 import corpus

        out: list[tuple[str, list[list[int]]]] = []
        names = sorted(str(p) for p in corpus.getPaths() if "/bach/" in str(p) and "bwv" in Path(p).stem)
        names = [p for p in names if Path(p).suffix in (".mxl", ".xml", ".musicxml", ".krn")]
        step = max(1, len(names) // max(1, count * 2))
        for path in names[::step]:
            s = corpus.parse(path)
            if len(s.parts) != 4:
                continue
            bass = [[p - 12, on, d, v] for p, on, d, v in _notes_of(s.parts[-1])]
            out += [(Path(path).stem, _notes_of(s)), (f"{Path(path).stem} bass 8vb", bass)]
            if len(out) >= 2 * count:
                break
        return out

    data = _cached(f"chorales-{count}", build)
    return _scores(data[0::2]), _scores(data[1::2])

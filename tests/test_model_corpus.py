"""Corpus: the fast kern reader, MIDI folder ingestion, cache, augmentation (no music21
parse in the default run; the real corpus parse is marked slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robo_player.errors import UsageError
from robo_player.midi import write_midi
from robo_player.model import corpus
from robo_player.model import tokenizer as tk
from robo_player.score import Note, Score

KERN = """!!!COM: test
**kern\t**kern
*M4/4\t*M4/4
=1\t=1
4c\t2.CC#
4.d-\t.
8r\t.
[2e\t4r
=2\t=2
4e]\t1G
4cc\t.
*-\t*-
"""


def test_kern_reader_durations_ties_accidentals(tmp_path: Path) -> None:
    f = tmp_path / "x.krn"
    f.write_text(KERN)
    sc = corpus.read_kern(f, bpm=60.0)  # one quarter = 1 s
    got = sorted((n.pitch, n.onset_us, n.duration_us) for n in sc.notes)
    assert got == sorted([
        (60, 0, 1_000_000),  # 4c
        (61, 1_000_000, 1_500_000),  # 4.d- = C#4
        (64, 3_000_000, 3_000_000),  # [2e tied to 4e]
        (72, 6_000_000, 1_000_000),  # 4cc
        (37, 0, 3_000_000),  # 2.CC# = C#2
        (55, 4_000_000, 4_000_000),  # 1G = G3
    ])


def test_kern_reader_refuses_spine_splits(tmp_path: Path) -> None:
    f = tmp_path / "y.krn"
    f.write_text("**kern\n*^\n4c\t4d\n*-\t*-\n")
    with pytest.raises(corpus.KernUnsupportedError, match="spine manipulation"):
        corpus.read_kern(f)


def _write_folder(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        notes = [Note(int(rng.integers(40, 90)), int(j * 250_000), 200_000, int(rng.integers(30, 120)))
                 for j in range(12)]
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        write_midi(Score(notes=notes), sub / f"p{i}.mid")


def test_midi_folder_ingest_and_cache(tmp_path: Path) -> None:
    folder = tmp_path / "midi"
    _write_folder(folder, 6)
    pieces, stats = corpus.ingest("midi", str(folder), fast=False)
    assert stats.files == 6 and stats.pieces == 6 and stats.notes == 72
    assert stats.notes_per_s > 0
    names = sorted(p.name for p in pieces)
    assert names[0] == "a__p1.mid" and all(n.endswith(".mid") for n in names)
    p = next(p for p in pieces if p.name == "a__p1.mid")
    assert tk.count_notes(p.tokens) == 12
    # cached once: the second load reads the npz and gives the same tokens
    got = corpus.load_corpus(f"midi:{folder}", cache_dir=tmp_path / "cache")
    again = corpus.load_corpus(f"midi:{folder}", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert [x.name for x in got] == [x.name for x in again]
    assert all((a.tokens == b.tokens).all() and (a.notes == b.notes).all() for a, b in zip(got, again, strict=True))


def test_midi_folder_fast_parser_agrees_with_mido(tmp_path: Path) -> None:
    pytest.importorskip("symusic")
    folder = tmp_path / "midi"
    _write_folder(folder, 2)
    f = next(folder.rglob("*.mid"))
    a = corpus.read_midi_notes(f, fast=False)
    b = corpus.read_midi_notes(f, fast=True)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 2  # µs rounding only


def test_bad_corpus_specs() -> None:
    with pytest.raises(UsageError, match="not a folder"):
        corpus.load_corpus("midi:/nonexistent/folder", cache_dir="/tmp/never")
    with pytest.raises(UsageError):
        corpus.parse_sources("")


def test_augment_transposes_and_stretches(tmp_path: Path) -> None:
    notes = np.array([[60, 0, 500_000, 64], [64, 500_000, 500_000, 64]], np.int64)
    piece = corpus.Piece("x.mid", "test", notes, np.array(tk.encode(corpus.notes_to_score(notes)), np.int16))
    vs = corpus.augment(piece, transpose=(-1, 0, 1), stretch=(0.9, 1.0))
    assert len(vs) == 6
    pitches = {tuple(sorted(n.pitch for n in tk.decode(v).notes)) for v in vs}
    assert pitches == {(59, 63), (60, 64), (61, 65)}
    ends = {tk.decode(v).end_us for v in vs}
    assert ends == {900_000, 1_000_000}


@pytest.mark.slow
def test_music21_bach_parses_with_dynamics_and_split() -> None:
    pytest.importorskip("music21")
    files = dict(corpus.music21_files("bach"))
    assert "bwv66.6.mid" in files
    out = corpus._parse_music21(("bwv66.6.mid", str(files["bwv66.6.mid"]), "bach"))
    name, notes = out[0]
    assert name == "bwv66.6.mid" and len(notes) > 100
    assert corpus.split_of(name) == "train"

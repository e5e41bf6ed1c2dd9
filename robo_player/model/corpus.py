"""Training data: music21's corpus and folders of MIDI files, as cached token arrays.

Pieces are named by their corpus path relative to the composer's folder, with ``/``
replaced by ``__`` and the extension by ``.mid`` (``bwv66.6.mid``, ``Agnus_10.mid``).
The split is fixed by that name alone: ``h = int(sha1(name), 16) % 100``; test if
``h >= 90``, valid if ``h >= 80``, train otherwise (:func:`split_of`). So results compare
with published baselines, and a test piece is never trained on.

Parsing with music21 is slow (~0.2-0.8 s a file), so each source is converted once and
cached under ``cache/`` as note arrays and token arrays (:func:`load_corpus`). Pure
Python + numpy; music21 (the ``corpus`` extra) is imported only to parse.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MidiFileError, ModelError, UsageError
from ..fileio import atomic_path
from ..pitch import LETTER_STEPS
from ..score import Note, Score
from . import tokenizer as tk

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
CACHE_VERSION = 1
DEFAULT_BPM = 120.0  # music21/MIDI default when a score has no metronome mark
DEFAULT_VELOCITY = 72  # mf, for scores without dynamics markings
MUSIC21_SOURCES = ("bach", "palestrina", "essenFolksong", "ryansMammoth", "beethoven",
                   "mozart", "haydn", "chopin", "joplin", "schubert")
MUSIC21_EXTS = (".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mid", ".midi")


def default_cache_dir() -> Path:
    """The user's cache folder for parsed corpora: ``$XDG_CACHE_HOME/robo_player`` or
    ``~/.cache/robo_player``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "robo_player"


def progress_line(what: str) -> Callable[[float], None]:
    """A progress callback that redraws one stderr line (``what: 42 %``)."""
    import sys

    last = [-1]

    def show(frac: float) -> None:
        pct = int(frac * 100)
        if pct != last[0]:
            last[0] = pct
            sys.stderr.write(f"\r{what}: {pct:3d} %" + ("\n" if pct >= 100 else ""))
            sys.stderr.flush()

    return show


def piece_name(rel_path: str | Path) -> str:
    """Corpus path relative to the composer's folder -> piece name (``a/b.krn`` -> ``a__b.mid``)."""
    p = Path(rel_path)
    return str(p.with_suffix("")).replace(os.sep, "/").replace("/", "__") + ".mid"


def split_of(name: str) -> str:
    """The split a piece belongs to, from its name alone (see the module docstring)."""
    h = int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % 100
    if h >= 90:
        return "test"
    if h >= 80:
        return "valid"
    return "train"


@dataclass(slots=True)
class Piece:
    """One piece: its name, split, notes ``(N, 4)`` int64 [pitch, onset_us, dur_us,
    velocity] and its tokens (int16)."""

    name: str
    source: str
    notes: np.ndarray
    tokens: np.ndarray

    @property
    def split(self) -> str:
        if self.source.startswith("asap:"):  # ASAP: split by piece (the folder), not performance
            return split_of(self.name.rsplit("/", 1)[0])
        return split_of(self.name)

    def score(self) -> Score:
        return notes_to_score(self.notes, source=self.name)


def score_to_notes(score: Score) -> np.ndarray:
    arr = np.array([(n.pitch, n.onset_us, n.duration_us, n.velocity) for n in score.notes],
                   dtype=np.int64)
    return arr.reshape(-1, 4)


def notes_to_score(notes: np.ndarray, source: str | None = None) -> Score:
    return Score(notes=[Note(int(p), int(o), int(d), int(v)) for p, o, d, v in notes],
                 source=source)


# ---------------------------------------------------------------- music21


def _seconds_map(s: object) -> Callable[[float], float]:
    """Quarter-length offset -> seconds, following the score's metronome marks."""
    bounds: list[tuple[float, float, float]] = []  # (start_ql, end_ql, sec_per_ql)
    try:
        for start, end, mm in s.metronomeMarkBoundaries():  # type: ignore[attr-defined]
            spq = mm.secondsPerQuarter()
            bounds.append((float(start), float(end), float(spq) if spq else 60.0 / DEFAULT_BPM))
    except Exception as err:  # noqa: BLE001 - music21 raises many kinds here
        log.debug("no tempo map (%s); using %s bpm", err, DEFAULT_BPM)
    if not bounds:
        bounds = [(0.0, float("inf"), 60.0 / DEFAULT_BPM)]
    starts = [0.0]
    for b0, b1, spq in bounds:
        starts.append(starts[-1] + (b1 - b0) * spq)

    def to_s(ql: float) -> float:
        for i, (b0, b1, spq) in enumerate(bounds):
            if ql < b1 or i == len(bounds) - 1:
                return starts[i] + (ql - b0) * spq
        return 0.0  # unreachable

    return to_s


def music21_to_score(s: object, source: str | None = None) -> Score:
    """A parsed music21 Score -> :class:`Score`. Ties are merged; dynamics markings
    become velocities (``volumeScalar * 127``), mf where a part has none."""
    from music21 import dynamics  # the `corpus` extra

    to_s = _seconds_map(s)
    parts = list(getattr(s, "parts", [])) or [s]
    notes: list[Note] = []
    for ti, part in enumerate(parts):
        flat = part.stripTies().flatten()  # type: ignore[attr-defined]
        dyn = sorted((float(d.offset), d.volumeScalar) for d in flat.getElementsByClass(dynamics.Dynamic)
                     if d.volumeScalar is not None)
        di = 0
        vel = DEFAULT_VELOCITY
        for el in flat.notes:
            ql = float(el.duration.quarterLength)
            if ql <= 0:
                continue  # grace notes carry no time
            off = float(el.offset)
            while di < len(dyn) and dyn[di][0] <= off:
                vel = max(1, min(127, round(dyn[di][1] * 127)))
                di += 1
            t0, t1 = to_s(off), to_s(off + ql)
            for p in el.pitches:
                if 0 <= p.midi < 128:
                    notes.append(Note(int(p.midi), round(t0 * 1e6), max(1, round((t1 - t0) * 1e6)),
                                      vel, track=ti))
    return Score(notes=notes, source=source)


def music21_files(composer: str) -> list[tuple[str, Path]]:
    """``(piece name, path)`` of a music21 composer folder's scores (analyses skipped)."""
    try:
        from music21 import corpus
    except ImportError as err:
        raise UsageError("music21 corpus needs the `corpus` extra: pip install music21") from err
    paths = corpus.getComposer(composer)
    if not paths:
        raise UsageError(f"music21 corpus: no composer folder {composer!r} "
                         f"(known: {', '.join(MUSIC21_SOURCES)})")
    out: list[tuple[str, Path]] = []
    for p in sorted(Path(x) for x in paths):
        if p.suffix.lower() not in MUSIC21_EXTS:
            continue
        root = p.parent
        while root.name.lower() != composer.lower() and root != root.parent:
            root = root.parent
        rel = p.relative_to(root) if root != root.parent else Path(p.name)
        out.append((piece_name(rel), p))
    return out


_KERN_TOKEN = re.compile(r"^([\[]?)(\d+)(\.*)([A-Ga-g]+|r)([#n-]*)([\]_]?)[^\s]*$")


class KernUnsupportedError(ValueError):
    """A Humdrum feature the fast reader does not handle (music21 parses the file)."""


def read_kern(path: str | Path, bpm: float = DEFAULT_BPM, velocity: int = DEFAULT_VELOCITY) -> Score:
    """Fast reader for the plain **kern of music21's Palestrina corpus (one note per
    spine and line, ties ``[ _ ]``, no spine splits, no tempo marks): ~100x faster than
    music21 and gives the same notes. Raises :class:`KernUnsupportedError` for anything else."""
    spq = 60.0 / bpm  # seconds per quarter
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    n_spines = 0
    pos: list[float] = []  # quarter-length position per spine
    open_ties: list[tuple[int, float] | None] = []  # per spine: (pitch, onset_ql) of a tie
    notes: list[Note] = []

    def emit(spine: int, pitch: int, on: float, end: float) -> None:
        notes.append(Note(pitch, round(on * spq * 1e6), max(1, round((end - on) * spq * 1e6)),
                          velocity, track=spine))

    for ln, line in enumerate(lines, start=1):
        if not line or line.startswith("!"):
            continue
        cols = line.split("\t")
        if line.startswith("**"):
            if any(c != "**kern" for c in cols):
                raise KernUnsupportedError(f"{path}:{ln}: non-kern spine")
            n_spines = len(cols)
            pos = [0.0] * n_spines
            open_ties = [None] * n_spines
            continue
        if len(cols) != n_spines:
            raise KernUnsupportedError(f"{path}:{ln}: {len(cols)} columns, expected {n_spines}")
        if line.startswith("*"):
            if any(c in ("*^", "*v", "*+", "*x") for c in cols):
                raise KernUnsupportedError(f"{path}:{ln}: spine manipulation")
            if any(c.startswith("*MM") for c in cols):
                raise KernUnsupportedError(f"{path}:{ln}: tempo mark")
            continue
        if line.startswith("="):
            continue
        for i, tok in enumerate(cols):
            if tok == ".":
                continue
            m = _KERN_TOKEN.match(tok)
            if m is None:
                raise KernUnsupportedError(f"{path}:{ln}: token {tok!r}")
            tie_start, num, dots, name, acc, tie_end = m.groups()
            n = int(num)
            ql = 8.0 if n == 0 else 4.0 / n
            add = ql
            for _ in dots:
                add /= 2
                ql += add
            on, end = pos[i], pos[i] + ql
            pos[i] = end
            if name == "r":
                continue
            octave = 4 + (len(name) - 1) if name[0].islower() else 3 - (len(name) - 1)
            pitch = 12 * (octave + 1) + LETTER_STEPS[name[0].upper()] + acc.count("#") - acc.count("-")
            tie = open_ties[i]
            if tie_start:
                open_ties[i] = (pitch, on)
            elif tie_end in ("_", "]") and tie is not None and tie[0] == pitch:
                if tie_end == "]":
                    emit(i, pitch, tie[1], end)
                    open_ties[i] = None
            else:
                emit(i, pitch, on, end)
    for i, tie in enumerate(open_ties):
        if tie is not None:
            emit(i, tie[0], tie[1], pos[i])
    return Score(notes=notes, source=str(path))


def _parse_music21(item: tuple[str, str, str]) -> list[tuple[str, np.ndarray]]:
    name, path, source = item
    if path.endswith(".krn"):
        try:
            return [(name, score_to_notes(read_kern(path)))]
        except KernUnsupportedError as err:
            log.debug("%s; parsing with music21", err)
    from music21 import converter, stream

    try:
        obj = converter.parse(path)
    except Exception as err:  # noqa: BLE001 - a bad corpus file is skipped, not fatal
        log.warning("%s: cannot parse: %s", path, err)
        return []
    if isinstance(obj, stream.Opus):  # e.g. Essen/Ryan's: several tunes in one file
        out = []
        for i, sc in enumerate(obj.scores):
            nm = name[:-4] + f"__{i}.mid"
            out.append((nm, score_to_notes(music21_to_score(sc, source=nm))))
        return out
    return [(name, score_to_notes(music21_to_score(obj, source=name)))]


# ---------------------------------------------------------------- MIDI folders


def read_midi_notes(path: Path, fast: bool = False) -> np.ndarray:
    """One MIDI file -> notes array; symusic when ``fast`` and installed, else mido."""
    if fast:
        try:
            import symusic
        except ImportError:
            fast = False
    if fast:
        try:
            sc = symusic.Score(str(path), ttype="second")
        except Exception as err:  # noqa: BLE001
            raise MidiFileError(f"{path}: cannot parse MIDI: {err}", path=str(path)) from err
        rows = []
        for tr in sc.tracks:
            if tr.is_drum:
                continue
            a = tr.notes.numpy()
            rows.append(np.stack([a["pitch"].astype(np.int64), np.round(a["time"] * 1e6).astype(np.int64),
                                  np.maximum(1, np.round(a["duration"] * 1e6)).astype(np.int64),
                                  a["velocity"].astype(np.int64)], axis=1))
        arr = np.concatenate(rows) if rows else np.zeros((0, 4), np.int64)
        return arr[np.lexsort((arr[:, 0], arr[:, 1]))]
    from ..midi import read_midi

    sc = read_midi(path)
    return score_to_notes(Score(notes=[n for n in sc.notes if n.channel != 9], source=str(path)))


def midi_files(folder: Path) -> list[tuple[str, Path]]:
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder of MIDI files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    if not files:
        raise UsageError(f"{folder}: no .mid/.midi files found")
    return [(piece_name(p.relative_to(folder)), p) for p in files]


def _parse_midi(item: tuple[str, str, str]) -> list[tuple[str, np.ndarray]]:
    name, path, fast = item
    try:
        return [(name, read_midi_notes(Path(path), fast=fast == "fast"))]
    except MidiFileError as err:
        log.warning("skipping %s", err)
        return []


# ---------------------------------------------------------------- cache


@dataclass(slots=True)
class IngestStats:
    files: int = 0
    pieces: int = 0
    notes: int = 0
    seconds: float = 0.0

    @property
    def notes_per_s(self) -> float:
        return self.notes / self.seconds if self.seconds > 0 else 0.0


def parse_sources(spec: str) -> list[tuple[str, str]]:
    """``music21:bach,palestrina`` or ``midi:FOLDER`` (or a bare folder), several joined
    by ``+`` -> ``[(kind, arg)]``."""
    out: list[tuple[str, str]] = []
    for part in spec.split("+"):
        part = part.strip()
        if part.startswith("music21:"):
            for c in part[len("music21:"):].split(","):
                if c.strip():
                    out.append(("music21", c.strip()))
        elif part.startswith("tokens:"):
            out.append(("tokens", part[len("tokens:"):]))
        elif part.startswith("asap:"):
            out.append(("asap", part[len("asap:"):]))
        elif part.startswith("midi:"):
            out.append(("midi", part[len("midi:"):]))
        elif part:
            out.append(("midi", part))
    if not out:
        raise UsageError(f"--corpus {spec!r}: give music21:NAME[,NAME], midi:FOLDER or asap:FOLDER")
    return out


def _cache_path(cache_dir: Path, kind: str, arg: str) -> Path:
    key = arg if kind == "music21" else str(Path(arg).resolve())
    if kind == "asap":
        from .asap import ASAP_CACHE_VERSION

        key += f":{ASAP_CACHE_VERSION}"
    h = hashlib.sha1(f"{kind}:{key}:{CACHE_VERSION}:{tk.TOKENIZER_VERSION}".encode()).hexdigest()[:10]
    stem = arg if kind == "music21" else Path(arg).name or "midi"
    return cache_dir / f"{kind}-{stem}-{h}.npz"


def _save(path: Path, pieces: list[Piece]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    note_len = np.array([len(p.notes) for p in pieces], np.int64)
    tok_len = np.array([len(p.tokens) for p in pieces], np.int64)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            names=np.array([p.name for p in pieces]),
            sources=np.array([p.source for p in pieces]),
            note_len=note_len,
            tok_len=tok_len,
            notes=np.concatenate([p.notes for p in pieces]) if pieces else np.zeros((0, 4), np.int64),
            tokens=np.concatenate([p.tokens for p in pieces]) if pieces else np.zeros(0, np.int16),
            tokenizer=np.array(tk.TOKENIZER_VERSION),
        )


def _load(path: Path) -> list[Piece]:
    with np.load(path) as z:
        if str(z["tokenizer"]) != tk.TOKENIZER_VERSION:
            raise ModelError(f"{path}: cache made by tokenizer {z['tokenizer']}, "
                             f"need {tk.TOKENIZER_VERSION}; delete it to rebuild")
        names, sources = z["names"], z["sources"]
        ne = np.cumsum(np.r_[0, z["note_len"]])
        te = np.cumsum(np.r_[0, z["tok_len"]])
        notes, toks = z["notes"], z["tokens"]
        return [Piece(str(names[i]), str(sources[i]), notes[ne[i]:ne[i + 1]], toks[te[i]:te[i + 1]])
                for i in range(len(names))]


def ingest(kind: str, arg: str, jobs: int = 1, fast: bool = True,
           progress: Callable[[float], None] | None = None) -> tuple[list[Piece], IngestStats]:
    """Parse one source (no cache): music21 composer folder or MIDI folder."""
    if kind == "music21":
        items = [(n, str(p), arg) for n, p in music21_files(arg)]
        fn = _parse_music21
    elif kind == "midi":
        items = [(n, str(p), "fast" if fast else "mido") for n, p in midi_files(Path(arg))]
        fn = _parse_midi
    elif kind == "asap":
        return _ingest_asap(arg, progress)
    else:
        raise UsageError(f"unknown corpus kind {kind!r} (allowed: music21, midi, asap)")
    t0 = time.perf_counter()
    results: list[list[tuple[str, np.ndarray]]] = []
    if jobs > 1 and len(items) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(jobs) as pool:
            for i, r in enumerate(pool.imap(fn, items, chunksize=4)):
                results.append(r)
                if progress:
                    progress((i + 1) / len(items))
    else:
        for i, it in enumerate(items):
            results.append(fn(it))
            if progress:
                progress((i + 1) / len(items))
    dt = time.perf_counter() - t0
    pieces: list[Piece] = []
    for r in results:
        for name, notes in r:
            if len(notes) == 0:
                continue
            toks = np.array(tk.encode(notes_to_score(notes)), dtype=np.int16)
            pieces.append(Piece(name, f"{kind}:{arg}", notes, toks))
    stats = IngestStats(files=len(items), pieces=len(pieces),
                        notes=sum(len(p.notes) for p in pieces), seconds=dt)
    log.info("%s:%s: %d files, %d pieces, %d notes in %.1fs (%.0f notes/s)", kind, arg,
             stats.files, stats.pieces, stats.notes, dt, stats.notes_per_s)
    return pieces, stats


def _ingest_asap(root: str, progress: Callable[[float], None] | None) -> tuple[list[Piece], IngestStats]:
    """ASAP performances (velocities, pedal, exact timing) as pieces named
    ``FOLDER/PERFORMANCE.mid``; the split follows the folder (see :mod:`asap`)."""
    from .asap import load_asap

    t0 = time.perf_counter()
    c = load_asap(root, progress=(lambda i, n: progress(i / n)) if progress else None)
    pieces = []
    for p in c.performances:
        toks = np.array(tk.encode(p.performance_score()), dtype=np.int16)
        pieces.append(Piece(f"{p.folder}/{p.name}.mid", f"asap:{root}", p.played, toks))
    dt = time.perf_counter() - t0
    stats = IngestStats(files=len(c.performances), pieces=len(pieces),
                        notes=sum(len(p.notes) for p in pieces), seconds=dt)
    log.info("asap:%s: %d performances, %d notes, alignment rate %.3f (%d without an alignment)",
             root, stats.pieces, stats.notes, c.alignment_rate(), c.missing_match)
    return pieces, stats


def load_corpus(spec: str, cache_dir: str | Path = "cache", jobs: int = 1, rebuild: bool = False,
                progress: Callable[[float], None] | None = None) -> list[Piece]:
    """All pieces of a ``--corpus`` spec, parsed once and cached under ``cache_dir``."""
    cache = Path(cache_dir)
    pieces: list[Piece] = []
    for kind, arg in parse_sources(spec):
        if kind == "tokens":
            pieces.extend(load_packed(arg))
            continue
        path = _cache_path(cache, kind, arg)
        if path.exists() and not rebuild:
            pieces.extend(_load(path))
            continue
        got, _ = ingest(kind, arg, jobs=jobs, progress=progress)
        _save(path, got)
        pieces.extend(got)
    return pieces


def pack_tokens(pieces: Sequence[Piece], path: str | Path) -> None:
    """Token arrays only, compressed (``--corpus tokens:FILE``): what a GPU run needs, small
    enough to carry (ASAP: 18 M tokens in ~20 MB), without the data set itself."""
    with atomic_path(Path(path), suffix=".npz") as tmp:
        np.savez_compressed(tmp, names=np.array([p.name for p in pieces]),
                            sources=np.array([p.source for p in pieces]),
                            tok_len=np.array([len(p.tokens) for p in pieces], np.int64),
                            tokens=np.concatenate([p.tokens for p in pieces]).astype(np.int16),
                            tokenizer=np.array(tk.TOKENIZER_VERSION))


def load_packed(path: str | Path) -> list[Piece]:
    """Pieces of a :func:`pack_tokens` file (tokens, no note arrays)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--corpus tokens:{path}: no such file")
    with np.load(path) as z:
        if str(z["tokenizer"]) != tk.TOKENIZER_VERSION:
            raise ModelError(f"{path}: packed by tokenizer {z['tokenizer']}, need {tk.TOKENIZER_VERSION}")
        te = np.cumsum(np.r_[0, z["tok_len"]])
        toks, names, sources = z["tokens"], z["names"], z["sources"]
        empty = np.zeros((0, 4), np.int64)
        return [Piece(str(names[i]), str(sources[i]), empty, toks[te[i]:te[i + 1]]) for i in range(len(names))]


def by_split(pieces: Iterable[Piece]) -> dict[str, list[Piece]]:
    out: dict[str, list[Piece]] = {s: [] for s in SPLITS}
    for p in pieces:
        out[p.split].append(p)
    return out


def augment(piece: Piece, transpose: Sequence[int] = (-3, -2, -1, 0, 1, 2, 3),
            stretch: Sequence[float] = (0.95, 1.0, 1.05)) -> list[np.ndarray]:
    """Token arrays of a piece under every transposition x tempo stretch (train only).

    Transpositions that push a note outside 0..127 are skipped.
    """
    out: list[np.ndarray] = []
    for f in stretch:
        base = piece.tokens if f == 1.0 else np.array(
            tk.encode(tk.stretch_score(piece.score(), f)), dtype=np.int16)
        for k in transpose:
            t = tk.transpose_tokens(base, k)
            if t is not None:
                out.append(t)
    return out

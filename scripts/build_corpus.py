"""Parse a corpus once and cache it as token arrays under cache/ (prints notes/s).

    .venv/bin/python scripts/build_corpus.py music21:bach,palestrina --jobs 2
    .venv/bin/python scripts/build_corpus.py midi:~/maestro-v3.0.0
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from robo_player.model import corpus
from robo_player.progress import Progress


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", help="music21:NAME[,NAME...] or midi:FOLDER, joined by +")
    ap.add_argument("--cache", default="cache", help="cache folder (default cache/)")
    ap.add_argument("--jobs", type=int, default=1, help="parser processes (default 1)")
    ap.add_argument("--rebuild", action="store_true", help="parse again even when cached")
    ap.add_argument("--mido", action="store_true", help="MIDI folders: parse with mido, not symusic")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("music21").setLevel(logging.ERROR)
    total = corpus.IngestStats()
    for kind, arg in corpus.parse_sources(args.spec):
        path = corpus._cache_path(Path(args.cache), kind, arg)
        if path.exists() and not args.rebuild:
            print(f"{kind}:{arg}: cached in {path}")
            continue
        prog = Progress(f"{kind}:{arg}"[:14])
        pieces, st = corpus.ingest(kind, arg, jobs=args.jobs, fast=not args.mido, progress=prog)
        prog.done()
        corpus._save(path, pieces)
        splits = corpus.by_split(pieces)
        print(f"{kind}:{arg}: {st.files} files, {st.pieces} pieces, {st.notes} notes, "
              f"{sum(len(p.tokens) for p in pieces)} tokens in {st.seconds:.1f}s = "
              f"{st.notes_per_s:,.0f} notes/s; split "
              + " ".join(f"{k}={len(v)}" for k, v in splits.items()) + f" -> {path}")
        total.files += st.files
        total.pieces += st.pieces
        total.notes += st.notes
        total.seconds += st.seconds
    if total.files:
        print(f"total: {total.pieces} pieces, {total.notes} notes, {total.notes_per_s:,.0f} notes/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Excerpts of ASAP performances for tests (the corpus is CC BY-NC-SA 4.0: see
``../shared/data/asap/SOURCE.md``; credited in docs/model.md). A test that needs one reads it
at run time from the corpus where it lies (``ROBO_PLAYER_ASAP``, else ``../shared/data/asap``
beside the repository, else ``/work/shared/data/asap``) and is skipped where the corpus is
not on the machine: no note of it is copied into the repository."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from robo_player.midi import read_midi
from robo_player.score import Score

_REPO = Path(__file__).resolve().parents[1]


def asap_root() -> Path | None:
    """The ASAP corpus's folder on this machine, or None."""
    for c in (os.environ.get("ROBO_PLAYER_ASAP"), _REPO.parent / "shared" / "data" / "asap",
              "/work/shared/data/asap"):
        if c and Path(c).is_dir():
            return Path(c)
    return None


def asap_excerpt(rel: str, seconds: float, start_s: float) -> Score:
    """``seconds`` of the ASAP performance ``rel`` (a MIDI file's path in the corpus) from
    ``start_s`` after its first note, as the detector bench crops its rows
    (``bench/detector_takes.py`` ``crop``); skips the test where the corpus is absent."""
    root = asap_root()
    if root is None or not (root / rel).is_file():
        pytest.skip(f"the ASAP corpus's {rel} is not on this machine (ROBO_PLAYER_ASAP)")
    bench = str(_REPO / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    from detector_takes import crop

    return crop(read_midi(root / rel), seconds, start_s)

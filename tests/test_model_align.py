"""A user's own score/performance pair: parangonar aligns it note by note (checked against
the pairing the test made), and `train --arch render --corpus pair:SCORE,PERF` trains on it.
Skipped where the `align` extra (parangonar, partitura) is not installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robo_player.errors import UsageError
from robo_player.midi import write_midi
from robo_player.model.align import parse_pairs
from robo_player.score import Note, PedalEvent, Score

pytest.importorskip("parangonar")
pytest.importorskip("partitura")

from robo_player.model.align import align_pair  # noqa: E402

DROPPED = 13  # the score note the "pianist" leaves out


def make_pair(tmp_path: Path) -> tuple[Path, Path, dict[tuple[float, int], int]]:
    """A 4/4 score at 120 bpm (eighth-note melody over quarter-note bass, 8 bars) and a
    performance of it: slower and drifting, 8 ms jitter, each note its own velocity, one
    note left out, one wrong note added, the pedal in bars 3-4. Returns the files and the
    velocity each score note (onset in quarters, pitch) was played with."""
    rng = np.random.default_rng(0)
    scale = [60, 62, 64, 65, 67, 69, 71, 72, 74, 72, 71, 69, 67, 65, 64, 62]
    rows = []
    for b in range(8):
        for k in range(8):
            rows.append((b * 4 + k * 0.5, scale[(b * 3 + k) % len(scale)] + (b % 2) * 2, 0.5))
        for k in range(4):
            rows.append((b * 4 + k, [48, 43, 45, 41][(b + k) % 4], 1.0))
    rows.sort()
    score = Score(notes=[Note(p, round(q * 500_000), round(d * 500_000) - 10_000, 80) for q, p, d in rows])
    expected: dict[tuple[float, int], int] = {}
    notes = []
    for i, (q, p, d) in enumerate(rows):
        if i == DROPPED:
            continue
        t = q * 0.55 + 0.002 * q * q + rng.normal(0, 0.008)  # slower, and slowing down
        v = int(rng.integers(30, 110))
        notes.append(Note(p, round(t * 1e6), round(d * 0.5 * 1e6), v))
        expected[(q, p)] = v
    notes.append(Note(95, round(10.3 * 1e6), 100_000, 50))  # a wrong note
    perf = Score(notes=notes, pedal=[PedalEvent(round(8 * 0.55e6), 127), PedalEvent(round(16 * 0.6e6), 0)])
    s_path, p_path = tmp_path / "score.mid", tmp_path / "played.mid"
    write_midi(score, s_path)
    write_midi(perf, p_path)
    return s_path, p_path, expected


def test_pair_is_aligned_note_by_note(tmp_path: Path) -> None:
    s_path, p_path, expected = make_pair(tmp_path)
    perf, rate = align_pair(s_path, p_path)
    assert len(perf.pitch) == len(expected) + 1
    played = perf.p_vel >= 0
    got = {(float(q), int(p)): int(v) for q, p, v in zip(perf.onset_q, perf.pitch, perf.p_vel, strict=True)
           if v >= 0}
    right = sum(got[k] == expected.get(k) for k in got)
    assert right >= 0.95 * len(expected)  # each score note paired with the note that played it
    assert played.sum() <= len(expected) and rate > 0.9
    assert len(perf.pedal) == 2 and perf.pedal[0, 1] == 127
    assert np.all(np.diff(perf.onset_q) >= 0) and np.median(perf.bar_len_q) == 4.0  # (the last bar ends early)


def test_train_render_on_a_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    from robo_player.cli import main
    from robo_player.model import render_net as rn

    s_path, p_path, _ = make_pair(tmp_path)
    out = tmp_path / "mine.pt"
    rc = main(["train", "--arch", "render", "--corpus", f"pair:{s_path},{p_path}", "--out", str(out),
               "--epochs", "2", "--threads", "1", "--seq-len", "64"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "alignment rate" in err
    model, meta = rn.load(out)
    assert meta["corpus"].startswith("own score/performance pairs") and meta["train_performances"] == 1


def test_pair_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="give two files"):
        parse_pairs("pair:only.mid")
    with pytest.raises(UsageError, match="no such file"):
        parse_pairs(f"pair:{tmp_path / 'a.mid'},{tmp_path / 'b.mid'}")
    with pytest.raises(UsageError, match="is not pair:"):
        parse_pairs("asap:/x+pair:a,b")

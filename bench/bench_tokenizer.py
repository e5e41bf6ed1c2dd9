"""Our performance-event tokenizer vs miditok's MIDILike: throughput and round-trip fidelity.

    .venv/bin/python bench/bench_tokenizer.py [--pieces 60]

Data: the bundled pieces, plus corpus pieces (test split of the cached music21 corpus,
written to MIDI) both plain and rendered expressively (robo-player perform: ~10 ms 1/f
timing deviations and varied velocities), because expressive timing is what a
beat-grid tokenizer loses. Fidelity compares decoded notes with the originals in
seconds: onset error, duration error, velocity error, and the share of notes whose
onset comes back within 5 ms (half our 10 ms step). Needs miditok + symusic in the venv (bench only).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from robo_player.midi import bundled_pieces, read_midi, write_midi
from robo_player.model import corpus
from robo_player.model import tokenizer as tk
from robo_player.model.render import RenderRules, perform
from robo_player.score import Score


def _notes(score: Score) -> np.ndarray:
    return np.array(
        sorted((n.onset_us / 1e6, n.pitch, n.duration_us / 1e6, n.velocity) for n in score.notes)
    )


def _fidelity(orig: list[np.ndarray], back: list[np.ndarray]) -> dict[str, float]:
    """Each original note is matched to the decoded note of its pitch with the nearest onset."""
    on, du, ve, lost, total = [], [], [], 0, 0
    for a, b in zip(orig, back, strict=True):
        total += len(a)
        for p in np.unique(a[:, 1]):
            aa = a[a[:, 1] == p]
            bb = b[b[:, 1] == p] if len(b) else np.zeros((0, 4))
            lost += max(0, len(aa) - len(bb))
            if not len(bb):
                continue
            j = np.clip(np.searchsorted(bb[:, 0], aa[:, 0]), 1, max(1, len(bb) - 1))
            j = np.where(
                np.abs(bb[j - 1, 0] - aa[:, 0])
                <= np.abs(bb[np.minimum(j, len(bb) - 1), 0] - aa[:, 0]),
                j - 1,
                np.minimum(j, len(bb) - 1),
            )
            on.append(np.abs(aa[:, 0] - bb[j, 0]))
            du.append(np.abs(aa[:, 2] - bb[j, 2]))
            ve.append(np.abs(aa[:, 3] - bb[j, 3]))
    o, d, v = (np.concatenate(x) for x in (on, du, ve))
    return {
        "notes": total,
        "lost": lost,
        "onset_mean_ms": 1e3 * o.mean(),
        "onset_max_ms": 1e3 * o.max(),
        "within_10ms": float((o <= 0.005 + 1e-9).mean()),
        "dur_mean_ms": 1e3 * d.mean(),
        "vel_mean": v.mean(),
    }


def _count_ids(x: object) -> int:
    from miditok import TokSequence

    if isinstance(x, TokSequence):
        return len(x.ids or x.tokens or [])
    if isinstance(x, list):
        return sum(_count_ids(y) for y in x)
    raise TypeError(f"{type(x)}: {str(x)[:80]}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pieces", type=int, default=60, help="corpus test pieces to add")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import symusic
    from miditok import MIDILike, TokenizerConfig

    pieces = corpus.load_corpus("music21:bach,palestrina")
    test = corpus.by_split(pieces)["test"][: args.pieces]
    tmp = Path(tempfile.mkdtemp(prefix="bench_tok_"))
    files: dict[str, list[Path]] = {"plain": [], "expressive": []}
    for p in bundled_pieces():
        files["plain"].append(p)
    for i, p in enumerate(test):
        sc = p.score()
        f = tmp / f"plain_{i}.mid"
        write_midi(sc, f)
        files["plain"].append(f)
        g = tmp / f"expr_{i}.mid"
        write_midi(perform(sc, RenderRules(seed=i)), g)
        files["expressive"].append(g)
    ours_notes_total = 0
    # parsing (ingestion) speed: mido (read_midi) vs symusic
    allf = files["plain"] + files["expressive"]
    t = time.perf_counter()
    scores = [read_midi(f) for f in allf]
    t_mido = time.perf_counter() - t
    t = time.perf_counter()
    _ = [symusic.Score(str(f)) for f in allf]
    t_sym = time.perf_counter() - t
    n_notes = sum(len(s.notes) for s in scores)
    print(f"files: {len(allf)}, notes: {n_notes}")
    print(
        f"parse   mido/read_midi {n_notes / t_mido:12,.0f} notes/s   symusic {n_notes / t_sym:12,.0f} notes/s"
        f"   ratio {t_mido / t_sym:.0f}x"
    )

    cfg = TokenizerConfig(num_velocities=32, use_sustain_pedals=True, use_tempos=True)
    mt = MIDILike(cfg)
    print(f"vocab   ours {tk.VOCAB_SIZE}   miditok MIDILike {len(mt)}")
    print(
        f"{'set':11s} {'tokenizer':9s} {'tok/note':>8s} {'enc notes/s':>12s} {'dec notes/s':>12s} "
        f"{'lost':>5s} {'onset ms':>9s} {'max ms':>7s} {'<=5ms':>7s} {'dur ms':>7s} {'vel':>5s}"
    )
    for kind, fl in files.items():
        sc_list = [read_midi(f) for f in fl]
        sy_list = [symusic.Score(str(f)) for f in fl]
        notes = sum(len(s.notes) for s in sc_list)
        ours_notes_total += notes
        orig = [_notes(s) for s in sc_list]
        # ours
        t = time.perf_counter()
        for _ in range(args.repeat):
            toks = [tk.encode(s) for s in sc_list]
        t_enc = (time.perf_counter() - t) / args.repeat
        t = time.perf_counter()
        for _ in range(args.repeat):
            back = [tk.decode(x) for x in toks]
        t_dec = (time.perf_counter() - t) / args.repeat
        fid = _fidelity(orig, [_notes(b) for b in back])
        ntok = sum(len(x) for x in toks)
        _row(kind, "ours", ntok / notes, notes / t_enc, notes / t_dec, fid)
        # miditok MIDILike
        t = time.perf_counter()
        for _ in range(args.repeat):
            mtoks = [mt.encode(s) for s in sy_list]
        ntok = sum(_count_ids(x) for x in mtoks)  # before decode, which may rewrite them
        t_enc = (time.perf_counter() - t) / args.repeat
        t = time.perf_counter()
        for _ in range(args.repeat):
            mback = [mt.decode(x) for x in mtoks]
        t_dec = (time.perf_counter() - t) / args.repeat
        back_notes = []
        for b in mback:
            bs = b.to("second")
            rows = [(n.time, n.pitch, n.duration, n.velocity) for tr in bs.tracks for n in tr.notes]
            back_notes.append(np.array(sorted(rows)) if rows else np.zeros((0, 4)))
        fid = _fidelity(orig, back_notes)
        _row(kind, "MIDILike", ntok / notes, notes / t_enc, notes / t_dec, fid)
    return 0


def _row(kind: str, name: str, tpn: float, enc: float, dec: float, f: dict[str, float]) -> None:
    print(
        f"{kind:11s} {name:9s} {tpn:8.2f} {enc:12,.0f} {dec:12,.0f} {f['lost']:5d} {f['onset_mean_ms']:9.2f} "
        f"{f['onset_max_ms']:7.1f} {f['within_10ms']:7.1%} {f['dur_mean_ms']:7.1f} {f['vel_mean']:5.2f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""Evaluation: the Kneser-Ney baseline is a proper distribution, NLL bookkeeping, and
the MusPy-style statistics on scores whose values are known."""

from __future__ import annotations

import numpy as np
import pytest

from robo_player.model import tokenizer as tk
from robo_player.model.evaluate import (
    KneserNey,
    ioi_histogram,
    js_divergence,
    pitch_class_entropy,
    polyphony,
    sample_statistics,
    scale_consistency,
)
from robo_player.score import Note, Score


def test_kneser_ney_sums_to_one_and_learns() -> None:
    rng = np.random.default_rng(0)
    seqs = [np.tile([1, 5, 9, 5], 50) + rng.integers(0, 2, 200) for _ in range(4)]
    kn = KneserNey(order=4).fit(seqs)
    for ctx in ([1, 5, 9], [400 - 11, 3, 3], []):  # seen, unseen, empty context
        total = sum(np.exp(kn.log_probs(np.array(ctx + [w]))[-1]) for w in range(tk.VOCAB_SIZE))
        assert total == pytest.approx(1.0, abs=1e-9)
    nll = kn.nll([np.tile([1, 5, 9, 5], 20)])
    assert nll.per_event < 1.0 < np.log(tk.VOCAB_SIZE)
    assert nll.events == 80 and nll.notes == 80  # ids < 128 are NOTE_ON events


def test_ngram_order_bounds() -> None:
    with pytest.raises(ValueError, match="order 8 out of range"):
        KneserNey(order=8)


def test_statistics_on_known_scores() -> None:
    c_major = [60, 62, 64, 65, 67, 69, 71]
    scale = Score(notes=[Note(p, i * 500_000, 400_000, 64) for i, p in enumerate(c_major)])
    assert pitch_class_entropy(scale) == pytest.approx(np.log2(7))
    assert scale_consistency(scale) == 1.0
    assert polyphony(scale) == pytest.approx(1.0)
    chord = Score(notes=[Note(p, 0, 1_000_000, 64) for p in (60, 64, 67)])
    assert polyphony(chord) == pytest.approx(3.0)
    chromatic = Score(notes=[Note(60 + i, i * 100_000, 100_000, 64) for i in range(12)])
    assert scale_consistency(chromatic) == pytest.approx(7 / 12)


def test_distances_are_zero_against_itself_and_positive_otherwise() -> None:
    a = [Score(notes=[Note(60 + i % 5, i * 250_000, 200_000, 64) for i in range(40)])]
    b = [Score(notes=[Note(60 + i % 12, i * 100_000, 90_000, 64) for i in range(40)])]
    same = sample_statistics(a, a)
    assert all(v["distance"] == 0 for v in same.values())
    diff = sample_statistics(a, b)
    assert diff["notes_per_s"]["distance"] > 5
    assert diff["ioi_distribution"]["distance"] > 0.9  # disjoint IOI bins
    p = ioi_histogram(a)
    assert p.sum() == pytest.approx(1.0) and js_divergence(p, p) == pytest.approx(0.0, abs=1e-9)


def test_sequence_nll_matches_the_training_loss() -> None:
    torch = pytest.importorskip("torch")
    from robo_player.model.evaluate import sequence_nll
    from robo_player.model.networks import ModelConfig, build_model
    from robo_player.model.train import IGNORE, windows

    torch.manual_seed(0)
    seq = np.random.default_rng(1).integers(0, tk.VOCAB_SIZE, 300)
    for cfg in (ModelConfig(d_model=16, n_layers=1, dropout=0.0),
                ModelConfig(arch="transformer", d_model=16, n_layers=1, n_heads=2, d_ff=32, dropout=0.0,
                            context=512, max_rel=512)):
        m = build_model(cfg).eval()
        x, y, _ = windows([seq], 512)
        with torch.no_grad():
            loss = torch.nn.functional.cross_entropy(m(x).reshape(-1, tk.VOCAB_SIZE), y.reshape(-1),
                                                     ignore_index=IGNORE, reduction="sum")
        assert sequence_nll(m, seq) == pytest.approx(float(loss), rel=1e-4)

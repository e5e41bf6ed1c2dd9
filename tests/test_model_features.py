"""State features (``ModelConfig.features``): the tokenizer's state rows are a function
of the past only, the vectorised and the incremental versions agree, training windows
carry the state of the whole piece, decoders match the batch forward pass, and
``--init-from`` starts a features model at its source model's exact predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player.errors import ModelError
from robo_player.model import tokenizer as tk
from robo_player.score import Note, Score

torch = pytest.importorskip("torch")

from robo_player.model.checkpoint import load_model, save_checkpoint  # noqa: E402
from robo_player.model.evaluate import sequence_nll  # noqa: E402
from robo_player.model.generate import BOS, NumpyLSTM, TorchStepper, generate  # noqa: E402
from robo_player.model.networks import ModelConfig, build_model, codes_for  # noqa: E402
from robo_player.model.train import TrainConfig, init_from, train, windows  # noqa: E402

tokens_st = st.lists(st.integers(0, tk.VOCAB_SIZE - 1), min_size=0, max_size=120)


def _chorale(n_chords: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    notes = []
    for j in range(n_chords):
        root = int(rng.integers(55, 62))
        dur = 500_000 * int(rng.integers(1, 3))
        for iv in (0, 4, 7, 12):
            notes.append(Note(root + iv, j * 500_000, dur, 72))
    return np.array(tk.encode(Score(notes=notes)), np.int16)


def _incremental(tokens: np.ndarray) -> np.ndarray:
    t = tk.StateTracker()
    rows = []
    for tok in tokens:
        rows.append(t.codes())
        t.apply(int(tok))
    return np.array(rows, np.uint8).reshape(-1, tk.N_STATE)


@settings(max_examples=60, deadline=None)
@given(tokens_st)
def test_vectorised_rows_equal_the_incremental_tracker(tokens: list[int]) -> None:
    # any sequence, grammatical or not (double note-ons, orphan note-offs)
    arr = np.array(tokens, np.int64)
    assert np.array_equal(tk.state_codes(arr), _incremental(arr))


@settings(max_examples=40, deadline=None)
@given(tokens_st, tokens_st)
def test_a_row_depends_only_on_the_past(prefix: list[int], tail: list[int]) -> None:
    a = tk.state_codes(prefix + tail)
    b = tk.state_codes(prefix + [tk.TIME_SHIFT + 99] * len(tail))
    assert np.array_equal(a[:len(prefix) + 1] if tail else a, b[:len(prefix) + 1] if tail else b)


def test_rows_say_which_keys_are_down_and_for_how_long() -> None:
    toks = [60, 64, tk.TIME_SHIFT + 49, tk.NOTE_OFF + 60, 67, tk.TIME_SHIFT + 9, tk.NOTE_OFF + 64]
    rows = tk.state_codes(toks)
    assert rows[0, 60] == 0 and rows[0, 128] == 255  # nothing yet
    assert rows[2, 60] == 1 and rows[2, 64] == 1  # both down, 0 steps
    assert rows[3, 60] == 51 and rows[3, 128] == 50  # 50 steps later
    assert rows[4, 60] == 0  # released
    assert rows[5, 67] == 1 and rows[5, 129] == 50  # new onset: the IOI is 50 steps
    assert rows[6, 64] == 61 and rows[6, 67] == 11 and rows[6, 128] == 10


def test_training_windows_carry_the_state_of_the_whole_piece() -> None:
    seq = _chorale()
    x, y, c = windows([seq], 16, codes=True)
    full = tk.state_codes(seq)
    assert c is not None and c.shape == (len(x), 16, tk.N_STATE)
    n = len(seq)
    assert np.array_equal(c.numpy().reshape(-1, tk.N_STATE)[:n], full)
    assert int((c[3, 0, :128] > 0).sum()) > 0  # a mid-piece window starts with keys down
    # what a window from the piece's start computes by itself agrees
    assert torch.equal(codes_for(x[:1]), c[:1])


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_decoders_match_the_batch_forward_pass(arch: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, d_model=32, n_layers=2, n_heads=2, d_ff=64, dropout=0.0,
                      features=True, context=64, max_rel=64)
    m = build_model(cfg).eval()
    with torch.no_grad():  # make the state projection matter
        m.state_enc.proj.weight.normal_(0, 0.5)
    seq = _chorale(6)
    x = torch.tensor([[BOS, *seq[:-1].tolist()]])
    with torch.no_grad():
        ref = m(x)[0].numpy()
        plain = m.head(m.lstm(m.embed(x))[0])[0].numpy() if arch == "lstm" else None
    stepper = NumpyLSTM(m) if arch == "lstm" else TorchStepper(m)
    state = None
    out = []
    for tok in x[0].tolist():
        lg, state = stepper.step(tok, state)
        out.append(lg)
    assert np.abs(np.array(out) - ref).max() < 1e-4
    if plain is not None:
        assert np.abs(plain - ref).max() > 1e-2  # the features do change the logits
    with pytest.raises(ModelError, match="state features"):
        m.step(torch.tensor([60]), None)
    g = generate(m, None, 2.0, seed=3)
    assert tk.check_grammar(g.tokens) == []


def test_windowed_transformer_nll_uses_the_pieces_state() -> None:
    torch.manual_seed(1)
    cfg = ModelConfig(arch="transformer", d_model=32, n_layers=1, n_heads=2, d_ff=64, dropout=0.0,
                      features=True, context=16, max_rel=16)
    m = build_model(cfg).eval()
    with torch.no_grad():
        m.state_enc.proj.weight.normal_(0, 0.5)
    seq = _chorale(8)
    got = sequence_nll(m, seq)
    # reference: each window scored with rows cut from the whole piece's rows
    toks = torch.as_tensor(seq.astype(np.int64))
    inp = torch.cat([torch.tensor([BOS]), toks[:-1]])
    rows = torch.from_numpy(tk.state_codes(seq))
    w, half, n = 16, 8, len(seq)
    starts = list(range(0, n - w, half)) + [n - w]
    total, scored = 0.0, 0
    with torch.no_grad():
        for s in starts:
            lg = m(inp[None, s:s + w], rows[None, s:s + w])[0]
            lo = max(0, scored - s)
            total += float(torch.nn.functional.cross_entropy(lg[lo:], toks[s + lo:s + w], reduction="sum"))
            scored = s + w
    assert got == pytest.approx(total, rel=1e-5)


def test_init_from_starts_at_the_source_models_predictions(tmp_path: Path) -> None:
    torch.manual_seed(2)
    base_cfg = ModelConfig(arch="lstm", d_model=32, n_layers=1, dropout=0.0)
    base = build_model(base_cfg).eval()
    save_checkpoint(tmp_path / "base.pt", base, base_cfg)
    feat = build_model(ModelConfig(arch="lstm", d_model=32, n_layers=1, dropout=0.0, features=True)).eval()
    init_from(feat, tmp_path / "base.pt")
    seq = _chorale(5)
    assert sequence_nll(feat, seq) == pytest.approx(sequence_nll(base, seq), rel=1e-6)
    wide = build_model(ModelConfig(arch="lstm", d_model=48, n_layers=1, features=True))
    with pytest.raises(ModelError, match="do not fit"):
        init_from(wide, tmp_path / "base.pt")


def test_a_features_model_trains_saves_and_loads(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = ModelConfig(arch="lstm", d_model=32, n_layers=1, dropout=0.0, features=True)
    tc = TrainConfig(epochs=2, batch_size=8, seq_len=256, lr=1e-2, warmup_steps=5, transpose=0,
                     stretch=0.0, patience=5, device="cpu", ckpt_minutes=0.0)
    tr = [_chorale(12, s) for s in range(6)]
    va = [_chorale(12, 9)]
    out = tmp_path / "f.pt"
    summary = train(cfg, tc, [[t] for t in tr], va, out, progress=False)
    assert summary["epochs"] == 2
    model, config, _ = load_model(out)
    assert config.features
    nll = sequence_nll(model, va[0]) / len(va[0])
    assert nll == pytest.approx(summary["best_valid_nll_per_event"], rel=1e-4)

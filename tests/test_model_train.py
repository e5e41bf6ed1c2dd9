"""Training: a tiny run lowers the loss, checkpoints resume, DDP runs on CPU with gloo
across 2 processes (torchrun)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from robo_player.midi import write_midi  # noqa: E402
from robo_player.model import corpus  # noqa: E402
from robo_player.model import tokenizer as tk  # noqa: E402
from robo_player.model.checkpoint import read_checkpoint  # noqa: E402
from robo_player.model.networks import ModelConfig, build_model  # noqa: E402
from robo_player.model.train import Dist, TrainConfig, evaluate_windows, train, windows  # noqa: E402
from robo_player.score import Note, Score  # noqa: E402


def _patterned(seed: int, n: int = 12) -> list[np.ndarray]:
    """Pieces made of a repeated arpeggio: easy to learn, so the loss must fall."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        root = int(rng.integers(48, 60))
        notes = [Note(root + (0, 4, 7, 12)[j % 4], j * 200_000, 150_000, 80) for j in range(40)]
        out.append(np.array(tk.encode(Score(notes=notes)), np.int16))
    return out


CFG = ModelConfig(arch="lstm", d_model=32, n_layers=1, dropout=0.0)
TC = TrainConfig(epochs=3, batch_size=8, seq_len=32, lr=1e-2, warmup_steps=5, transpose=0,
                 stretch=0.0, patience=5, device="cpu", ckpt_minutes=0.0)


def test_windows_cover_every_token_once() -> None:
    seqs = [np.arange(10) % 7, np.arange(3)]
    x, y, _ = windows(seqs, 4)
    assert x.shape == (4, 4)
    targets = y[y != -100].tolist()
    assert targets == list(np.arange(10) % 7) + [0, 1, 2]
    assert x[0, 0] == tk.VOCAB_SIZE and x[1, 0] == y[0, -1]  # BOS, then the token before


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_tiny_training_lowers_the_loss(tmp_path: Path, arch: str) -> None:
    torch.set_num_threads(1)
    cfg = ModelConfig(arch=arch, d_model=32, n_layers=1, n_heads=2, d_ff=64, dropout=0.0,
                      context=32, max_rel=32)
    tr, va = _patterned(0), _patterned(1, 4)
    torch.manual_seed(TC.seed)
    before_model = build_model(cfg)
    vx, vy, _ = windows(va, TC.seq_len)
    tot, cnt = evaluate_windows(before_model, vx, vy, 16, Dist())
    before = tot / cnt
    out = tmp_path / "m.pt"
    summary = train(cfg, TC, [[t] for t in tr], va, out, progress=False)
    assert summary["epochs"] == 3
    assert summary["best_valid_nll_per_event"] < 0.6 * before
    meta = read_checkpoint(out)["meta"]
    assert meta["valid_nll_per_event"] == pytest.approx(summary["best_valid_nll_per_event"])


def test_resume_continues_from_the_checkpoint(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    tr, va = _patterned(0), _patterned(1, 4)
    out = tmp_path / "m.pt"
    one = TrainConfig(**{**{f: getattr(TC, f) for f in TC.__slots__}, "epochs": 1})
    train(CFG, one, [[t] for t in tr], va, out, progress=False)
    st = read_checkpoint(out.with_name("m.pt.ckpt"))["train_state"]
    assert st["epoch"] == 1 and st["step"] > 0
    two = TrainConfig(**{**{f: getattr(TC, f) for f in TC.__slots__}, "epochs": 2})
    s2 = train(CFG, two, [[t] for t in tr], va, out, resume=True, progress=False)
    assert s2["epochs"] == 2
    st2 = read_checkpoint(out.with_name("m.pt.ckpt"))["train_state"]
    assert st2["step"] == 2 * st["step"]


def test_resume_without_checkpoint_is_an_error(tmp_path: Path) -> None:
    from robo_player.errors import ModelError

    with pytest.raises(ModelError, match="no checkpoint to resume from"):
        train(CFG, TC, [[_patterned(0, 1)[0]]], [], tmp_path / "x.pt", resume=True, progress=False)


def test_ddp_gloo_two_processes(tmp_path: Path) -> None:
    folder = tmp_path / "midi"
    folder.mkdir()
    for i in range(8):
        notes = [Note(60 + (j * 5 + i) % 12, j * 200_000, 150_000, 80) for j in range(30)]
        write_midi(Score(notes=notes), folder / f"p{i}.mid")
    cache = tmp_path / "cache"
    corpus.load_corpus(f"midi:{folder}", cache_dir=cache)  # parse once, before the ranks start
    out = tmp_path / "ddp.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "robo_player.model.train", "--corpus", f"midi:{folder}", "--cache", str(cache),
           "--arch", "lstm", "--d-model", "16", "--layers", "1", "--epochs", "1", "--seq-len", "32",
           "--batch-size", "4", "--device", "cpu", "--threads", "1", "--quiet", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    if r.returncode != 0 and "Signal 6 (SIGABRT)" in r.stderr:
        # gloo can abort a rank at teardown (seen once in CI, never here in 20 runs);
        # one rerun tells that apart from a training bug, which fails both times
        warnings.warn("DDP run aborted, rerunning once:\n" + r.stderr[:3000], stacklevel=1)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    # the ranks' own messages come first; torchrun's summary of who failed, last
    assert r.returncode == 0, r.stderr[:4000] + "\n...\n" + r.stderr[-1500:]
    meta = read_checkpoint(out)["meta"]
    assert meta["world_size"] == 2
    assert r.stdout.count("epochs=1") == 1  # only rank 0 reports


def test_train_option_defaults_are_the_train_config_defaults() -> None:
    import argparse

    from robo_player.model.cli import add_train_arguments
    from robo_player.model.train import TrainConfig

    p = argparse.ArgumentParser()
    add_train_arguments(p)
    args = p.parse_args(["--out", "x.pt"])
    d = TrainConfig()
    assert (args.epochs, args.batch_size, args.seq_len, args.lr, args.patience) == (
        d.epochs, d.batch_size, d.seq_len, d.lr, d.patience
    )


def test_time_budget_sizes_the_schedule() -> None:
    from robo_player.model.train import budget_epochs

    assert budget_epochs(1, 60.0, 600.0, 30) == 11  # 10 more of 60 s fit in 600 s
    assert budget_epochs(1, 60.0, 590.0, 30) == 10
    assert budget_epochs(1, 60.0, 6000.0, 30) == 30  # never past --epochs
    assert budget_epochs(3, 60.0, -5.0, 30) == 3  # over budget: stop where it is

"""The issue's "Also" items: bounded ``generate --seconds``, JSON without NaN, a finished
``train --resume`` says so, epoch lines without -v, rules keep the tempo on average, and
the subcommands' help shows defaults."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from robo_player.errors import UsageError
from robo_player.model import cli as model_cli
from robo_player.model.render import RenderRules, perform
from robo_player.score import Note, Score


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    model_cli.register(ap.add_subparsers())
    return ap


@pytest.mark.parametrize("seconds", ["inf", "1e9", "nan", "-1"])
def test_generate_refuses_unbounded_seconds_before_work(tmp_path: Path, seconds: str) -> None:
    pytest.importorskip("torch")
    args = _parser().parse_args(["generate", "--seconds", seconds, "--model", str(tmp_path / "none.pt"),
                                 "--out", str(tmp_path / "o.mid")])
    with pytest.raises(UsageError, match=r"--seconds .*: must be a number of seconds in \(0, 3600\]"):
        args.func(args)


def test_json_safe_turns_nan_into_null() -> None:
    out = model_cli._json_safe({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2.5}})
    assert json.loads(json.dumps(out)) == {"a": None, "b": [1.0, None], "c": {"d": 2.5}}
    assert "NaN" not in json.dumps(out)


def test_help_shows_defaults_and_descriptions() -> None:
    ap = _parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("generate", "eval-model"):
        text = sub.choices[name].format_help()
        assert "(default: " in text and "model` extra" in text
    assert "(default: 30.0)" in sub.choices["generate"].format_help()


def _scale(n: int = 64) -> Score:
    rng = np.random.default_rng(0)
    return Score(notes=[Note(60 + int(rng.integers(0, 12)), i * 200_000, 180_000, 70) for i in range(n)]
                 + [Note(48, i * 800_000, 780_000, 70) for i in range(n // 4)])


def test_rules_keep_the_tempo_on_average() -> None:
    s = _scale()
    off = dict(final_ritard=0.0, noise_ms=0.0)
    kept = perform(s, RenderRules(**off))
    assert kept.duration_s == pytest.approx(s.duration_s, rel=0.01)
    free = perform(s, RenderRules(**off, keep_tempo=False))
    assert free.duration_s < 0.97 * s.duration_s  # what the rules did before: shorter pieces
    ritard = perform(s, RenderRules(noise_ms=0.0))
    assert ritard.duration_s > s.duration_s  # the final ritard, when asked, still slows the end


def test_resume_of_a_finished_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    from robo_player.model import tokenizer as tk
    from robo_player.model.networks import ModelConfig
    from robo_player.model.train import TrainConfig, train

    torch.set_num_threads(1)
    seqs = [np.array(tk.encode(Score(notes=[Note(60 + (j % 4) * 4, j * 200_000, 150_000, 80)
                                            for j in range(30)])), np.int16) for _ in range(4)]
    cfg = ModelConfig(arch="lstm", d_model=16, n_layers=1, dropout=0.0)
    tc = TrainConfig(epochs=1, batch_size=4, seq_len=32, lr=1e-2, warmup_steps=2, transpose=0,
                     stretch=0.0, patience=5, device="cpu", ckpt_minutes=0.0)
    out = tmp_path / "m.pt"
    train(cfg, tc, [[t] for t in seqs], seqs[:1], out, progress=False)
    err = capsys.readouterr().err
    assert "epoch 1: train" in err and "nats/event" in err  # printed without -v
    s = train(cfg, tc, [[t] for t in seqs], seqs[:1], out, resume=True, progress=False)
    err = capsys.readouterr().err
    assert s["finished"] is True and "is a finished run" in err and "--init-from" in err
    assert not math.isnan(s["best_valid_nll_per_event"])


def test_one_top_p_default_for_generate_and_the_measured_samples(tmp_path: Path) -> None:
    from robo_player.model.generate import DEFAULT_TOP_P

    ap = _parser()
    gen = ap.parse_args(["generate", "--out", str(tmp_path / "o.mid")])
    ev = ap.parse_args(["eval-model"])
    assert gen.top_p == ev.top_p == DEFAULT_TOP_P == 1.0  # the model's own distribution

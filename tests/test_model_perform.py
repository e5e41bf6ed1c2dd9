"""Model-based expressive rendering (``robo_player.model.perform_model``, ``perform --model``).

The mechanism is checked without torch against a hand-made oracle "model" that knows a
target performance; that a real network adds learnt dynamics is checked by training a
tiny LSTM for a few seconds on synthetic performances whose velocities follow known
rules (high-loud and a phrase arch, plus noise) and rendering a held-out plain score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robo_player.errors import ModelError, UsageError
from robo_player.midi import read_midi, write_midi
from robo_player.model import tokenizer as tk
from robo_player.model.generate import BOS
from robo_player.model.perform_model import ModelRenderOptions, _fork, perform_with_model
from robo_player.score import Note, PedalEvent, Score

STEP = tk.STEP_US


class Oracle:
    """A fake model that puts almost all probability on the next token of ``target``
    while the fed tokens follow it, and is uniform once they leave it."""

    def __init__(self, target: list[int]) -> None:
        self.target = target

    def step(self, tok: int, state: tuple[int, ...] | None) -> tuple[np.ndarray, tuple[int, ...]]:
        hist = () if tok == BOS else (state or ()) + (tok,)
        logits = np.zeros(tk.VOCAB_SIZE)
        n = len(hist)
        if n < len(self.target) and hist == tuple(self.target[:n]):
            logits[self.target[n]] = 12.0
        return logits, hist


class Noise:
    """A fake model with random logits that depend on the fed history only."""

    def step(self, tok: int, state: int | None) -> tuple[np.ndarray, int]:
        h = hash((state, int(tok))) & 0xFFFFFFFF
        return np.random.default_rng(h).standard_normal(tk.VOCAB_SIZE) * 2.0, h


def _staccato_score() -> tuple[Score, list[int]]:
    """Chords and single notes, each ending >= 80 ms before the next onset, a repeated key,
    pedal down at some onsets and up in gaps; returns it and each onset group's step."""
    rng = np.random.default_rng(5)
    notes, pedal, steps = [], [], []
    t = 200_000
    for g in range(24):
        ioi = int(rng.choice([250_000, 400_000]))
        chord = [60 + 2 * (g % 5)] + ([72 + (g % 3), 76] if g % 3 == 0 else [])
        for p in chord:
            notes.append(Note(p, t, ioi - 100_000, 64))
        if g % 4 == 1:
            pedal.append(PedalEvent(t, 127))
            pedal.append(PedalEvent(t + ioi - 60_000, 0))
        steps.append(t // STEP)
        t += ioi
    return Score(notes=notes, pedal=pedal), steps


def _target(score: Score, steps: list[int], seed: int) -> tuple[Score, dict[int, int], list[int]]:
    """The score performed with random bins per note and random shifts (-2..2 steps) per group."""
    rng = np.random.default_rng(seed)
    shift = {s: int(rng.integers(-2, 3)) for s in steps}
    bins: dict[int, int] = {}
    notes = []
    for i, n in enumerate(score.notes):
        bins[i] = int(rng.integers(4, 28))
        notes.append(Note(n.pitch, n.onset_us + shift[n.onset_us // STEP] * STEP, n.duration_us,
                          tk.bin_to_velocity(bins[i])))
    owner = [max(s for s in steps if s <= p.t_us // STEP) for p in score.pedal]
    pedal = [PedalEvent(p.t_us + shift[o] * STEP, p.value) for p, o in zip(score.pedal, owner, strict=True)]
    return Score(notes=notes, pedal=pedal), bins, [shift[s] for s in steps]


def test_an_oracle_model_gets_exactly_its_performance() -> None:
    score, steps = _staccato_score()
    for seed in range(3):
        target, bins, shifts = _target(score, steps, seed)
        r = perform_with_model(score, Oracle(tk.encode(target)), ModelRenderOptions(temperature=0.0))
        assert r.shift_steps == shifts
        assert r.velocity_bins == [bins[i] for i in range(len(score.notes))]
        assert [(n.pitch, n.onset_us, n.duration_us, n.velocity) for n in r.score.notes] == [
            (n.pitch, n.onset_us, n.duration_us, n.velocity) for n in target.notes]
        assert [(p.t_us, p.value) for p in r.score.pedal] == [(p.t_us, p.value) for p in target.pedal]
        assert tk.encode(r.score) == tk.encode(target)


def _tricky_score() -> Score:
    """Legato chords, a key struck again at once, a unison of two voices, off-grid onsets, pedal."""
    notes = [Note(60, 0, 500_000, 64), Note(64, 3_000, 500_000, 64), Note(67, 0, 1_000_000, 64),
             Note(60, 500_000, 250_000, 64), Note(60, 500_000, 250_000, 70, channel=1),
             Note(72, 520_000, 30_000, 64), Note(62, 750_000, 10_000, 64), Note(62, 760_000, 240_000, 64)]
    notes += [Note(48 + (i * 7) % 30, 1_000_000 + i * 120_000, 200_000, 64) for i in range(40)]
    pedal = [PedalEvent(0, 127), PedalEvent(495_000, 0), PedalEvent(505_000, 127), PedalEvent(6_000_000, 0)]
    return Score(notes=notes, pedal=pedal)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_note_kept_in_order_chords_together_durations_kept(seed: int) -> None:
    score = _tricky_score()
    opts = ModelRenderOptions(temperature=1.0, seed=seed, max_shift_ms=30)
    r = perform_with_model(score, Noise(), opts)
    out = r.score.notes
    assert len(out) == len(score.notes)
    assert [n.pitch for n in out] == [n.pitch for n in score.notes]
    assert [n.channel for n in out] == [n.channel for n in score.notes]
    assert all(-3 <= d <= 3 for d in r.shift_steps) and any(r.shift_steps)
    groups = [tk.quantize_us(n.onset_us) for n in score.notes]
    delta = [o.onset_us - n.onset_us for o, n in zip(out, score.notes, strict=True)]
    for i in range(1, len(out)):
        assert out[i].onset_us >= out[i - 1].onset_us  # never reordered
        if groups[i] == groups[i - 1]:
            assert delta[i] == delta[i - 1]  # a chord moves as one
        else:
            assert tk.quantize_us(out[i].onset_us) > tk.quantize_us(out[i - 1].onset_us)  # never merged
    for o, n in zip(out, score.notes, strict=True):
        assert 1 <= o.duration_us <= n.duration_us
    kept = sum(o.duration_us == n.duration_us for o, n in zip(out, score.notes, strict=True))
    assert kept == len(out) - r.notes_trimmed
    # a note shortened only where it would now run into the next strike of its key
    for i, (o, n) in enumerate(zip(out, score.notes, strict=True)):
        if o.duration_us < n.duration_us:
            nxt = next(j for j in range(i + 1, len(out)) if out[j].pitch == o.pitch)
            assert o.end_us == out[nxt].onset_us
    pedal_t = [p.t_us for p in r.score.pedal]
    assert pedal_t == sorted(pedal_t) and [p.value for p in r.score.pedal] == [p.value for p in score.pedal]
    assert 1 <= min(o.velocity for o in out) and max(o.velocity for o in out) <= 127


def test_deterministic_for_a_seed_and_no_timing_without_max_shift() -> None:
    score = _tricky_score()
    a = perform_with_model(score, Noise(), ModelRenderOptions(seed=7))
    b = perform_with_model(score, Noise(), ModelRenderOptions(seed=7))
    c = perform_with_model(score, Noise(), ModelRenderOptions(seed=8))
    assert a.score.notes == b.score.notes and a.shift_steps == b.shift_steps
    assert a.score.notes != c.score.notes
    flat = perform_with_model(score, Noise(), ModelRenderOptions(seed=7, max_shift_ms=0))
    assert [n.onset_us for n in flat.score.notes] == [n.onset_us for n in score.notes]
    assert [n.duration_us for n in flat.score.notes] == [n.duration_us for n in score.notes]


def test_options_are_bounded() -> None:
    with pytest.raises(UsageError, match=r"--temperature -0.5: out of range \(allowed 0..5\)"):
        ModelRenderOptions(temperature=-0.5)
    with pytest.raises(UsageError, match="--temperature nan"):
        ModelRenderOptions(temperature=float("nan"))
    with pytest.raises(UsageError, match=r"--max-shift-ms 150: out of range \(allowed 0..100\)"):
        ModelRenderOptions(max_shift_ms=150)
    with pytest.raises(ModelError, match="no notes"):
        perform_with_model(Score(source="empty.mid"), Noise())


def test_a_model_with_the_wrong_output_size_is_refused() -> None:
    class Short:
        def step(self, tok: int, state: object) -> tuple[np.ndarray, object]:
            return np.zeros(300), state

    with pytest.raises(ModelError, match=r"logits of shape \(300,\), expected \(390,\)"):
        perform_with_model(_tricky_score(), Short())


# ---------------------------------------------------------------- CLI without torch work


def _main(argv: list[str]) -> int:
    from robo_player.cli import main

    return main(argv)


def test_cli_bad_model_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    src = tmp_path / "plain.mid"
    write_midi(_tricky_score(), src)
    out = tmp_path / "out.mid"
    assert _main(["perform", str(src), "--model", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    assert f"{tmp_path / 'none.pt'}: no such model checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    assert _main(["perform", str(src), "--model", str(bad), "--out", str(out)]) == 2
    assert f"{bad}: corrupt or not a robo_player checkpoint" in capsys.readouterr().err
    assert not out.exists()


def test_cli_refuses_mixed_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "plain.mid"
    write_midi(_tricky_score(), src)
    out = str(tmp_path / "out.mid")
    assert _main(["perform", str(src), "--model", "m.pt", "--k-high-loud", "2", "--out", out]) == 2
    assert "--k-high-loud belong(s) to the rule-based renderer" in capsys.readouterr().err
    assert _main(["perform", str(src), "--temperature", "0.5", "--out", out]) == 2
    assert "--temperature and --max-shift-ms need --model" in capsys.readouterr().err
    assert _main(["perform", str(src), "--model", "m.pt", "--temperature", "9", "--out", out]) == 2
    assert "--temperature 9.0: out of range (allowed 0..5)" in capsys.readouterr().err
    assert _main(["perform", str(src), "--model", "m.pt", "--max-shift-ms", "500", "--out", out]) == 2
    assert "--max-shift-ms 500: out of range (allowed 0..100)" in capsys.readouterr().err
    assert _main(["perform", str(src), "--k-high-loud", "2", "--out", out]) == 0  # rules still work


# ---------------------------------------------------------------- a real (tiny) network


def _true_velocity(pitch: int, pos: float) -> float:
    """The synthetic performer: high-loud (2 units a semitone) and a phrase arch (+-8)."""
    return 64.0 + 2.0 * (pitch - 66) + 16.0 * (np.sin(np.pi * pos) - 0.5)


def _piece(rng: np.random.Generator, expressive: bool) -> tuple[Score, np.ndarray]:
    """Six phrases of eight notes (random-walk melody, 200/300 ms notes), a rest after each;
    with ``expressive`` the velocities follow the rules plus noise (std 3), else all 64."""
    notes, truth = [], []
    t, p = 0, int(rng.integers(55, 70))
    for _ in range(6):
        for j in range(8):
            p = int(np.clip(p + rng.integers(-4, 5), 48, 84))
            ioi = int(rng.choice([200_000, 300_000]))
            v = _true_velocity(p, (j + 0.5) / 8)
            truth.append(v)
            vel = int(np.clip(round(v + rng.normal(0, 3.0)), 1, 127)) if expressive else 64
            notes.append(Note(p, t, ioi - 50_000, vel))
            t += ioi
        t += 400_000
    return Score(notes=notes), np.array(truth)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    from robo_player.model.networks import ModelConfig
    from robo_player.model.train import TrainConfig, train

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    tr = [np.array(tk.encode(_piece(rng, True)[0]), np.int16) for _ in range(40)]
    va = [np.array(tk.encode(_piece(rng, True)[0]), np.int16) for _ in range(4)]
    cfg = ModelConfig(arch="lstm", d_model=64, n_layers=1, dropout=0.0)
    tc = TrainConfig(epochs=25, batch_size=16, seq_len=64, lr=1e-2, warmup_steps=5, transpose=0,
                     stretch=0.0, patience=50, device="cpu", ckpt_minutes=0.0)
    out = tmp_path_factory.mktemp("perform_model") / "tiny.pt"
    train(cfg, tc, [[t] for t in tr], va, out, progress=False)
    return out


def test_a_trained_model_recovers_the_dynamics_it_learnt(tiny_model: Path) -> None:
    from robo_player.model.checkpoint import load_model

    model, _, _ = load_model(tiny_model)
    rng = np.random.default_rng(99)
    corrs, mae, flat_mae = [], [], []
    for _ in range(3):
        score, truth = _piece(rng, expressive=False)  # held out, flat velocities
        r = perform_with_model(score, model, ModelRenderOptions(temperature=0.0))
        v = np.array([n.velocity for n in r.score.notes], float)
        corrs.append(np.corrcoef(v, truth)[0, 1])
        mae.append(np.abs(v - truth).mean())
        flat_mae.append(np.abs(truth - np.median(truth)).mean())  # the best any constant can do
        assert r.shift_steps == [0] * len(r.shift_steps)  # it learnt on-grid timing: nothing moves
    # a flat rendering correlates 0 with the truth; the model follows high-loud and the arch
    assert np.mean(corrs) > 0.5, corrs
    assert np.mean(mae) < 0.85 * np.mean(flat_mae), (mae, flat_mae)


def test_cli_with_a_model_is_deterministic(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "plain.mid"
    score, _ = _piece(np.random.default_rng(3), expressive=False)
    write_midi(score, src)
    outs = []
    for i in range(2):
        out = tmp_path / f"o{i}.mid"
        assert _main(["perform", str(src), "--model", str(tiny_model), "--seed", "4",
                      "--temperature", "1", "--out", str(out)]) == 0
        outs.append(read_midi(out).notes)
    assert outs[0] == outs[1]
    assert len(outs[0]) == len(score.notes)
    assert len({n.velocity for n in outs[0]}) > 3  # dynamics, not one flat velocity


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_features_and_transformer_models_render_deterministically(arch: str) -> None:
    torch = pytest.importorskip("torch")
    from robo_player.model.generate import stepper_for
    from robo_player.model.networks import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                                    dropout=0.0, features=True, context=64, max_rel=64)).eval()
    score = Score(notes=[Note(60 + i % 5, i * 150_000, 120_000, 64) for i in range(12)])
    a = perform_with_model(score, model, ModelRenderOptions(seed=1))
    b = perform_with_model(score, model, ModelRenderOptions(seed=1))
    assert a.score.notes == b.score.notes
    # scoring branches must not disturb the state they start from (the tracker is mutable)
    st = stepper_for(model)
    _, s0 = st.step(BOS, None)
    _, s1 = st.step(tk.NOTE_ON + 60, s0)
    ref = st.step(tk.TIME_SHIFT + 9, _fork(s1))[0]
    st.step(tk.TIME_SHIFT + 50, _fork(s1))
    st.step(tk.NOTE_OFF + 60, _fork(s1))
    assert np.allclose(st.step(tk.TIME_SHIFT + 9, _fork(s1))[0], ref)

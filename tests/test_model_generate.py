"""Constrained decoding: every generated note plays unaltered on both shipped specs, the
grammar is valid, primers are checked, sampling is deterministic per seed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from robo_player.errors import ModelError  # noqa: E402
from robo_player.model import tokenizer as tk  # noqa: E402
from robo_player.model.generate import (  # noqa: E402
    BOS,
    HardwareMask,
    NumpyLSTM,
    _sample,
    _sample_checked,
    generate,
    parse_primer,
    primer_tokens,
)
from robo_player.model.networks import ModelConfig, build_model  # noqa: E402
from robo_player.planner import plan_piano  # noqa: E402
from robo_player.spec.loader import load_spec  # noqa: E402

SPECS = ["piano-88-grand", "piano-61-diy"]


class Dense:
    """A stand-in network whose logits ask for dense, loud, fast-repeating playing across
    the whole keyboard, soft velocities and pedal: the worst case for the mask."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def step(self, tok: int, state: object) -> tuple[np.ndarray, object]:
        logits = self.rng.normal(0.0, 1.0, tk.VOCAB_SIZE)
        logits[tk.NOTE_ON + 50:tk.NOTE_ON + 70] += 3.0
        logits[tk.NOTE_ON:tk.NOTE_ON + 36] += 1.5  # below the 61-key range
        logits[tk.NOTE_ON + 100:tk.NOTE_OFF] += 1.5  # above both ranges
        logits[tk.TIME_SHIFT:tk.TIME_SHIFT + 4] += 2.5
        logits[tk.NOTE_OFF:tk.TIME_SHIFT] += 1.0
        logits[tk.VELOCITY:tk.VELOCITY + 4] += 1.0
        logits[tk.PEDAL_ON:] += 1.0
        return logits, state


@pytest.fixture(scope="module")
def tiny_lstm() -> Any:
    torch.manual_seed(0)
    return build_model(ModelConfig(d_model=32, n_layers=2, dropout=0.0)).eval()


@pytest.mark.parametrize("spec_name", SPECS)
@pytest.mark.parametrize("seed", [0, 1])
def test_masked_generation_plans_with_zero_alterations(spec_name: str, seed: int) -> None:
    spec = load_spec(spec_name)
    g = generate(Dense(seed), spec, 12.0, seed=seed)
    assert len(g.score.notes) > 20
    assert tk.check_grammar(g.tokens) == []
    _, report = plan_piano(g.score, spec)
    assert (report.notes_altered, report.notes_dropped) == (0, 0)
    assert all(spec.has_pitch(n.pitch) for n in g.score.notes)


@pytest.mark.parametrize("spec_name", SPECS)
def test_without_mask_the_same_logits_are_not_playable(spec_name: str) -> None:
    spec = load_spec(spec_name)
    g = generate(Dense(0), spec, 12.0, seed=0, constrain=False)
    _, report = plan_piano(g.score, spec)
    assert report.notes_altered + report.notes_dropped > 0


@pytest.mark.parametrize("spec_name", SPECS)
def test_tiny_lstm_masked_output_is_playable_and_well_formed(tiny_lstm: Any,
                                                            spec_name: str) -> None:
    spec = load_spec(spec_name)
    g = generate(tiny_lstm, spec, 8.0, seed=3, temperature=1.5)
    assert tk.check_grammar(g.tokens) == []
    _, report = plan_piano(g.score, spec)
    assert (report.notes_altered, report.notes_dropped) == (0, 0)


def test_generation_is_deterministic_per_seed(tiny_lstm: Any) -> None:
    spec = load_spec("piano-61-diy")
    a = generate(tiny_lstm, spec, 5.0, seed=7, top_p=0.9)
    b = generate(tiny_lstm, spec, 5.0, seed=7, top_p=0.9)
    c = generate(tiny_lstm, spec, 5.0, seed=8, top_p=0.9)
    assert a.tokens == b.tokens
    assert a.tokens != c.tokens


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 1.0), (1.0, 0.8)])
def test_sampling_follows_the_masked_tempered_nucleus(temperature: float, top_p: float) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 1.5, tk.VOCAB_SIZE)
    mask = np.zeros(tk.VOCAB_SIZE, bool)
    mask[[3, 40, 77, 130, 300, 389]] = True
    z = np.exp((logits - logits[mask].max()) / temperature) * mask
    order = np.argsort(-z)
    cum = np.cumsum(z[order]) / z.sum()
    keep = order[: int(np.searchsorted(cum, top_p)) + 1]
    keep = keep[z[keep] > 0]
    want = np.zeros(tk.VOCAB_SIZE)
    want[keep] = z[keep] / z[keep].sum()
    n = 40_000
    got = np.bincount([_sample(logits, mask, temperature, top_p, rng) for _ in range(n)],
                      minlength=tk.VOCAB_SIZE) / n
    assert set(np.flatnonzero(got)) == set(keep.tolist())  # nothing masked or outside the nucleus
    np.testing.assert_allclose(got, want, atol=4 * np.sqrt(0.25 / n))


def test_refused_note_ons_are_redrawn_as_from_the_full_mask() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 1.0, tk.VOCAB_SIZE)
    logits[tk.NOTE_ON + 55:tk.NOTE_ON + 65] += 3.0  # the likely keys, half of them refused
    mask = np.zeros(tk.VOCAB_SIZE, bool)
    mask[tk.NOTE_ON + 50:tk.NOTE_ON + 70] = True
    mask[[tk.TIME_SHIFT + 9, tk.VELOCITY + 3]] = True
    refused = {tk.NOTE_ON + p for p in range(55, 65, 2)}
    asked: list[int] = []

    def ok(tok: int) -> bool:
        asked.append(tok)
        return tok not in refused

    full = mask.copy()
    full[list(refused)] = False
    want = np.exp(logits - logits[full].max()) * full
    want /= want.sum()
    n = 30_000
    got = np.bincount([_sample_checked(logits, mask.copy(), ok, 1.0, 1.0, rng) for _ in range(n)],
                      minlength=tk.VOCAB_SIZE) / n
    assert not got[list(refused)].any()
    np.testing.assert_allclose(got, want, atol=4 * np.sqrt(0.25 / n))
    assert len(asked) < 3 * n  # a few oracle questions a draw, not one per key


def test_numpy_lstm_matches_torch(tiny_lstm: Any) -> None:
    fast = NumpyLSTM(tiny_lstm)
    state_np, state_t = None, None
    for tok in [BOS, 60, 300, 188, 360]:
        a, state_np = fast.step(tok, state_np)
        with torch.no_grad():
            b, state_t = tiny_lstm.step(torch.tensor([tok]), state_t)
        np.testing.assert_allclose(a, b[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("layers", [1, 3])
def test_numpy_lstm_matches_torch_at_any_depth(layers: int) -> None:
    """The fused matrices (next layer's input share or the head, the layer's own recurrent
    share, the bias row) hold for a single layer and for a middle layer too."""
    torch.manual_seed(layers)
    net: Any = build_model(ModelConfig(d_model=24, n_layers=layers, dropout=0.0)).eval()
    fast = NumpyLSTM(net)
    state_np, state_t = None, None
    for tok in [BOS, 64, 300, 192, 372, 70, 260]:
        a, state_np = fast.step(tok, state_np)
        with torch.no_grad():
            b, state_t = net.step(torch.tensor([tok]), state_t)
        np.testing.assert_allclose(a, b[0].numpy(), atol=1e-5)


def test_numpy_lstm_state_can_be_stepped_twice(tiny_lstm: Any) -> None:
    """The step's scratch buffers never leak into a state or the logits: stepping one state
    with two tokens, in either order, gives the same as stepping it alone (the branching
    search of perform_model relies on it)."""
    fast = NumpyLSTM(tiny_lstm)
    _, state = fast.step(BOS, None)
    _, state = fast.step(62, state)
    first, after_first = fast.step(300, state)
    second, _ = fast.step(190, state)  # the same state again, another token
    again, after_again = fast.step(300, state)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)
    nxt_a, _ = fast.step(64, after_first)
    nxt_b, _ = fast.step(64, after_again)
    np.testing.assert_array_equal(nxt_a, nxt_b)


def test_transformer_generates_through_its_kv_cache() -> None:
    torch.manual_seed(0)
    m = build_model(ModelConfig(arch="transformer", d_model=32, n_layers=2, n_heads=2, d_ff=64,
                                dropout=0.0, context=16, max_rel=16)).eval()
    spec = load_spec("piano-61-diy")
    g = generate(m, spec, 3.0, seed=0, temperature=1.5)
    assert tk.check_grammar(g.tokens) == []
    _, report = plan_piano(g.score, spec)
    assert report.notes_altered == 0


def test_primer_outside_the_range_is_a_clear_error(tiny_lstm: Any) -> None:
    spec = load_spec("piano-61-diy")  # C2..C7
    with pytest.raises(ModelError, match=r"C1 \(MIDI 24\) is outside piano-61-diy's range C2..C7"):
        generate(tiny_lstm, spec, 2.0, primer=primer_tokens(parse_primer("C4 E4 C1")))
    g = generate(tiny_lstm, spec, 2.0, primer=primer_tokens(parse_primer("C4 E4 G4")))
    assert [n.pitch for n in g.score.notes[:3]] == [60, 64, 67]


def test_bad_primer_words_and_options(tiny_lstm: Any) -> None:
    with pytest.raises(ModelError, match="'H4' is not a note name"):
        parse_primer("C4 H4")
    spec = load_spec("piano-61-diy")
    with pytest.raises(ModelError, match="top-p"):
        generate(tiny_lstm, spec, 2.0, top_p=0.0)
    with pytest.raises(ModelError, match="seconds"):
        generate(tiny_lstm, spec, 0.0)


class NeverRelease:
    """A stand-in network that presses keys and lets time pass but never lifts a key (the
    "forgotten note" of an under-trained model, in the extreme)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def step(self, tok: int, state: object) -> tuple[np.ndarray, object]:
        logits = self.rng.normal(0.0, 1.0, tk.VOCAB_SIZE)
        logits[tk.NOTE_OFF:tk.TIME_SHIFT] = -40.0
        logits[tk.NOTE_ON + 40:tk.NOTE_ON + 90] += 2.0
        logits[tk.TIME_SHIFT + 20:tk.TIME_SHIFT + 40] += 4.0
        return logits, state


def _closed_within(tokens: list[int], bound_steps: int) -> list[str]:
    """Note-ons not closed by their own NOTE_OFF within ``bound_steps`` 10 ms steps."""
    now, down, bad = 0, {}, []
    for i, tok in enumerate(tokens):
        if tok < tk.NOTE_OFF:
            down[tok] = (i, now)
        elif tok < tk.TIME_SHIFT:
            j, t0 = down.pop(tok - tk.NOTE_OFF)
            if now - t0 > bound_steps:
                bad.append(f"token {j}: key {tok - tk.NOTE_OFF} held {now - t0} steps")
        elif tok < tk.VELOCITY:
            now += tok - tk.TIME_SHIFT + 1
    return bad + [f"key {p} never released" for p in down]


@pytest.mark.parametrize("spec_name", [*SPECS, None])
def test_no_note_is_held_past_the_bound(spec_name: str | None) -> None:
    spec = load_spec(spec_name) if spec_name else None
    g = generate(NeverRelease(0), spec, 20.0, seed=0, max_note_s=1.5)  # spec None: grammar only
    assert len(g.score.notes) > 20
    assert tk.check_grammar(g.tokens) == []
    assert _closed_within(g.tokens, 150) == []
    assert max(n.duration_us for n in g.score.notes) <= 1_500_000
    # the keys are lifted during the piece, by the bound, not all at its end
    last = max(n.end_us for n in g.score.notes)
    assert sum(n.end_us < last - 1_000_000 for n in g.score.notes) > len(g.score.notes) // 2
    if spec is not None:
        _, report = plan_piano(g.score, spec)
        assert (report.notes_altered, report.notes_dropped) == (0, 0)


def test_without_the_bound_the_same_logits_hold_notes_for_ever() -> None:
    g = generate(NeverRelease(0), None, 20.0, seed=0, max_note_s=None, constrain=False)
    assert max(n.duration_us for n in g.score.notes) > 10_000_000
    with pytest.raises(ModelError, match="max_note_s"):
        HardwareMask(None, max_note_s=0.0)


def test_shipped_model_samples_have_no_stuck_notes() -> None:
    from pathlib import Path

    from robo_player.model.checkpoint import load_model
    from robo_player.model.generate import MAX_NOTE_S

    path = Path(__file__).resolve().parents[1] / "models" / "performance.pt"
    model, _, _ = load_model(path)
    g = generate(model, load_spec("piano-88-grand"), 15.0, seed=200, top_p=0.95)
    assert tk.check_grammar(g.tokens) == []
    assert _closed_within(g.tokens, int(MAX_NOTE_S * 100)) == []


def test_mask_forbids_orphans_and_pedal_without_actuator() -> None:
    m = HardwareMask(load_spec("piano-61-diy"))
    allowed = m.cheap_mask()
    assert not allowed[tk.NOTE_OFF:tk.TIME_SHIFT].any()  # nothing is down yet
    assert not allowed[tk.PEDAL_ON] and not allowed[tk.PEDAL_OFF]  # no pedal on this spec
    assert not allowed[tk.NOTE_ON + 35] and allowed[tk.NOTE_ON + 36]
    m.apply(tk.NOTE_ON + 60)
    assert not m.cheap_mask()[tk.NOTE_ON + 60]
    assert not m.cheap_mask()[tk.NOTE_OFF + 60]  # the strike pulse is not over yet
    m.apply(tk.TIME_SHIFT + 9)
    assert m.cheap_mask()[tk.NOTE_OFF + 60]


def test_cli_generate_and_its_errors(tmp_path, tiny_lstm: Any, capsys) -> None:  # type: ignore[no-untyped-def]
    from robo_player.cli import main
    from robo_player.midi import read_midi
    from robo_player.model.checkpoint import save_checkpoint

    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, tiny_lstm, tiny_lstm.config)
    out = tmp_path / "gen.mid"
    rc = main(["generate", "--model", str(ckpt), "--spec", "piano-61-diy", "--seconds", "4",
               "--primer", "C4 E4 G4", "--seed", "2", "--out", str(out)])
    assert rc == 0
    assert "0 altered, 0 dropped" in capsys.readouterr().out
    sc = read_midi(out)
    assert [n.pitch for n in sc.notes[:3]] == [60, 64, 67]
    assert main(["generate", "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.mid")]) == 2
    assert "no such model checkpoint" in capsys.readouterr().err
    assert main(["generate", "--model", str(ckpt), "--spec", "piano-61-diy", "--primer", "A0",
                 "--out", str(tmp_path / "y.mid")]) == 2
    assert "A0 (MIDI 21) is outside piano-61-diy's range C2..C7" in capsys.readouterr().err
    assert not (tmp_path / "y.mid").exists()


def test_generate_score_for_play(tmp_path, tiny_lstm: Any) -> None:  # type: ignore[no-untyped-def]
    from robo_player.model.checkpoint import save_checkpoint
    from robo_player.model.cli import generate_score

    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, tiny_lstm, tiny_lstm.config)
    spec = load_spec("piano-88-grand")
    sc = generate_score(ckpt, spec, seconds=3.0, primer="C4", seed=0)
    assert sc.notes and sc.notes[0].pitch == 60
    _, report = plan_piano(sc, spec)
    assert report.notes_altered == 0

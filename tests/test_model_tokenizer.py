"""Tokenizer round trips, vocabulary layout and the corpus split rule (no torch needed)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player.errors import ModelError
from robo_player.model import corpus
from robo_player.model import tokenizer as tk
from robo_player.score import Note, PedalEvent, Score


def test_vocabulary_is_performance_rnn_plus_pedal() -> None:
    assert tk.VOCAB_SIZE == 388 + 2
    assert (tk.NOTE_ON, tk.NOTE_OFF, tk.TIME_SHIFT, tk.VELOCITY) == (0, 128, 256, 356)
    assert tk.token_name(255) == "NOTE_OFF(127)"
    assert tk.token_name(355) == "SHIFT(1000ms)"
    assert tk.token_name(389) == "PEDAL_OFF"
    with pytest.raises(ModelError, match="out of range"):
        tk.token_name(390)


def test_velocity_bins_invert() -> None:
    for b in range(tk.N_VEL):
        assert tk.velocity_to_bin(tk.bin_to_velocity(b)) == b
    assert tk.velocity_to_bin(1) == 0 and tk.velocity_to_bin(127) == 31
    bins = [tk.velocity_to_bin(v) for v in range(1, 128)]
    assert bins == sorted(bins) and len(set(bins)) == 32


@st.composite
def quantised_scores(draw: st.DrawFn) -> Score:
    """Scores already on the 10 ms / 32-bin grid, one note at a time per key."""
    notes: list[Note] = []
    for pitch in draw(st.lists(st.integers(0, 127), min_size=0, max_size=6, unique=True)):
        t = draw(st.integers(0, 300))
        for _ in range(draw(st.integers(1, 4))):
            dur = draw(st.integers(1, 250))
            vel = tk.bin_to_velocity(draw(st.integers(0, 31)))
            notes.append(Note(pitch, t * tk.STEP_US, dur * tk.STEP_US, vel))
            t += dur + draw(st.integers(0, 150))  # the key may go straight down again (gap 0)
    pedal: list[PedalEvent] = []
    t, down = 0, False
    for gap in draw(st.lists(st.integers(1, 200), max_size=5)):
        t += gap
        down = not down
        pedal.append(PedalEvent(t * tk.STEP_US, 127 if down else 0))
    return Score(notes=notes, pedal=pedal)


@settings(max_examples=150, deadline=None)
@given(quantised_scores())
def test_quantised_score_round_trips_exactly(score: Score) -> None:
    back = tk.decode(tk.encode(score))
    assert back.notes == score.notes
    assert back.pedal == score.pedal


@st.composite
def any_scores(draw: st.DrawFn) -> Score:
    n = draw(st.integers(0, 25))
    notes = [
        Note(draw(st.integers(0, 127)), draw(st.integers(0, 5_000_000)), draw(st.integers(1, 3_000_000)),
             draw(st.integers(1, 127)))
        for _ in range(n)
    ]
    pedal = [PedalEvent(draw(st.integers(0, 5_000_000)), draw(st.integers(0, 127)))
             for _ in range(draw(st.integers(0, 4)))]
    return Score(notes=notes, pedal=pedal)


@settings(max_examples=150, deadline=None)
@given(any_scores())
def test_any_score_round_trips_within_quantisation(score: Score) -> None:
    toks = tk.encode(score)
    assert not tk.check_grammar(toks)
    back = tk.decode(toks)
    # Decoding then encoding again is the identity on tokens (canonical order).
    assert tk.encode(back) == toks
    # Every note is within half a step of where it was, in its velocity bin.
    kept = tk.quantized_notes(score)
    assert len(back.notes) == len(kept)
    for n in back.notes:
        assert n.onset_us % tk.STEP_US == 0 and n.duration_us >= tk.STEP_US
    orig: dict[tuple[int, int], Note] = {}
    for n in score.notes:  # of two notes on one key in one step, the first is kept
        orig.setdefault((n.pitch, tk.quantize_us(n.onset_us)), n)
    for n in back.notes:
        o = orig[(n.pitch, n.onset_us // tk.STEP_US)]
        assert abs(n.onset_us - o.onset_us) <= tk.STEP_US // 2
        assert tk.velocity_to_bin(n.velocity) == tk.velocity_to_bin(o.velocity)
        assert n.end_us <= max(o.end_us + tk.STEP_US // 2, n.onset_us + tk.STEP_US)


def test_long_gaps_use_several_shifts_and_overlaps_are_cut() -> None:
    s = Score(notes=[Note(60, 0, 2_500_000, 64), Note(60, 1_000_000, 100_000, 64)])
    toks = tk.encode(s)
    names = [tk.token_name(t) for t in toks]
    # velocity 64 is in the default bin (15), so no VELOCITY event comes first
    assert names == ["NOTE_ON(60)", "SHIFT(1000ms)", "NOTE_OFF(60)", "NOTE_ON(60)",
                     "SHIFT(100ms)", "NOTE_OFF(60)"]
    back = tk.decode(toks)
    assert [(n.onset_us, n.duration_us) for n in back.notes] == [(0, 1_000_000), (1_000_000, 100_000)]


def test_grammar_checker_finds_orphans_and_stuck_notes() -> None:
    assert tk.check_grammar([tk.NOTE_OFF + 60])[0].endswith("orphan NOTE_OFF(60)")
    assert "stuck" in tk.check_grammar([tk.NOTE_ON + 61])[0]
    assert "while key" in tk.check_grammar([61, 61, 128 + 61])[0]
    # decode tolerates both: the orphan is ignored, the stuck key released at the end
    sc = tk.decode([tk.NOTE_OFF + 60, tk.NOTE_ON + 61, tk.TIME_SHIFT + 9])
    assert [(n.pitch, n.duration_us) for n in sc.notes] == [(61, 100_000)]


def test_transpose_tokens_and_range() -> None:
    toks = np.array(tk.encode(Score(notes=[Note(60, 0, 10_000, 64), Note(125, 0, 10_000, 64)])), np.int16)
    up = tk.transpose_tokens(toks, 2)
    assert sorted(n.pitch for n in tk.decode(up).notes) == [62, 127]
    assert tk.transpose_tokens(toks, 3) is None
    assert tk.count_notes(toks) == 2


def test_stretch_scales_times() -> None:
    s = tk.stretch_score(Score(notes=[Note(60, 1_000_000, 500_000, 64)]), 1.1)
    assert (s.notes[0].onset_us, s.notes[0].duration_us) == (1_100_000, 550_000)
    with pytest.raises(ModelError):
        tk.stretch_score(s, 0)


# ---------------------------------------------------------------- split rule


def test_piece_names_follow_the_rule() -> None:
    assert corpus.piece_name("bwv66.6.mxl") == "bwv66.6.mid"
    assert corpus.piece_name("Agnus_10.krn") == "Agnus_10.mid"
    assert corpus.piece_name("sub/dir/x.abc") == "sub__dir__x.mid"


@pytest.mark.parametrize("name", ["bwv66.6.mid", "Agnus_10.mid", "bwv1.6.mid", "a__b.mid"])
def test_split_rule_matches_sha1(name: str) -> None:
    h = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 100
    want = "test" if h >= 90 else "valid" if h >= 80 else "train"
    assert corpus.split_of(name) == want


def test_split_of_the_issue_examples() -> None:
    # sha1 % 100: bwv66.6.mid -> 75 (train), Agnus_10.mid -> 94 (test)
    assert corpus.split_of("bwv66.6.mid") == "train"
    assert corpus.split_of("Agnus_10.mid") == "test"


def test_split_proportions_are_about_80_10_10() -> None:
    names = [f"piece{i}.mid" for i in range(4000)]
    counts = {s: 0 for s in corpus.SPLITS}
    for n in names:
        counts[corpus.split_of(n)] += 1
    assert 0.77 < counts["train"] / 4000 < 0.83
    assert 0.08 < counts["test"] / 4000 < 0.12

"""The one pitch-name parser: every caller gets the same answer from one place."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robo_player import midi, pitch
from robo_player.model import generate
from robo_player.spec import schema


@pytest.mark.parametrize(
    ("name", "number"),
    [("A0", 21), ("C4", 60), ("C#4", 61), ("Db4", 61), ("F#3", 54), ("Bb2", 46), ("c8", 108),
     ("C-1", 0), ("G9", 127), (" E4 ", 64)],
)
def test_names_parse(name: str, number: int) -> None:
    assert pitch.note_to_pitch(name) == number
    assert pitch.parse_pitch(name) == number


@pytest.mark.parametrize("bad", ["H4", "C", "C10", "C#-2", "4C", "C##4", "", "Cb"])
def test_non_names(bad: str) -> None:
    assert pitch.note_to_pitch(bad) is None
    with pytest.raises(ValueError, match="is not a note name like C4, F#3, Bb2"):
        pitch.parse_pitch(bad)


def test_parse_pitch_ranges() -> None:
    assert pitch.parse_pitch("0") == 0 and pitch.parse_pitch("127") == 127
    with pytest.raises(ValueError, match=r"'G#9' is MIDI 128, out of range \(allowed 0..127\)"):
        pitch.parse_pitch("G#9")
    with pytest.raises(ValueError, match="out of range"):
        pitch.parse_pitch("128")


@given(st.integers(0, 127))
def test_round_trip(p: int) -> None:
    name = pitch.pitch_name(p)
    assert pitch.note_to_pitch(name) == p == pitch.parse_pitch(name)
    assert name == pitch.pitch_to_note(p)


def test_pitch_name_is_range_checked() -> None:
    with pytest.raises(ValueError, match="pitch -1, allowed 0..127"):
        pitch.pitch_name(-1)
    assert pitch.pitch_to_note(128) == "G#9"  # unchecked form, for messages about bad input


def test_every_caller_uses_the_one_parser() -> None:
    # the old homes re-export it; nobody keeps a copy
    assert schema.note_to_pitch is pitch.note_to_pitch
    assert schema.pitch_to_note is pitch.pitch_to_note
    assert schema.NOTE_PATTERN is pitch.NOTE_PATTERN
    assert midi.pitch_name is pitch.pitch_name
    assert generate.note_to_pitch is pitch.note_to_pitch

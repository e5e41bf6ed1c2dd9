"""The one pitch-name parser: scientific pitch names <-> MIDI note numbers.

``C4`` is MIDI 60 (middle C), ``A0`` 21 (a piano's lowest key), ``C8`` 108, ``C-1`` 0 and
``G9`` 127. A name is a letter ``A``-``G`` (either case), an optional accidental (``#``
sharp, ``b`` flat) and an octave ``-1``..``9``. Names are written with sharps.

Specs (``keys[].pitch``), the model's primers (``--primer "C4 E4 G4"``), ``inspect``
and every message that names a key use this module.
"""

from __future__ import annotations

import re

__all__ = [
    "LETTER_STEPS",
    "NOTE_PATTERN",
    "PITCH_CLASS_NAMES",
    "note_to_pitch",
    "parse_pitch",
    "pitch_name",
    "pitch_to_note",
]

# Scientific pitch notation, C4 = MIDI 60, A0 = 21, C8 = 108; sharps '#', flats 'b'.
# (Also the spec's JSON schema pattern for a pitch given by name.)
NOTE_PATTERN = r"^([A-Ga-g])([#b]?)(-1|[0-9])$"
_NOTE_RE = re.compile(NOTE_PATTERN)
PITCH_CLASS_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# semitones above C of each letter (also read by the **kern reader in model/corpus.py)
LETTER_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {"": 0, "#": 1, "b": -1}


def note_to_pitch(text: str) -> int | None:
    """MIDI number of a note name (``A0`` -> 21, ``C#4`` -> 61, ``Bb2`` -> 46), None if
    ``text`` is not a note name. Not range-checked: ``G#9`` gives 128, ``Cb-1`` -1."""
    m = _NOTE_RE.match(text.strip())
    if not m:
        return None
    letter, accidental, octave = m.groups()
    return (int(octave) + 1) * 12 + LETTER_STEPS[letter.upper()] + _ACCIDENTALS[accidental]


def parse_pitch(text: str) -> int:
    """MIDI number of a note name or of a number ``0``..``127``; ValueError naming the
    text and the allowed forms otherwise."""
    word = text.strip()
    p = note_to_pitch(word)
    if p is None and word.isdigit():
        p = int(word)
    if p is None:
        raise ValueError(f"{text!r} is not a note name like C4, F#3, Bb2 or a MIDI number")
    if not 0 <= p <= 127:
        raise ValueError(f"{text!r} is MIDI {p}, out of range (allowed 0..127)")
    return p


def pitch_to_note(pitch: int) -> str:
    """Note name with sharps (60 -> ``C4``, 61 -> ``C#4``); any integer, unchecked."""
    return f"{PITCH_CLASS_NAMES[pitch % 12]}{pitch // 12 - 1}"


def pitch_name(pitch: int) -> str:
    """Note name of a MIDI pitch 0..127 (60 -> ``C4``, 21 -> ``A0``, 108 -> ``C8``);
    ValueError outside that range."""
    if not 0 <= pitch <= 127:
        raise ValueError(f"pitch {pitch}, allowed 0..127")
    return pitch_to_note(pitch)

"""The piano planner's working state of one score note, shared by its stages
(:mod:`robo_player.planner.piano`, :mod:`~robo_player.planner.piano_repeats`,
:mod:`~robo_player.planner.piano_keys`, :mod:`~robo_player.planner.pedal`), and the
merge of a repeat into the note before it on the same key."""

from __future__ import annotations

from .constraints import INF_US, DriveChoice


class _Rec:
    """Working state of one score note."""

    __slots__ = (
        "i", "pitch", "shift", "dc", "s0", "s", "late", "stagger", "end", "absorbed_end",
        "drop", "rel", "sound_end", "notes", "carry", "cut_by", "need", "order",
        "fast", "dc0",
    )  # fmt: skip

    def __init__(
        self, i: int, pitch: int, shift: int, dc: DriveChoice | None = None, s0: int = 0,
        end: int = 0, need: int = 0,
    ) -> None:  # fmt: skip
        self.i = i
        self.pitch = pitch  # key played
        self.shift = shift  # transposition, semitones
        self.dc = dc
        self.s0 = s0  # wanted strike time (performance µs)
        self.s = 0  # planned strike time
        self.late = 0  # delay because the strike would fall before t = 0
        self.stagger = 0  # delay from the power budget
        self.end = end  # wanted sound end (performance µs, unshifted)
        self.absorbed_end = end  # latest end of notes merged into this one
        self.drop: str | None = None
        self.rel = 0  # planned release
        self.sound_end = 0  # when the sound is meant to stop (release, or pedal carry)
        self.notes: list[str] = []  # why it changed
        self.carry = 0  # > 0: the sound should go on to this time after the release
        self.cut_by = ""  # the coil limit that cut the note short
        self.need = need  # shortest strike-to-strike interval to the next note on the key
        self.fast = INF_US  # the same for a re-strike on the partly returned key
        self.dc0 = dc  # the drive as if the key were fully up (dc: raised for a re-strike)
        # (s0, pitch, i) packed into one int that sorts alike (pitch < 128): strike order
        self.order = (s0 * 128 + pitch) * _I_SPAN + i


_I_SPAN = 1 << 40  # more notes than a score has


# Two voices on one key whose onsets are this close are a unison: one strike plays both
# (a score's voices are often a tick apart; no key can strike twice within its return).
UNISON_US = 5_000


def _merge(prev: _Rec, r: _Rec, gap: int, need: int, extend: bool = True) -> None:
    assert prev.dc is not None and r.dc is not None
    if abs(r.s0 + r.dc.latency_us - (prev.s0 + prev.dc.latency_us)) <= UNISON_US:
        # two voices on one key at the same time (a unison): one key plays them both
        r.drop = f"merged: unison with note {prev.i} on the same key"
    else:
        r.drop = f"merged: repeat too fast ({gap / 1000:.1f} ms < {need / 1000:.1f} ms)"
    if not extend:
        return
    if r.end > prev.absorbed_end:
        prev.absorbed_end = r.end
    note = f"held through merged note {r.i}"
    if note not in prev.notes:
        prev.notes.append(note)


_REC_SLOTS = _Rec.__slots__


def _clone(r: _Rec) -> _Rec:
    c = _Rec.__new__(_Rec)
    for name in _REC_SLOTS:
        setattr(c, name, getattr(r, name))
    c.notes = list(r.notes)
    return c

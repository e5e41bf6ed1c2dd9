"""What the planner did to every note: played, altered (what and by how much) or dropped (why).

Invariant: exactly one :class:`NoteOutcome` per input note, so
``notes_in == notes_played + notes_altered + notes_dropped``, and every drop has a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Fate(Enum):
    PLAYED = "played"  # as written (pitch, time, velocity, duration)
    ALTERED = "altered"  # played with changes, listed in NoteOutcome.changes
    DROPPED = "dropped"  # not played; NoteOutcome.reason says why


@dataclass(slots=True)
class NoteOutcome:
    """The fate of one score note.

    ``index`` is the note's position in ``score.notes``. ``intended_t_us`` is the
    performance time the score asks for (onset + pipeline delay); ``target_t_us`` is
    the time the plan aims the note to sound (intended + any stagger; equal to
    intended for dropped notes). ``velocity_target`` is the loudness the key's curve
    predicts for the planned drive (None when dropped). ``changes`` holds what
    changed: ``onset_us``, ``duration_us`` (sounding length, µs), ``velocity``
    (target − written), ``pitch`` (semitones). ``pitch_out`` is the key played (for an
    out-of-range drop, the written pitch). ``strike_t_us``: when the piano planner's
    strike for it is commanded (None: dropped, or another planner), for the matcher's
    causality rule (:mod:`robo_player.matching`); not in the JSON (plan digests
    unchanged).
    """

    index: int
    pitch_in: int
    pitch_out: int
    fate: Fate
    target_t_us: int
    intended_t_us: int
    velocity_in: int
    velocity_target: float | None
    changes: dict[str, int | float] = field(default_factory=dict)
    reason: str | None = None
    strike_t_us: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "note": self.index,
            "pitch_in": self.pitch_in,
            "pitch_out": self.pitch_out,
            "fate": self.fate.value,
            "target_t_us": self.target_t_us,
            "intended_t_us": self.intended_t_us,
            "velocity_in": self.velocity_in,
            "velocity_target": self.velocity_target,
            "changes": dict(self.changes),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "<note>") -> NoteOutcome:
        """The outcome :meth:`to_json` wrote (a plan file's note lines); ValueError naming
        ``where`` and the key for a malformed one."""

        def num(key: str, kind: type = int, none: bool = False) -> Any:
            v = d.get(key)
            if v is None and none:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int):
                raise ValueError(f"{where}: {key}: {v!r} (allowed: {'a number' if kind is float else 'an integer'})")
            return v

        try:
            fate = Fate(d.get("fate"))
        except ValueError:
            raise ValueError(
                f"{where}: fate: {d.get('fate')!r} (allowed: {', '.join(f.value for f in Fate)})"
            ) from None
        changes = d.get("changes") or {}
        if not isinstance(changes, dict):
            raise ValueError(f"{where}: changes: {changes!r} (allowed: an object)")
        reason = d.get("reason")
        return cls(
            num("note"), num("pitch_in"), num("pitch_out"), fate, num("target_t_us"),
            num("intended_t_us"), num("velocity_in"), num("velocity_target", float, none=True),
            dict(changes), None if reason is None else str(reason),
        )  # fmt: skip


@dataclass(slots=True)
class PlanReport:
    """One outcome per input note plus plan-wide counts."""

    outcomes: list[NoteOutcome] = field(default_factory=list)
    spec_name: str = ""
    calibrated: bool = False  # a measured calibration was used (not the nominal curves)
    staggered_chords: int = 0  # onsets at which at least one note was staggered
    max_stagger_us: int = 0
    pedal_events_ignored: int = 0  # score pedal events on a spec without a pedal
    pedal_carried: int = 0  # notes carried past the coil's max on-time by the pedal
    supply_overloads: int = 0  # strikes planned over the supply's current limit (may sag)
    # pedal presses the coil's limits changed: {"t_us" (performance time the score's
    # press lifts the dampers), "change" ("lifted early" | "not pressed" | "pressed again"),
    # "by_us" (how much earlier it came up; 0 otherwise), "reason"}
    pedal_changes: list[dict[str, object]] = field(default_factory=list)

    @property
    def notes_in(self) -> int:
        return len(self.outcomes)

    def _count(self, fate: Fate) -> int:
        return sum(1 for o in self.outcomes if o.fate is fate)

    @property
    def notes_played(self) -> int:
        return self._count(Fate.PLAYED)

    @property
    def notes_altered(self) -> int:
        return self._count(Fate.ALTERED)

    @property
    def notes_dropped(self) -> int:
        return self._count(Fate.DROPPED)

    @property
    def drops(self) -> list[dict[str, object]]:
        return [
            {"note": o.index, "reason": o.reason} for o in self.outcomes if o.fate is Fate.DROPPED
        ]

    @property
    def alterations(self) -> list[dict[str, object]]:
        return [
            {"note": o.index, "changes": dict(o.changes), "reason": o.reason}
            for o in self.outcomes
            if o.fate is Fate.ALTERED
        ]

    def check(self) -> None:
        """Assert the report's invariants (internal consistency)."""
        assert [o.index for o in self.outcomes] == list(range(len(self.outcomes)))
        for o in self.outcomes:
            assert o.fate is not Fate.DROPPED or o.reason, f"note {o.index}: drop without reason"
            assert o.fate is not Fate.ALTERED or o.changes, f"note {o.index}: altered, no change"
            assert o.fate is not Fate.PLAYED or not o.changes, f"note {o.index}: played, changed"

    def to_json(self, outcomes: bool = False) -> dict[str, object]:
        """Counts, drops and alterations; with ``outcomes=True`` also every note's outcome."""
        played = altered = dropped = 0
        for o in self.outcomes:
            if o.fate is Fate.PLAYED:
                played += 1
            elif o.fate is Fate.ALTERED:
                altered += 1
            else:
                dropped += 1
        d: dict[str, object] = {
            "spec": self.spec_name,
            "calibrated": self.calibrated,
            "notes_in": len(self.outcomes),
            "notes_played": played,
            "notes_altered": altered,
            "notes_dropped": dropped,
            "staggered_chords": self.staggered_chords,
            "max_stagger_us": self.max_stagger_us,
            "pedal_events_ignored": self.pedal_events_ignored,
            "pedal_carried": self.pedal_carried,
            "supply_overloads": self.supply_overloads,
            "drops": self.drops,
            "alterations": self.alterations,
        }
        if self.pedal_changes:  # present when any (older reports stay as they were)
            d["pedal_changes"] = list(self.pedal_changes)
        if outcomes:
            d["outcomes"] = [o.to_json() for o in self.outcomes]
        return d

"""The live planner's options (:class:`LiveOptions`, :class:`LatencyMode`) and what it
counts (:class:`LiveStats`); see :mod:`robo_player.live.planner`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from ..errors import UsageError
from ..planner.constraints import PlanOptions

__all__ = ["LatencyMode", "LiveOptions", "LiveStats"]


class LatencyMode(Enum):
    FIXED = "fixed"
    LOWEST = "lowest"


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """How the live planner schedules (see the module doc).

    ``latency_us``: ``D`` in fixed mode (None: from the calibration). ``margin_us``:
    added to the slowest latency for the default ``D``. ``lead_us``: the earliest a
    command can be scheduled after its message. ``min_velocity``: the quietest
    velocity the default ``D`` covers (softer notes play as asked, late, and are counted).
    """

    mode: LatencyMode = LatencyMode.FIXED
    latency_us: int | None = None
    margin_us: int = 2_000
    lead_us: int = 3_000
    min_velocity: int = 1
    # note-ons beyond a MIDI cable's rate are dropped (``dropped_rate``): a token bucket
    # of ``max_notes_per_s`` with bursts of ``burst_notes`` (a 20-note chord and more)
    max_notes_per_s: int = 1000
    burst_notes: int = 64
    plan: PlanOptions = field(default_factory=PlanOptions)

    def __post_init__(self) -> None:
        if not 0 <= self.lead_us <= 1_000_000:
            raise UsageError(f"live lead_us: {self.lead_us} is out of range (allowed 0..1000000)")
        if not 0 <= self.margin_us <= 1_000_000:
            raise UsageError(
                f"live margin_us: {self.margin_us} is out of range (allowed 0..1000000)"
            )
        if self.latency_us is not None and not 0 <= self.latency_us <= 5_000_000:
            raise UsageError(
                f"--latency-ms: {self.latency_us / 1000:g} is out of range (allowed 0..5000)"
            )
        if not 1 <= self.max_notes_per_s <= 100_000 or not 1 <= self.burst_notes <= 10_000:
            raise UsageError(
                f"live max_notes_per_s/burst_notes: {self.max_notes_per_s}/{self.burst_notes} "
                "out of range (allowed 1..100000 / 1..10000)"
            )
        if not 1 <= self.min_velocity <= 127:
            raise UsageError(
                f"--min-velocity: {self.min_velocity} is out of range (allowed 1..127)"
            )


@dataclass(slots=True)
class LiveStats:
    """What happened to every message.

    ``outcomes``: every note-on ends in exactly one: ``on_time``, ``late`` (fixed mode:
    played as early as possible, after ``D``), ``merged`` (a repeat faster than the key
    can repeat: the key held on instead), ``dropped_out_of_range``, ``dropped_heat``,
    ``dropped_rate`` (over the note rate limit),
    ``cancelled`` (a panic came before its strike was sent).
    """

    notes_in: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    note_offs: int = 0
    offs_in_flight: int = 0  # note-off before the strike's pulse had finished
    offs_unmatched: int = 0  # note-off with no note on that key
    pedal_events: int = 0
    panics: int = 0
    supply_waits: int = 0
    supply_overloads: int = 0
    ignored: Counter[str] = field(default_factory=Counter)  # message types not played
    delays_us: list[int] = field(default_factory=list)  # planned sound - arrival, per strike

    def accounted(self) -> bool:
        return sum(self.outcomes.values()) == self.notes_in

    def as_dict(self) -> dict[str, object]:
        return {
            "notes_in": self.notes_in,
            "outcomes": dict(self.outcomes),
            "note_offs": self.note_offs,
            "offs_in_flight": self.offs_in_flight,
            "offs_unmatched": self.offs_unmatched,
            "pedal_events": self.pedal_events,
            "panics": self.panics,
            "supply_waits": self.supply_waits,
            "supply_overloads": self.supply_overloads,
            "ignored": dict(self.ignored),
        }

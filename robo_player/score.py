"""The score: notes, sustain pedal and tempo, all in integer microseconds.

A :class:`Score` is what every source of music (MIDI file, live stream, performance
model) produces and what every planner consumes. Times are score time in µs from the
start of the piece; the planner adds its pipeline delay to make performance time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DRUM_CHANNEL = 9  # MIDI channel 10, zero-based


@dataclass(frozen=True, slots=True)
class Note:
    """One note. ``velocity`` is MIDI 1..127; ``channel`` is zero-based (0..15)."""

    pitch: int
    onset_us: int
    duration_us: int
    velocity: int
    channel: int = 0
    track: int = 0

    @property
    def end_us(self) -> int:
        return self.onset_us + self.duration_us


@dataclass(frozen=True, slots=True)
class PedalEvent:
    """Sustain pedal (CC64) value change; 0..127, half-pedal values kept."""

    t_us: int
    value: int
    channel: int = 0


@dataclass(frozen=True, slots=True)
class TempoChange:
    """A tempo change at ``tick`` (file ticks), which falls at ``t_us``."""

    tick: int
    t_us: int
    us_per_beat: int


@dataclass(slots=True)
class Score:
    """Notes sorted by (onset, pitch); pedal events sorted by time."""

    notes: list[Note] = field(default_factory=list)
    pedal: list[PedalEvent] = field(default_factory=list)
    tempo_map: list[TempoChange] = field(default_factory=list)
    ticks_per_beat: int = 480
    source: str | None = None

    def __post_init__(self) -> None:
        self.notes.sort(key=lambda n: (n.onset_us, n.pitch, n.channel, n.track))
        self.pedal.sort(key=lambda p: p.t_us)

    @property
    def end_us(self) -> int:
        ends = [n.end_us for n in self.notes] + [p.t_us for p in self.pedal]
        return max(ends, default=0)

    @property
    def duration_s(self) -> float:
        return self.end_us / 1e6

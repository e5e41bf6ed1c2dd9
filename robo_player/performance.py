"""What a device reports at the end of a stream: what was heard, heat, failures, link.

Neutral ground between the host side (:mod:`robo_player.driver`, the report, the
calibrator) and the device side (:mod:`robo_player.sim`): both import these types from
here, so neither imports the other for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Progress = Callable[[float], None]  # fraction done, 0..1


@dataclass(frozen=True, slots=True)
class HeardNote:
    """One onset reported by the sensor, in performance time."""

    t_us: int
    pitch: int
    velocity: float  # loudness in MIDI velocity units
    end_us: int | None = None  # when the sound was damped, if known


@dataclass(slots=True)
class Performance:
    heard: list[HeardNote] = field(default_factory=list)
    max_coil_temp_ratio: float = 0.0  # peak coil temperature rise / allowed rise
    coil_failures: list[dict[str, Any]] = field(default_factory=list)
    pedal: list[tuple[int, int]] = field(default_factory=list)  # (t_us, value) as sensed
    link: dict[str, Any] | None = None  # link statistics, where there is a link
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific report fields


__all__ = ["HeardNote", "Performance", "Progress"]

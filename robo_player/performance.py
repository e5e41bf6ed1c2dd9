"""What a device reports at the end of a stream: what was heard, heat, failures, link.

Neutral ground between the host side (:mod:`robo_player.driver`, the report, the
calibrator) and the device side (:mod:`robo_player.sim`): both import these types from
here, so neither imports the other for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

Progress = Callable[[float], None]  # fraction done, 0..1


@dataclass(frozen=True, slots=True)
class HeardNote:
    """One onset reported by the sensor, in performance time."""

    t_us: int
    pitch: int
    velocity: float  # loudness in MIDI velocity units
    end_us: int | None = None  # when the sound was damped, if known


@runtime_checkable
class AudioTake(Protocol):
    """What a microphone recorded during one stream (mono, the sound card's own clock).

    Its clock is not the MCU's: an unknown offset and drift separate them
    (:mod:`robo_player.hearing.align` finds both)."""

    sample_rate: int

    def samples(self) -> np.ndarray:
        """(N,) float32 samples in -1..1."""
        ...


@dataclass(slots=True)
class Performance:
    heard: list[HeardNote] = field(default_factory=list)
    max_coil_temp_ratio: float = 0.0  # peak coil temperature rise / allowed rise
    coil_failures: list[dict[str, Any]] = field(default_factory=list)
    pedal: list[tuple[int, int]] = field(default_factory=list)  # (t_us, value) as sensed
    link: dict[str, Any] | None = None  # link statistics, where there is a link
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific report fields
    audio: AudioTake | None = None  # the microphone's recording, where there is one


__all__ = ["AudioTake", "HeardNote", "Performance", "Progress"]

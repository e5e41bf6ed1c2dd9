"""The simulated microphone: what the calibration and the reports get to hear.

It reports each onset with Gaussian timing noise (0.2 ms s.d.) and each loudness with
Gaussian noise (1 MIDI velocity unit s.d.); damping times and the sensed pedal get the
same timing noise. One seeded generator per microphone, so a session is reproducible
and repeated takes of the same plan differ as they would on a real piano.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..performance import HeardNote, Performance
from .physics import SoundedNotes

TIMING_SD_US = 200.0
LOUDNESS_SD = 1.0


class Microphone:
    """Adds sensor noise to the exact notes of the physics."""

    def __init__(
        self, seed: int | None = 0, timing_sd_us: float = TIMING_SD_US, loudness_sd: float = LOUDNESS_SD
    ) -> None:
        if timing_sd_us < 0 or loudness_sd < 0:
            raise ValueError(
                f"sensor noise must be >= 0 (timing_sd_us={timing_sd_us}, loudness_sd={loudness_sd})"
            )
        self._rng = np.random.default_rng(seed)
        self.timing_sd_us = float(timing_sd_us)
        self.loudness_sd = float(loudness_sd)

    def hear(self, notes: Sequence[HeardNote]) -> list[HeardNote]:
        """Noisy copies of ``notes``, sorted by (time, pitch)."""
        n = len(notes)
        ends = [h.end_us for h in notes]
        cols = SoundedNotes(
            t_us=np.fromiter((h.t_us for h in notes), dtype=np.int64, count=n),
            pitch=np.fromiter((h.pitch for h in notes), dtype=np.int64, count=n),
            velocity=np.fromiter((h.velocity for h in notes), dtype=np.float64, count=n),
            end_us=np.array([np.inf if e is None else e for e in ends], dtype=np.float64),
        )
        return self.hear_columns(cols)

    def hear_columns(self, notes: SoundedNotes) -> list[HeardNote]:
        """Noisy heard notes from the physics' columns, sorted by (time, pitch)."""
        n = len(notes)
        if n == 0:
            return []
        t = notes.t_us + np.rint(self._rng.normal(0.0, self.timing_sd_us, size=n)).astype(np.int64)
        v = np.maximum(0.0, notes.velocity + self._rng.normal(0.0, self.loudness_sd, size=n))
        e = notes.end_us + np.rint(self._rng.normal(0.0, self.timing_sd_us, size=n))
        e = np.maximum(e, t)  # inf stays inf: not damped while listening
        o = np.lexsort((notes.pitch, t))
        return SoundedNotes(t[o], notes.pitch[o], v[o], e[o]).to_heard()

    def listen(self, perf: Performance, notes: SoundedNotes | None = None) -> Performance:
        """``perf`` with its notes (``notes``, or else ``perf.heard``) and pedal heard
        through this microphone (in place)."""
        perf.heard = self.hear(perf.heard) if notes is None else self.hear_columns(notes)
        if perf.pedal:
            dp = np.rint(self._rng.normal(0.0, self.timing_sd_us, size=len(perf.pedal))).astype(np.int64)
            perf.pedal = sorted((t + int(e), v) for (t, v), e in zip(perf.pedal, dp.tolist(), strict=True))
        return perf

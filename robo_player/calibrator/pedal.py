"""The pedal's latency: from a SET command to the first sensed change.
"""

from __future__ import annotations

import numpy as np

from ..performance import Performance
from ..plan import Command, Op
from ..spec.model import PianoSpec


def pedal_commands(spec: PianoSpec, t0: int) -> list[Command]:
    p = spec.pedal
    assert p is not None
    return [
        Command(t0, Op.SET, p.channel, p.pwm_max, 0, 0, -1),  # levels in counts (plan v2)
        Command(t0 + 300_000, Op.SET, p.channel, 0, 0, 0, -1),
        Command(t0 + 600_000, Op.SET, p.channel, p.pwm_max, 0, 0, -1),
        Command(t0 + 900_000, Op.SET, p.channel, 0, 0, 0, -1),
    ]


def pedal_latency(perf: Performance, cmds: list[Command]) -> int | None:
    """Median delay from each PEDAL command to the first sensed change to its value."""
    if not perf.pedal:
        return None
    sensed = sorted(perf.pedal)
    lats: list[int] = []
    for c in cmds:
        down = c.drive >= 64
        for t, v in sensed:
            if t >= c.t_us and (v >= 64) == down:
                if t - c.t_us < 250_000:
                    lats.append(t - c.t_us)
                break
    if not lats:
        return None
    return int(np.median(lats))

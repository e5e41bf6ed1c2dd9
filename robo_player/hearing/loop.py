"""The closed loop for warm coils (issue 11 §4, docs/hearing.md "Closed loop").

A coil warms as it plays; its resistance rises (copper: +0.39 %/K), so its key strikes
later and softer than the calibration says. While playing with a sensor, the loop
compares what it hears with what the plan meant and corrects each key:

- the plan is played in *segments* (``segment_us`` of performance time each; every
  command of one note goes with the segment of its first command), each one stream of
  the device (submit, drain). The heard notes of a segment come back at its drain, are
  paired with the intended notes (:func:`robo_player.report.match_heard`, the one
  matcher) and update the corrections used for the segments not yet submitted;
- per key (pitch): a latency correction (µs; the key's commands move that much earlier)
  and a drive gain (the pulse's level is multiplied by ``1 + gain``), both integrating
  the heard error with weight ``rate`` (an EWMA of the error), bounded by
  ``max_latency_us`` and ``max_drive``; every change is logged (:class:`Correction`).

Between two segments the device is idle for its stream gap (the simulator: 1 s, in
which the coils cool a little); the open-loop figure of the bench plays the same
segments with the corrections held at zero (``rate=0``), so the two are comparable.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..performance import HeardNote
from ..plan import Command, Op, Plan
from ..report import match_heard
from ..spec.calibration import Calibration

log = logging.getLogger(__name__)


class _Device(Protocol):
    def submit(self, commands: Sequence[Command]) -> None: ...
    def drain(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class LoopSettings:
    """Bounds and speed of the loop."""

    rate: float = 0.5  # weight of a new error in each key's correction (0: open loop)
    max_latency_us: float = 10_000.0  # |latency correction| <= this
    max_drive: float = 0.20  # |drive gain| <= this (±20 % of the planned level)
    segment_us: int = 5_000_000  # performance time per segment (one stream)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"closed loop: rate {self.rate} out of range (allowed: 0..1)")
        if not 0.0 <= self.max_latency_us <= 50_000.0:
            raise ValueError(f"closed loop: max_latency_us {self.max_latency_us} (allowed: 0..50000)")
        if not 0.0 <= self.max_drive <= 0.5:
            raise ValueError(f"closed loop: max_drive {self.max_drive} (allowed: 0..0.5)")
        if not 100_000 <= self.segment_us <= 60_000_000:
            raise ValueError(f"closed loop: segment_us {self.segment_us} (allowed: 100000..60000000)")


@dataclass(frozen=True, slots=True)
class Correction:
    """One logged change of one key's correction, after segment ``segment``."""

    segment: int
    pitch: int
    latency_us: float  # the new latency correction (commands this much earlier)
    drive_gain: float  # the new drive gain (level × (1 + gain))
    onset_err_us: float  # the mean heard-minus-intended onset error that moved it
    velocity_ratio: float  # mean intended / heard velocity


@dataclass
class LoopResult:
    """What the loop heard (performance time of the plan) and did."""

    heard: list[HeardNote] = field(default_factory=list)
    latency_us: dict[int, float] = field(default_factory=dict)  # pitch -> final correction
    drive_gain: dict[int, float] = field(default_factory=dict)
    log: list[Correction] = field(default_factory=list)
    segments: int = 0
    max_coil_temp_ratio: float = 0.0  # the hottest coil, as a fraction of its allowed rise

    def to_dict(self) -> dict[str, Any]:
        """The corrections, for ``--write-back`` (pitch -> latency µs, drive gain)."""
        pitches = sorted(set(self.latency_us) | set(self.drive_gain))
        return {
            "format": "robo_player.closed_loop",
            "version": 1,
            "keys": [
                {
                    "pitch": p,
                    "latency_us": round(self.latency_us.get(p, 0.0), 1),
                    "drive_gain": round(self.drive_gain.get(p, 0.0), 4),
                }
                for p in pitches
            ],
        }


def corrected_calibration(cal: Calibration, res: LoopResult) -> Calibration:
    """``cal`` with the loop's corrections folded in (``play --write-back``): a key
    heard ``L`` µs late has its latency curve raised by ``L``; a key that needed
    ``1 + g`` times the drive for a loudness has its curve's drives (and threshold)
    scaled by ``1 + g`` (points past full drive dropped, at least two kept)."""
    keys = dict(cal.keys)
    for p, c in cal.keys.items():
        lat, g = res.latency_us.get(p, 0.0), res.drive_gain.get(p, 0.0)
        if lat == 0.0 and g == 0.0:
            continue
        f = 1.0 + g
        pts = [(d * f, v, t + lat) for d, v, t in zip(c.drive, c.velocity, c.latency_us, strict=True)]
        keep = [x for x in pts if x[0] <= 1.0]
        if len(keep) < 2:
            keep = [(min(0.99, d), v, t) for d, v, t in pts[:1]] + [(1.0, pts[-1][1], pts[-1][2])]
        keys[p] = dataclasses.replace(
            c, threshold=min(c.threshold * f, keep[0][0] * 0.999),
            drive=tuple(x[0] for x in keep), velocity=tuple(x[1] for x in keep),
            latency_us=tuple(x[2] for x in keep),
        )
    return dataclasses.replace(cal, keys=keys)


def _clamp(x: float, lim: float) -> float:
    return max(-lim, min(lim, x))


def _segments(plan: Plan, segment_us: int) -> list[list[Command]]:
    """The plan's commands by segment; every command of one note in its first's segment."""
    first: dict[int, int] = {}
    for c in plan.commands:
        if c.note >= 0 and c.note not in first:
            first[c.note] = c.t_us
    segs: dict[int, list[Command]] = {}
    for c in plan.commands:
        t = first[c.note] if c.note >= 0 else c.t_us
        segs.setdefault(t // segment_us, []).append(c)
    return [segs[k] for k in sorted(segs)]


def play_closed_loop(
    device: _Device,
    plan: Plan,
    outcomes: Sequence[Any],
    pitch_of: Callable[[int], int],
    pwm_max: Callable[[int], int],
    settings: LoopSettings | None = None,
) -> LoopResult:
    """Play ``plan`` on ``device`` segment by segment, correcting each key from what is heard.

    ``outcomes``: the planner's per-note outcomes (``index``, ``pitch_out``,
    ``target_t_us``, ``velocity_target`` or ``velocity_in``, ``fate``); every note
    played or altered is judged against what the plan aimed at (its target time and
    loudness); ``pitch_of``:
    actuator -> pitch (-1 for the pedal); ``pwm_max``: actuator -> its full level.
    """
    st = settings or LoopSettings()
    res = LoopResult()
    by_note = {o.index: o for o in outcomes}
    lat: dict[int, float] = {}
    gain: dict[int, float] = {}
    for si, seg in enumerate(_segments(plan, st.segment_us)):
        cmds: list[Command] = []
        for c in seg:
            p = pitch_of(c.actuator)
            if p < 0 or c.op is Op.MOVE:
                cmds.append(c)
                continue
            t = c.t_us - int(round(lat.get(p, 0.0)))
            drive = c.drive
            if c.op is Op.PULSE_HOLD and drive > 0:
                drive = max(1, min(pwm_max(c.actuator), int(round(drive * (1.0 + gain.get(p, 0.0))))))
            cmds.append(dataclasses.replace(c, t_us=t, drive=drive))
        cmds.sort(key=Command.sort_key)
        offset = max(0, cmds[0].t_us) if cmds else 0
        cmds = [dataclasses.replace(c, t_us=max(0, c.t_us - offset)) for c in cmds]
        device.submit(cmds)
        perf = device.drain()
        heard = [dataclasses.replace(h, t_us=h.t_us + offset,
                                     end_us=None if h.end_us is None else h.end_us + offset)
                 for h in perf.heard]
        res.heard.extend(heard)
        res.max_coil_temp_ratio = max(res.max_coil_temp_ratio, float(getattr(perf, "max_coil_temp_ratio", 0.0)))
        notes = sorted({c.note for c in seg if c.note >= 0})
        outs = [by_note[i] for i in notes if i in by_note]
        matched = match_heard(outs, heard)
        errs: dict[int, list[tuple[float, float]]] = {}
        for o in outs:
            h = matched.get(o.index)
            if h is None or h.velocity <= 0:
                continue
            want_v = getattr(o, "velocity_target", None) or o.velocity_in
            errs.setdefault(o.pitch_out, []).append((h.t_us - o.target_t_us, want_v / h.velocity))
        if st.rate > 0.0:
            for p, es in errs.items():
                e_on = math.fsum(e for e, _ in es) / len(es)
                ratio = math.fsum(r for _, r in es) / len(es)
                lat[p] = _clamp(lat.get(p, 0.0) + st.rate * e_on, st.max_latency_us)
                g = (1.0 + gain.get(p, 0.0)) * (1.0 + st.rate * (ratio - 1.0)) - 1.0
                gain[p] = _clamp(g, st.max_drive)
                res.log.append(Correction(si, p, lat[p], gain[p], e_on, ratio))
        res.segments = si + 1
    res.latency_us, res.drive_gain = lat, gain
    if res.log:
        log.info("closed loop: %d corrections over %d segments, %d keys", len(res.log), res.segments, len(lat))
    return res


__all__ = ["Correction", "LoopResult", "LoopSettings", "corrected_calibration", "play_closed_loop"]

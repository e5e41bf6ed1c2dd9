"""How closely the firmware's outputs followed the plan: actuation errors, from its trace."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..actuation import is_pulse_hold
from ..plan import Command
from .stream import StreamResult
from .trace import Trace


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def actuation_errors(
    cmds: Sequence[Command],
    result: StreamResult,
    trace: Trace,
    t_us_for: Callable[[int], float],
) -> list[float]:
    """Match each command that played to its output change in the trace.

    Returns the errors (µs: trace time in performance time minus planned time).
    ``cmds[o.index]`` is the command of outcome ``o``.
    """
    by_act: dict[int, list[tuple[int, int]]] = {}
    for clock, a, level in trace.changes:
        by_act.setdefault(a, []).append((clock, level))
    pos: dict[int, int] = dict.fromkeys(by_act, 0)
    errs: list[float] = []
    # a command runs within the firmware's late slack of its clock, or is reported late
    slack_us = result.device.late_slack_us if result.device else 10_000
    window = (slack_us + 2000) * trace.clock_hz // 1_000_000
    for o in result.outcomes:
        if o.status not in ("played", "played_cut_off") or o.device_index < 0:
            continue
        c = cmds[o.index]
        if c.op.name == "MOVE":
            continue  # a move's steps follow its profile (bench/bench_guitar_fw.py)
        seq = by_act.get(c.actuator)
        if not seq or (c.op.name == "RELEASE" and c.actuator in trace.soft_pwm):
            continue  # (a PWM-held pin's release may fall in its off time: no edge)
        want_on = is_pulse_hold(c.op) or (c.op.name != "RELEASE" and c.drive > 0)
        i = pos[c.actuator]
        # the next change of this actuator at (about) the scheduled clock, on or off as asked
        while i < len(seq) and seq[i][0] < o.clock - window:
            i += 1
        j = i
        while j < len(seq) and seq[j][0] <= o.clock + window:
            if (seq[j][1] > 0) == want_on:
                errs.append(t_us_for(seq[j][0]) - c.t_us)
                pos[c.actuator] = j + 1
                break
            j += 1
    return errs


def error_summary(errs: list[float]) -> dict[str, float | int]:
    abs_err = [abs(e) for e in errs]
    return {
        "mean": round(sum(abs_err) / len(abs_err), 2) if abs_err else 0.0,
        "p99": round(percentile(abs_err, 0.99), 2),
        "max": round(max(abs_err), 2) if abs_err else 0.0,
        "matched": len(errs),
    }


__all__ = ["actuation_errors", "error_summary", "percentile"]

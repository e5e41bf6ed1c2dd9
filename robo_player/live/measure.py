"""What a live run measured: each sounded note's latency (heard onset - its message).

A note is matched to the heard onset on its key nearest to its planned sound time
(message + planned delay), within ``window_us``; notes with no such onset are not
measured. Used by ``--report``, the bench and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..performance import Performance
from .planner import LivePlanner
from .session import LiveSession

__all__ = ["Measured", "latencies", "live_report", "quantiles_ms"]


@dataclass(frozen=True, slots=True)
class Measured:
    t_us: int  # message time
    pitch: int
    velocity: int
    latency_us: int  # heard onset - message time


def latencies(
    perf: Performance, session: LiveSession, planner: LivePlanner, window_us: int = 30_000
) -> list[Measured]:
    """Every sounded note that was heard, with its measured latency."""
    by_pitch: dict[int, list[int]] = {}
    for h in perf.heard:
        by_pitch.setdefault(h.pitch, []).append(h.t_us)
    out: list[Measured] = []
    delays = iter(planner.stats.delays_us)  # one per strike planned, in arrival order
    for a in session.arrivals:
        if a.outcome not in ("on_time", "late"):
            continue
        want = a.t_us + next(delays)
        cands = by_pitch.get(a.pitch, [])
        if not cands:
            continue
        onset = min(cands, key=lambda x: abs(x - want))
        if abs(onset - want) <= window_us:
            out.append(Measured(a.t_us, a.pitch, a.velocity, onset - a.t_us))
    return out


def quantiles_ms(xs: list[float]) -> dict[str, float] | None:
    """p50, p99, max of values in µs, as ms (None for no values)."""
    if not xs:
        return None
    s = sorted(xs)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(round(p * (len(s) - 1))))] / 1000, 3)

    return {"p50": q(0.5), "p99": q(0.99), "max": round(s[-1] / 1000, 3)}


def live_report(perf: Performance | None, session: LiveSession, planner: LivePlanner) -> dict:
    """The report's ``live`` section (issue 12): host latency, the mode and D, the onset
    deviation from D (fixed mode, where there is a sensor), the notes' fates."""
    st = planner.stats
    o = st.outcomes
    fixed = planner.options.mode.value == "fixed"
    dev = None
    if perf is not None and perf.heard:
        d = planner.latency_us
        m = latencies(perf, session, planner)
        dev = quantiles_ms([abs(x.latency_us - d) for x in m]) if fixed else None
    return {
        "host_latency_ms": quantiles_ms(session.host_us),
        "latency_mode": planner.options.mode.value,
        "latency_ms": round(planner.latency_us / 1000, 3) if fixed else None,
        "onset_deviation_ms": dev,
        "notes_in": st.notes_in,
        "notes_sounded": o["on_time"] + o["late"],
        "notes_dropped": sum(v for k, v in o.items() if k.startswith("dropped")),
        "late": o["late"],
        "merged": o["merged"],
        "cancelled": o["cancelled"],
        "outcomes": dict(o),
        "note_offs_in_flight": st.offs_in_flight,
        "note_offs_unmatched": st.offs_unmatched,
        "panics": st.panics,
        "ignored": dict(st.ignored),
        "stop_reason": session.stop_reason or None,
    }

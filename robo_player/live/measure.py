"""What a live run measured: each sounded note's latency (heard onset - its message).

Notes are paired with heard onsets on their key as the file report pairs them
(:func:`robo_player.matching.match_onsets`: one onset a note, nearest to the planned sound
time (message + planned delay) within ``window_us``, and, on the piano, where the strike
time is known, no onset sooner after the strike than a share of its planned latency: a
re-strike is not "heard" by the previous strike's late sound); notes with no such onset
are not measured. Used by ``--report``, the bench and the tests.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..matching import Window, match_onsets
from ..performance import Performance
from ..planner.report import Fate, NoteOutcome, PlanReport
from .family import AnyLivePlanner
from .guitar import GuitarLivePlanner
from .session import Arrival, LiveSession

__all__ = [
    "Measured",
    "file_report",
    "latencies",
    "live_plan_report",
    "live_report",
    "quantiles_ms",
    "sounded_pitch",
]


@dataclass(frozen=True, slots=True)
class Measured:
    t_us: int  # message time
    pitch: int
    velocity: int
    latency_us: int  # heard onset - message time


def latencies(
    perf: Performance, session: LiveSession, planner: AnyLivePlanner, window_us: int = 30_000
) -> list[Measured]:
    """Every sounded note that was heard, with its measured latency."""
    want: list[tuple[Arrival, int, int | None]] = []  # (arrival, sound time, strike time)
    delays = iter(planner.stats.delays_us)  # one per strike planned, in arrival order
    for a in session.arrivals:
        if a.outcome not in ("on_time", "late"):
            continue
        delay = next(delays)
        if a.answer:
            continue  # the robot's own answer: no player's message to measure from
        want.append((a, a.t_us + delay, _strike_us(planner, a, delay)))
    pairs = match_onsets(
        ((t, sounded_pitch(planner, a)) for a, t, _s in want),
        ((h.t_us, h.pitch) for h in perf.heard),
        Window(window_us, window_us),
        strikes=[s for _a, _t, s in want],
    )
    out: list[Measured] = []
    for i, (a, _t, _s) in enumerate(want):
        j = pairs.get(i)
        if j is not None:
            out.append(Measured(a.t_us, a.pitch, a.velocity, perf.heard[j].t_us - a.t_us))
    return out


def _strike_us(planner: AnyLivePlanner, a: Arrival, delay_us: int) -> int | None:
    """When the piano's strike for sounded note ``a`` was planned (its sound time less
    the key's latency), for the matcher's causality rule; None on a guitar (as the file
    planner, which sets no strike times there)."""
    if isinstance(planner, GuitarLivePlanner) or a.note not in planner.played:
        return None
    return a.t_us + delay_us - planner.played[a.note][1]


def sounded_pitch(planner: AnyLivePlanner, a: Arrival) -> int:
    """The pitch note ``a`` was played at (moved by octaves into range, or, on a
    guitar, an octave off where no string was free in time)."""
    pitch_of = getattr(planner, "pitch_of", None)
    if pitch_of is not None and a.note in pitch_of:
        return int(pitch_of[a.note])
    key = planner._key_of(a.pitch)
    return a.pitch if key is None else key


def quantiles_ms(xs: list[float]) -> dict[str, float] | None:
    """p50, p99, max of values in µs, as ms (None for no values)."""
    if not xs:
        return None
    s = sorted(xs)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(round(p * (len(s) - 1))))] / 1000, 3)

    return {"p50": q(0.5), "p99": q(0.99), "max": round(s[-1] / 1000, 3)}


_DROP_REASONS = {
    "merged": "merged: a repeat faster than the key can repeat (the key stayed down)",
    "cancelled": "cancelled (a panic, or the answer stopped) before its strike was sent",
    "dropped_rate": "over the note rate limit",
    "dropped_out_of_range": "outside the instrument's range",
    "dropped_heat": "coil heat limit",
}


def live_plan_report(session: LiveSession, planner: AnyLivePlanner) -> PlanReport:
    """The player's notes as a file's plan report: each note-on's intended time is its
    arrival + ``D`` (fixed mode) or + its planned delay (lowest mode); a late note is
    altered (by how much), merged/cancelled/dropped notes are dropped (why)."""
    rep = PlanReport(spec_name=planner.spec.name, calibrated=planner.calibrated)
    rep.supply_overloads = planner.supply_overloads()
    delays = iter(planner.stats.delays_us)  # one per strike planned, in arrival order
    fixed = planner.options.mode.value == "fixed"
    for a in session.arrivals:
        sounded = a.outcome in ("on_time", "late")
        delay = next(delays) if sounded else 0
        if a.answer:
            continue
        want = a.t_us + (planner.latency_us if fixed else delay)
        fate, reason = Fate.PLAYED, None
        changes: dict[str, int | float] = {}
        if a.outcome == "late":
            fate, changes = Fate.ALTERED, {"onset_us": a.t_us + delay - want}
            reason = "could not make D (a key still returning, the supply busy, a soft velocity)"
        elif not sounded:
            fate, reason = Fate.DROPPED, _DROP_REASONS.get(a.outcome, a.outcome)
        rep.outcomes.append(NoteOutcome(
            len(rep.outcomes), a.pitch, sounded_pitch(planner, a), fate,
            a.t_us + delay if sounded else want, want, a.velocity, None, changes, reason,
            strike_t_us=_strike_us(planner, a, delay) if sounded else None,
        ))  # fmt: skip
    return rep


def file_report(
    perf: Performance, session: LiveSession, planner: AnyLivePlanner, *, piece: str, port: str,
    calibration: object = None,
) -> dict[str, Any]:  # fmt: skip
    """``--report``: the file report's keys (``docs/report.md``) for the player's notes,
    plus ``live`` (:func:`live_report`)."""
    from ..report import build_report

    return build_report(
        plan_report=live_plan_report(session, planner), performance=perf, piece=piece,
        spec=planner.spec, port=port, calibration=calibration,
        extra={"live": live_report(perf, session, planner)},
    )  # fmt: skip


def live_report(perf: Performance | None, session: LiveSession, planner: AnyLivePlanner) -> dict:
    """The report's ``live`` section (issue 12): host latency, the mode and D, the onset
    deviation from D (fixed mode, where there is a sensor), the notes' fates."""
    st = planner.stats
    o = st.outcomes
    notes_in = st.notes_in
    if any(a.answer for a in session.arrivals):
        # the answers' notes went through the planner too: count the player's alone
        # (by their outcome on arrival)
        o = Counter(a.outcome for a in session.arrivals if not a.answer)
        notes_in = sum(o.values())
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
        "notes_in": notes_in,
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
        **(
            {
                "heat_overloads": planner.heat_overloads(),
                "refingered": planner.refingered,
                "octave_moved": planner.octave_moved,
                "held_notes_cut": planner.cuts,
            }
            if isinstance(planner, GuitarLivePlanner)
            else {}
        ),  # fmt: skip
    }

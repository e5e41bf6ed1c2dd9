"""The performance report: how faithfully a piece was played.

Built from the plan report (what the planner did to every note) and the device's
:class:`~robo_player.performance.Performance` (what the sensor heard). Heard onsets
are paired with planned notes by :mod:`robo_player.matching` (same pitch, nearest time,
within ±80 ms of the note's target time). The JSON layout is documented
in ``docs/report.md``; other tools read it, so keys are only ever added.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .matching import ONSET_WINDOW, Window, match_onsets
from .performance import HeardNote, Performance

REPORT_VERSION = 1
MATCH_WINDOW_US = ONSET_WINDOW.after_us  # kept for readers of the old name


def _stats(values: Sequence[float], keys: tuple[str, ...]) -> dict[str, float | None]:
    if len(values) == 0:
        return {k: None for k in keys}
    a = np.asarray(values, dtype=float)
    out: dict[str, float | None] = {}
    for k in keys:
        if k == "mean":
            out[k] = float(a.mean())
        elif k == "max":
            out[k] = float(a.max())
        elif k.startswith("p"):
            out[k] = float(np.percentile(a, float(k[1:])))
    return {k: (round(v, 4) if v is not None else None) for k, v in out.items()}


def match_heard(
    outcomes: Sequence[Any], heard: Sequence[HeardNote], window_us: int | None = None
) -> dict[int, HeardNote]:
    """Map outcome index -> the heard note it produced: :func:`robo_player.matching.
    match_onsets` on each played or altered outcome's target time and output pitch
    (dropped notes are never sounded), with each outcome's ``strike_t_us`` for the
    causality rule. ``window_us``: a symmetric window instead of
    :data:`~robo_player.matching.ONSET_WINDOW`."""
    wanted = [o for o in outcomes if o.fate.name != "DROPPED"]
    window = ONSET_WINDOW if window_us is None else Window(window_us, window_us)
    pairs = match_onsets(
        ((o.target_t_us, o.pitch_out) for o in wanted), ((h.t_us, h.pitch) for h in heard), window,
        strikes=[o.strike_t_us for o in wanted],
    )
    return {wanted[i].index: heard[j] for i, j in pairs.items()}


def note_time(score: Any, t_us: int) -> str:
    """Where a score time falls, as a person finds it: ``bar:beat`` (bars of four
    beats, beats counted from 1, to a tenth) where the file has a tempo map, else
    seconds (``12.35 s``)."""
    tm = list(getattr(score, "tempo_map", None) or [])
    tpb = int(getattr(score, "ticks_per_beat", 0) or 0)
    if not tm or tpb <= 0:
        return f"{t_us / 1e6:.2f} s"
    cur = tm[0]
    for tc in tm[1:]:
        if tc.t_us > t_us:
            break
        cur = tc
    beats = (cur.tick / tpb) + (t_us - cur.t_us) / cur.us_per_beat
    beats = max(0.0, beats)
    bar, beat = divmod(beats, 4.0)
    return f"{int(bar) + 1}:{beat + 1:.1f}"


def placed_entries(entries: list[dict[str, Any]], score: Any, outcomes: Sequence[Any]) -> list[dict[str, Any]]:
    """Drops and alterations with where (``at``: bar:beat or seconds) and which pitch."""
    from .pitch import pitch_name

    by_index = {o.index: o for o in outcomes}
    out = []
    for e in entries:
        e = dict(e)
        o = by_index.get(e.get("note", -1))
        if o is not None and score is not None and 0 <= o.index < len(score.notes):
            n = score.notes[o.index]
            e["at"] = note_time(score, n.onset_us)
            e["t_s"] = round(n.onset_us / 1e6, 3)
            e["pitch"] = pitch_name(o.pitch_in)
            e["channel"] = n.channel + 1  # MIDI channels as people count them, 1..16
        out.append(e)
    return out


def build_report(
    *,
    plan_report: Any,
    performance: Performance,
    piece: str,
    spec: Any,
    port: str,
    calibration: Any = None,
    extra: dict[str, Any] | None = None,
    score: Any = None,
) -> dict[str, Any]:
    """The report JSON (see docs/report.md).

    A port with no sensor (``performance.extra["heard"] is None``) gets ``heard: null``
    and ``heard_reason``; the figures only a sensor can give (onset and velocity
    errors, unheard notes, coil temperatures and failures) are left out, not zeroed.
    After ``--resume``, the notes whose every command came before the resume point were
    played by an earlier run: not counted as unheard (``notes_before_resume``).
    """
    pr = plan_report.to_json()
    sensed = performance.extra.get("heard", True) is not None
    before = _notes_before(performance)
    not_reached = _notes_not_reached(performance)
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "piece": piece,
        "spec": spec.name,
        "spec_hash": spec.spec_hash,
        "port": port,
        "notes_in": pr["notes_in"],
        "notes_played": pr["notes_played"],
        "notes_altered": pr["notes_altered"],
        "notes_dropped": pr["notes_dropped"],
        "notes_sounded": pr["notes_played"] + pr["notes_altered"],
        "drops": placed_entries(pr["drops"], score, plan_report.outcomes),
        "alterations": placed_entries(pr.get("alterations", []), score, plan_report.outcomes),
    }
    if sensed:
        report.update(_heard_figures(plan_report, performance, before | not_reached))
        report["heard"] = len(performance.heard)
    if before:
        report["notes_before_resume"] = len(before)
    if not_reached:
        report["notes_not_reached"] = len(not_reached)
    report["plan"] = {k: v for k, v in pr.items() if k not in {"drops", "alterations"}}
    if calibration is not None and getattr(calibration, "measured", False):
        report["calibration_strikes_per_key"] = round(calibration.strikes_per_key, 3)
    if performance.link is not None:
        report["link"] = performance.link
    lists = ("resume_notes_before", "notes_not_reached")  # counted above, not listed
    report.update({k: v for k, v in performance.extra.items() if k not in lists})
    if extra:
        report.update(extra)
    return report


def _notes_before(performance: Performance) -> set[int]:
    """Score notes an earlier run played (``play --resume``): the device lists the notes
    whose every command lies before the resume point (``resume_notes_before``)."""
    return {int(n) for n in performance.extra.get("resume_notes_before", ())}


def _notes_not_reached(performance: Performance) -> set[int]:
    """Score notes a run that stopped early never struck (``notes_not_reached``)."""
    return {int(n) for n in performance.extra.get("notes_not_reached", ())}


def heard_loudness(h: HeardNote) -> bool:
    """Whether the ear read ``h``'s loudness: a microphone's detector times a note it
    cannot read the loudness of (a soft key struck again while it rings louder: the
    attack's power is no more than the ringing's) and hands it over with velocity 0; its
    onset counts, its loudness does not."""
    return math.isfinite(h.velocity) and h.velocity > 0.0


def _heard_figures(
    plan_report: Any, performance: Performance, before: set[int]
) -> dict[str, Any]:
    matched = match_heard(plan_report.outcomes, performance.heard)
    onset_err: list[float] = []
    onset_signed: list[float] = []
    vel_err: list[float] = []
    unread = 0  # heard notes whose loudness the ear could not read (velocity 0)
    altered_onset: list[float] = []
    unheard: list[int] = []
    for o in plan_report.outcomes:
        if o.fate.name == "DROPPED" or o.index in before:
            continue
        h = matched.get(o.index)
        if h is None:
            unheard.append(o.index)
            continue
        if o.fate.name == "PLAYED":
            dt_ms = (h.t_us - o.intended_t_us) / 1000.0
            onset_signed.append(dt_ms)
            onset_err.append(abs(dt_ms))
            if heard_loudness(h):
                vel_err.append(abs(h.velocity - o.velocity_in))
            else:
                unread += 1
        else:
            altered_onset.append(abs(h.t_us - o.target_t_us) / 1000.0)
    return {
        "onset_error_ms": {
            **_stats(onset_err, ("mean", "p50", "p99", "max")),
            "mean_signed": round(float(np.mean(onset_signed)), 4) if onset_signed else None,
            "n": len(onset_err),
        },
        "velocity_error": {**_stats(vel_err, ("mean", "p99")), "n": len(vel_err), "unread": unread},
        "altered_onset_error_ms": _stats(altered_onset, ("mean", "p99", "max")),
        "notes_unheard": len(unheard),
        "unheard": unheard[:200],
        "max_coil_temp_ratio": round(performance.max_coil_temp_ratio, 4),
        "coil_failures": performance.coil_failures,
    }


def _f(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few human lines for the terminal."""
    sounded = report.get("notes_sounded", report["notes_played"] + report["notes_altered"])
    head = (
        f"notes: {report['notes_in']} in, {sounded} sounded: {report['notes_played']} as "
        f"written, {report['notes_altered']} altered; {report['notes_dropped']} dropped"
    )
    lines = []
    if "notes_unheard" in report:
        lines.append(f"{head}; {report['notes_unheard']} unheard")
        oe, ve = report["onset_error_ms"], report["velocity_error"]
        lines += [
            f"onset error (ms): mean {_f(oe['mean'])}  p50 {_f(oe['p50'])}  "
            f"p99 {_f(oe['p99'])}  max {_f(oe['max'])}",
            f"velocity error: mean {_f(ve['mean'])}  p99 {_f(ve['p99'])}"
            + (f"  ({ve['unread']} heard notes' loudness unread)" if ve.get("unread") else ""),
            f"coils: max temperature ratio {report['max_coil_temp_ratio']:.3f}, "
            f"{len(report['coil_failures'])} failures",
        ]
    else:
        lines.append(head)
        lines.append(f"heard: nothing ({report.get('heard_reason', 'no sensor on this port')})")
    for kind, key in (("dropped", "drops"), ("altered", "alterations")):
        items = report.get(key) or []
        for e in items[:3]:
            where = f"{e['pitch']} at {e['at']}" if "at" in e else f"note {e.get('note')}"
            lines.append(f"  {kind}: {where}: {e.get('reason')}")
        if len(items) > 3:
            lines.append(f"  ... {len(items) - 3} more {kind} (report: {key})")
    if report.get("notes_not_reached"):
        lines.append(f"stopped: {report['notes_not_reached']} notes never struck")
    if report.get("notes_before_resume"):
        lines.append(f"resumed: {report['notes_before_resume']} notes played by the earlier run")
    supply = report.get("plan", {}).get("supply_overloads", 0)
    if supply:
        lines.append(f"supply: {supply} strikes planned over the supply's current limit")
    cmds = report.get("commands")
    if cmds:
        executed = cmds.get("played", 0) + cmds.get("played_cut_off", 0)
        late = cmds.get("late", 0) + cmds.get("late_release", 0)
        refused = sum(v for k, v in cmds.items() if k.startswith("refused"))
        other = {k: v for k, v in cmds.items()
                 if k not in ("played", "played_cut_off", "late", "late_release")
                 and not k.startswith("refused")}  # fmt: skip
        line = f"commands: {executed} executed, {late} late, {refused} refused"
        if other:
            line += ", " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(other.items()))
        lines.append(line)
        fc = report.get("firmware_counts")
        if fc and not report.get("counts_agree", True):
            lines.append(
                f"firmware counts differ: played {fc.get('played')}, late {fc.get('late')}, "
                f"refused {fc.get('refused')}, flushed {fc.get('flushed')} "
                "(reports from the device were lost; see `reconciliation`)"
            )
    silent = report.get("silent_strikes")
    if silent:
        lines.append(f"silent strikes: {silent} of {report.get('strikes', '?')} strikes too weak "
                     "to sound")  # fmt: skip
    sag = report.get("min_supply_scale")
    if sag is not None and sag < 1.0:
        lines.append(f"supply sagged: strikes down to {sag:.0%} of their energy")
    link = report.get("link")
    if link:
        lines.append(
            f"link: {link.get('bytes_sent', 0)} bytes sent, {link.get('bytes_received', 0)} "
            f"received, {link.get('retransmits', 0)} retransmits, rtt {_f(link.get('rtt_ms'))} ms"
        )
    if "calibration_strikes_per_key" in report:
        lines.append(f"calibration: {report['calibration_strikes_per_key']:.1f} strikes per key")
    if "actuation_error_us" in report:
        ae = report["actuation_error_us"]
        lines.append(f"actuation error (us): mean {_f(ae.get('mean'))}  p99 {_f(ae.get('p99'))}")
    if report.get("error"):
        lines.append(f"stopped early: {report['error']}")
    return lines

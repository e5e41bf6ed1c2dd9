"""The performance report: how faithfully a piece was played.

Built from the plan report (what the planner did to every note) and the device's
:class:`~robo_player.performance.Performance` (what the sensor heard). Heard onsets
are paired with planned notes by :mod:`robo_player.matching` (same pitch, nearest time,
within ±80 ms of the note's target time). The JSON layout is documented
in ``docs/report.md``; other tools read it, so keys are only ever added.
"""

from __future__ import annotations

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
    (dropped notes are never sounded). ``window_us``: a symmetric window instead of
    :data:`~robo_player.matching.ONSET_WINDOW`."""
    wanted = [o for o in outcomes if o.fate.name != "DROPPED"]
    window = ONSET_WINDOW if window_us is None else Window(window_us, window_us)
    pairs = match_onsets(
        ((o.target_t_us, o.pitch_out) for o in wanted), ((h.t_us, h.pitch) for h in heard), window
    )
    return {wanted[i].index: heard[j] for i, j in pairs.items()}


def build_report(
    *,
    plan_report: Any,
    performance: Performance,
    piece: str,
    spec: Any,
    port: str,
    calibration: Any = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report JSON (see docs/report.md)."""
    pr = plan_report.to_json()
    matched = match_heard(plan_report.outcomes, performance.heard)
    onset_err: list[float] = []
    onset_signed: list[float] = []
    vel_err: list[float] = []
    altered_onset: list[float] = []
    unheard: list[int] = []
    for o in plan_report.outcomes:
        if o.fate.name == "DROPPED":
            continue
        h = matched.get(o.index)
        if h is None:
            unheard.append(o.index)
            continue
        if o.fate.name == "PLAYED":
            dt_ms = (h.t_us - o.intended_t_us) / 1000.0
            onset_signed.append(dt_ms)
            onset_err.append(abs(dt_ms))
            vel_err.append(abs(h.velocity - o.velocity_in))
        else:
            altered_onset.append(abs(h.t_us - o.target_t_us) / 1000.0)
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
        "drops": pr["drops"],
        "alterations": pr.get("alterations", []),
        "onset_error_ms": {
            **_stats(onset_err, ("mean", "p50", "p99", "max")),
            "mean_signed": round(float(np.mean(onset_signed)), 4) if onset_signed else None,
            "n": len(onset_err),
        },
        "velocity_error": {**_stats(vel_err, ("mean", "p99")), "n": len(vel_err)},
        "altered_onset_error_ms": _stats(altered_onset, ("mean", "p99", "max")),
        "notes_unheard": len(unheard),
        "unheard": unheard[:200],
        "max_coil_temp_ratio": round(performance.max_coil_temp_ratio, 4),
        "coil_failures": performance.coil_failures,
        "plan": {k: v for k, v in pr.items() if k not in {"drops", "alterations"}},
    }
    if calibration is not None and getattr(calibration, "measured", False):
        report["calibration_strikes_per_key"] = round(calibration.strikes_per_key, 3)
    if performance.link is not None:
        report["link"] = performance.link
    report.update(performance.extra)
    if extra:
        report.update(extra)
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few human lines for the terminal."""
    oe, ve = report["onset_error_ms"], report["velocity_error"]

    def f(x: float | None, nd: int = 2) -> str:
        return "-" if x is None else f"{x:.{nd}f}"

    lines = [
        f"notes: {report['notes_in']} in, {report['notes_played']} played, "
        f"{report['notes_altered']} altered, {report['notes_dropped']} dropped, "
        f"{report['notes_unheard']} unheard",
        f"onset error (ms): mean {f(oe['mean'])}  p50 {f(oe['p50'])}  p99 {f(oe['p99'])}  max {f(oe['max'])}",
        f"velocity error: mean {f(ve['mean'])}  p99 {f(ve['p99'])}",
        f"coils: max temperature ratio {report['max_coil_temp_ratio']:.3f}, "
        f"{len(report['coil_failures'])} failures",
    ]
    if "calibration_strikes_per_key" in report:
        lines.append(f"calibration: {report['calibration_strikes_per_key']:.1f} strikes per key")
    if "actuation_error_us" in report:
        ae = report["actuation_error_us"]
        lines.append(f"actuation error (us): mean {f(ae.get('mean'))}  p99 {f(ae.get('p99'))}")
    return lines

"""The guitar's piano roll: one lane per string, each note a box labelled with its fret.

Intended notes (the plan's fingering) are boxes on their string's lane from the target
time for the written duration, labelled with the fret (0: open); heard notes are
markers on the lane of the intended note they are paired with
(:func:`robo_player.matching.match_onsets`, same pitch, ±80 ms), coloured by loudness
error; a buzzed note is a red ring, a heard note paired with nothing a black cross on
the lane of the nearest string that has its pitch. Matplotlib (Agg), PNG, atomic.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...fileio import atomic_path
from ...matching import match_onsets
from ...performance import HeardNote

log = logging.getLogger(__name__)

ERROR_RANGE = 20.0


def intended_from(score: Any, plan_report: Any) -> list[tuple[int, int, int, int, int, float]]:
    """(t_us, string, fret, duration_us, pitch, velocity) of every note the plan plays
    (duck-typed: a score's ``notes`` and a guitar plan report's ``outcomes`` and
    ``fingering``)."""
    out = []
    for o in plan_report.outcomes:
        sf = plan_report.fingering.get(o.index)
        if sf is None or o.fate.name == "DROPPED":
            continue
        n = score.notes[o.index]
        out.append((o.target_t_us, sf[0], sf[1], n.duration_us, o.pitch_out, float(n.velocity)))
    return out


def plot_guitar_roll(
    spec: Any,
    intended: Sequence[tuple[int, int, int, int, int, float]],
    heard: Sequence[HeardNote],
    path: str | Path,
    *,
    buzzes: Sequence[dict[str, int]] = (),
    title: str = "",
) -> Path:
    """Draw the roll (see the module doc) and write a PNG atomically; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    path = Path(path)
    n_str = len(spec.strings)
    end_s = max([(t + d) / 1e6 for t, _s, _f, d, _p, _v in intended]
                + [h.t_us / 1e6 for h in heard] + [1.0])  # fmt: skip
    fig = Figure(figsize=(min(40.0, max(8.0, end_s * 0.6)), 1.0 + 0.6 * n_str), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    boxes = [Rectangle((t / 1e6, s - 0.35), d / 1e6, 0.7) for t, s, _f, d, _p, _v in intended]
    ax.add_collection(PatchCollection(boxes, facecolor=(0.12, 0.47, 0.71, 0.35),
                                      edgecolor="navy", linewidth=0.4))  # fmt: skip
    if len(intended) <= 600:  # fret labels while they stay legible
        for t, s, f, _d, _p, _v in intended:
            ax.text(t / 1e6 + 0.004 * end_s, s + 0.18, str(f), fontsize=6, va="center", ha="left")
    pairs = match_onsets(((t, p) for t, _s, _f, _d, p, _v in intended), ((h.t_us, h.pitch) for h in heard))
    lane = {j: intended[i][1] for i, j in pairs.items()}
    err = {j: heard[j].velocity - intended[i][5] for i, j in pairs.items()}
    xs = [heard[j].t_us / 1e6 for j in lane]
    ys = [lane[j] for j in lane]
    norm = Normalize(-ERROR_RANGE, ERROR_RANGE)
    sc = ax.scatter(xs, ys, c=[err[j] for j in lane], cmap="coolwarm", norm=norm, s=18,
                    edgecolors="k", linewidths=0.4, zorder=3)  # fmt: skip
    stray = [j for j in range(len(heard)) if j not in lane]
    if stray:
        def lane_of(p: int) -> int:
            ok = [s for s in range(n_str) if spec.open_pitch(s) <= p]
            return max(ok) if ok else 0

        ax.scatter([heard[j].t_us / 1e6 for j in stray], [lane_of(heard[j].pitch) for j in stray],
                   c="k", marker="x", s=18, zorder=3, label="unmatched")  # fmt: skip
    if buzzes:
        ax.scatter([b["t_us"] / 1e6 for b in buzzes], [b["string"] for b in buzzes], s=60,
                   facecolors="none", edgecolors="red", linewidths=1.0, zorder=4, label="buzz")  # fmt: skip
    if stray or buzzes:
        ax.legend(loc="upper right", fontsize=8)
    cb = fig.colorbar(sc, ax=ax, pad=0.01)
    cb.set_label("loudness error (velocity)")
    ax.set_yticks(range(n_str))
    ax.set_yticklabels([f"{s}: {_name(spec.open_pitch(s))}" for s in range(n_str)])
    ax.set_ylim(-0.6, n_str - 0.4)
    ax.set_xlim(0.0, end_s * 1.02)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("string (open pitch)")
    ax.set_title(title or f"{len(intended)} intended, {len(heard)} heard ({len(pairs)} matched); "
                 "box labels: fret")  # fmt: skip
    ax.grid(True, axis="x", linewidth=0.3, alpha=0.5)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    log.info("wrote %s", path)
    return path


def _name(pitch: int) -> str:
    from ...pitch import pitch_name

    return pitch_name(pitch)


__all__ = ["intended_from", "plot_guitar_roll"]

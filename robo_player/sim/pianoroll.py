"""Piano roll of intended against heard notes (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..fileio import atomic_path
from ..matching import match_onsets
from ..performance import HeardNote

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

# Loudness error (heard − intended, velocity units) that saturates the colour map.
ERROR_RANGE = 20.0


def _match_errors(
    intended: Sequence[tuple[int, int, int, float]],
    heard: Sequence[HeardNote],
    strikes: Sequence[int | None] | None = None,
) -> list[float | None]:
    """For each heard note, loudness error against the intended note it is paired with
    (:func:`robo_player.matching.match_onsets`, with each note's strike time where
    known, for its causality rule: as the report pairs them), None for a stray onset."""
    pairs = match_onsets(
        ((t, p) for t, p, _d, _v in intended), ((h.t_us, h.pitch) for h in heard), strikes=strikes
    )
    errs: list[float | None] = [None] * len(heard)
    for i, j in pairs.items():
        errs[j] = heard[j].velocity - float(intended[i][3])
    return errs


ROW_S = 30.0  # seconds of music per row: notes stay readable
MAX_ROWS = 12  # a longer piece gets longer rows rather than a taller image


def roll_rows(end_s: float) -> tuple[float, int]:
    """(seconds per row, rows) for a piece ``end_s`` long."""
    rows = max(1, math.ceil(end_s / ROW_S - 1e-9))
    if rows <= MAX_ROWS:
        return ROW_S, rows
    return math.ceil(end_s / MAX_ROWS), MAX_ROWS


def pianoroll_figure(
    intended: Sequence[tuple[int, int, int, float]],
    heard: Sequence[HeardNote],
    *,
    title: str = "",
    strikes: Sequence[int | None] | None = None,
) -> Figure:
    """The piano roll as a matplotlib Figure (rows of :data:`ROW_S` s; see
    :func:`plot_pianoroll`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    end_s = max(
        [(t + d) / 1e6 for t, _p, d, _v in intended]
        + [(h.end_us if h.end_us is not None else h.t_us) / 1e6 for h in heard]
        + [1.0]
    )
    row_s, rows = roll_rows(end_s)
    pitches = [p for _t, p, _d, _v in intended] + [h.pitch for h in heard]
    lo, hi = (min(pitches) - 2, max(pitches) + 2) if pitches else (20, 109)
    width = min(24.0, max(8.0, min(end_s, row_s) * 0.6))
    fig = Figure(figsize=(width, 1.2 + 3.2 * rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    errs = _match_errors(intended, heard, strikes)
    norm = Normalize(-ERROR_RANGE, ERROR_RANGE)
    density = len(heard) / min(end_s, row_s) if rows == 1 else len(heard) / end_s
    size = 22.0 if density < 5 else max(6.0, 110.0 / density)
    alphas = [0.25 + 0.6 * min(max(v, 0.0), 127.0) / 127.0 for _t, _p, _d, v in intended]
    boxes = [Rectangle((t / 1e6, p - 0.4), d / 1e6, 0.8) for t, p, d, _v in intended]
    tails = [
        [(h.t_us / 1e6, h.pitch), (h.end_us / 1e6, h.pitch)] for h in heard if h.end_us is not None
    ]
    m_x = [h.t_us / 1e6 for h, e in zip(heard, errs, strict=True) if e is not None]
    m_y = [h.pitch for h, e in zip(heard, errs, strict=True) if e is not None]
    m_c = [e for e in errs if e is not None]
    extra = [(h.t_us / 1e6, h.pitch) for h, e in zip(heard, errs, strict=True) if e is None]
    sc = None
    for r, ax in enumerate(axes):
        pc = PatchCollection(boxes, edgecolor="navy", linewidth=0.4)
        pc.set_facecolor([(0.12, 0.47, 0.71, a) for a in alphas])
        ax.add_collection(pc)
        if tails:
            ax.add_collection(LineCollection(tails, colors="0.35", linewidths=0.6))
        sc = ax.scatter(m_x, m_y, c=m_c, cmap="coolwarm", norm=norm, s=size, marker="o",
                        edgecolors="k", linewidths=0.4, zorder=3)  # fmt: skip
        if extra:
            ax.scatter([x for x, _ in extra], [y for _, y in extra], c="k", marker="x", s=size,
                       zorder=3)  # fmt: skip
        ax.set_xlim(r * row_s, (r + 1) * row_s if rows > 1 else end_s * 1.02)
        ax.set_ylim(lo, hi)
        ax.set_ylabel("MIDI pitch")
        ax.grid(True, axis="y", linewidth=0.3, alpha=0.5)
    axes[-1].set_xlabel("time (s)")
    legend = [
        Patch(facecolor=(0.12, 0.47, 0.71, 0.6), edgecolor="navy",
              label="intended note (darker = louder)"),  # fmt: skip
        Line2D([], [], marker="o", ls="", mfc="0.8", mec="k", label="heard onset (colour: loudness error)"),
        Line2D([], [], marker="x", ls="", color="k", label="heard, no intended note"),
        Line2D([], [], color="0.35", lw=0.8, label="heard until damped"),
    ]
    axes[0].legend(handles=legend, loc="upper right", fontsize=7, framealpha=0.85)
    if sc is not None:
        cb = fig.colorbar(sc, ax=list(axes), pad=0.01, fraction=0.03)
        cb.set_label("loudness error (heard − intended, velocity)")
    n_match = len(m_c)
    head = title or "piano roll"
    axes[0].set_title(
        f"{head}: {len(intended)} intended, {len(heard)} heard ({n_match} matched)"
        + (f"; {rows} rows of {row_s:g} s" if rows > 1 else "")
    )
    return fig


def plot_pianoroll(
    intended: Sequence[tuple[int, int, int, float]],
    heard: Sequence[HeardNote],
    path: str | Path,
    *,
    title: str = "",
    strikes: Sequence[int | None] | None = None,
) -> Path:
    """Draw ``intended`` notes (t_us, pitch, duration_us, velocity) as boxes and ``heard``
    onsets as markers coloured by loudness error; write a PNG atomically. Returns the path.

    Times are performance times in µs, shown in seconds; heard notes with an ``end_us``
    also get a thin line to their damping time. Heard notes with no intended note of the
    same pitch paired with them (:mod:`robo_player.matching`, ±80 ms; ``strikes``: each
    intended note's strike time or None, so that an onset too soon after a strike to be
    its sound is not paired with it, as the report pairs them) are drawn as black
    crosses. A legend names each mark. A long piece is split over rows of
    :data:`ROW_S` seconds (at most :data:`MAX_ROWS`; longer pieces get longer rows), so
    notes stay readable.
    """
    path = Path(path)
    fig = pianoroll_figure(intended, heard, title=title, strikes=strikes)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    log.info("wrote %s", path)
    return path

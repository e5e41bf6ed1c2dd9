"""Piano roll of intended against heard notes (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..fileio import atomic_path
from ..matching import match_onsets
from ..performance import HeardNote

log = logging.getLogger(__name__)

# Loudness error (heard − intended, velocity units) that saturates the colour map.
ERROR_RANGE = 20.0


def _match_errors(
    intended: Sequence[tuple[int, int, int, float]], heard: Sequence[HeardNote]
) -> list[float | None]:
    """For each heard note, loudness error against the intended note it is paired with
    (:func:`robo_player.matching.match_onsets`), None for a stray onset."""
    pairs = match_onsets(((t, p) for t, p, _d, _v in intended), ((h.t_us, h.pitch) for h in heard))
    errs: list[float | None] = [None] * len(heard)
    for i, j in pairs.items():
        errs[j] = heard[j].velocity - float(intended[i][3])
    return errs


def plot_pianoroll(
    intended: Sequence[tuple[int, int, int, float]],
    heard: Sequence[HeardNote],
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """Draw ``intended`` notes (t_us, pitch, duration_us, velocity) as boxes and ``heard``
    onsets as markers coloured by loudness error; write a PNG atomically. Returns the path.

    Times are performance times in µs, shown in seconds; heard notes with an ``end_us``
    also get a thin line to their damping time. Heard notes with no intended note of the
    same pitch paired with them (:mod:`robo_player.matching`, ±80 ms) are drawn as black
    crosses.
    """
    # Figure without pyplot: no global backend state; PNG is rendered by Agg.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    path = Path(path)
    end_s = max(
        [(t + d) / 1e6 for t, _p, d, _v in intended]
        + [(h.end_us if h.end_us is not None else h.t_us) / 1e6 for h in heard]
        + [1.0]
    )
    pitches = [p for _t, p, _d, _v in intended] + [h.pitch for h in heard]
    lo, hi = (min(pitches) - 2, max(pitches) + 2) if pitches else (20, 109)
    fig = Figure(figsize=(min(40.0, max(8.0, end_s * 0.6)), 6.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    boxes = [Rectangle((t / 1e6, p - 0.4), d / 1e6, 0.8) for t, p, d, _v in intended]
    alphas = [0.25 + 0.6 * min(max(v, 0.0), 127.0) / 127.0 for _t, _p, _d, v in intended]
    pc = PatchCollection(boxes, facecolor="tab:blue", edgecolor="navy", linewidth=0.4)
    pc.set_alpha(None)
    pc.set_facecolor([(0.12, 0.47, 0.71, a) for a in alphas])
    ax.add_collection(pc)

    errs = _match_errors(intended, heard)
    tails = [
        [(h.t_us / 1e6, h.pitch), (h.end_us / 1e6, h.pitch)] for h in heard if h.end_us is not None
    ]
    if tails:
        ax.add_collection(LineCollection(tails, colors="0.35", linewidths=0.6))
    m_x = [h.t_us / 1e6 for h, e in zip(heard, errs, strict=True) if e is not None]
    m_y = [h.pitch for h, e in zip(heard, errs, strict=True) if e is not None]
    m_c = [e for e in errs if e is not None]
    norm = Normalize(-ERROR_RANGE, ERROR_RANGE)
    density = len(heard) / end_s  # notes per second: smaller markers for dense pieces
    size = 22.0 if density < 5 else max(6.0, 110.0 / density)
    sc = ax.scatter(m_x, m_y, c=m_c, cmap="coolwarm", norm=norm, s=size, marker="o",
                    edgecolors="k", linewidths=0.4, zorder=3)
    extra = [(h.t_us / 1e6, h.pitch) for h, e in zip(heard, errs, strict=True) if e is None]
    if extra:
        ex_x = [x for x, _y in extra]
        ex_y = [y for _x, y in extra]
        ax.scatter(ex_x, ex_y, c="k", marker="x", s=size, zorder=3, label="unmatched")
        ax.legend(loc="upper right", fontsize=8)
    cb = fig.colorbar(sc, ax=ax, pad=0.01)
    cb.set_label("loudness error (heard − intended, velocity)")
    ax.set_xlim(0.0, end_s * 1.02)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MIDI pitch")
    n_match = len(m_c)
    ax.set_title(title or f"{len(intended)} intended, {len(heard)} heard ({n_match} matched)")
    ax.grid(True, axis="y", linewidth=0.3, alpha=0.5)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    log.info("wrote %s", path)
    return path

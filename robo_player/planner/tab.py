"""ASCII tablature of a guitar plan: the chosen string and fret of every played note.

One line per string, the highest string on top (as guitarists read tab), one column
per onset; systems wrap at ``width`` characters. Notes the plan dropped are listed
under the tab with their reasons.

    e|-0---3-|
    B|---1---|
    ...
"""

from __future__ import annotations

from ..score import Score
from ..spec.guitar import GuitarSpec
from ..spec.schema import pitch_to_note
from .guitar import GuitarPlanReport
from .report import Fate

__all__ = ["format_tab"]


def _label(spec: GuitarSpec, s: int) -> str:
    name = pitch_to_note(spec.open_pitch(s))
    return name[:-1] if name[-1].isdigit() and not name[-2].isdigit() else name


def format_tab(spec: GuitarSpec, score: Score, report: GuitarPlanReport, width: int = 78) -> str:
    """The tab as text (ends with a newline)."""
    n = len(spec.strings)
    labels = [_label(spec, s) for s in range(n)]
    for s in range(n):  # the higher of two strings with one name is lower-case (e, B, ..., E)
        if labels[s] in labels[:s]:
            labels[s] = labels[s].lower()
    pad = max(len(x) for x in labels)
    # columns: per onset, string -> fret text
    columns: list[dict[int, str]] = []
    last_onset: int | None = None
    for i, note in enumerate(score.notes):
        where = report.fingering.get(i)
        if where is None:
            continue
        if note.onset_us != last_onset:
            columns.append({})
            last_onset = note.onset_us
        s, f = where
        columns[-1][s] = str(f)
    header = [
        f"{spec.name}: tuning {' '.join(pitch_to_note(spec.open_pitch(s)) for s in range(n))}"
        + (f", capo {spec.neck.capo}" if spec.neck.capo else ""),
        f"fretter travel {report.fretter_travel_frets} frets "
        f"({report.fretter_travel_mm:.0f} mm), {report.string_changes} string changes",
        "",
    ]
    lines: list[str] = list(header)
    rows = [[] for _ in range(n)]  # type: list[list[str]]
    used = pad + 2
    for col in columns:
        w = max(len(x) for x in col.values()) + 1
        if used + w + 1 > width and rows[0]:
            lines += _system(rows, labels, pad)
            rows = [[] for _ in range(n)]
            used = pad + 2
        for s in range(n):
            rows[s].append(col.get(s, "").ljust(w - 1, "-") + "-")
        used += w
    if rows[0] or not columns:
        lines += _system(rows, labels, pad)
    drops = [o for o in report.outcomes if o.fate is Fate.DROPPED]
    if drops:
        lines.append(f"not played ({len(drops)}):")
        lines += [
            f"  note {o.index} ({pitch_to_note(o.pitch_in)} at {o.intended_t_us / 1e6:.3f} s): "
            f"{o.reason}"
            for o in drops
        ]
    return "\n".join(lines) + "\n"


def _system(rows: list[list[str]], labels: list[str], pad: int) -> list[str]:
    out = [f"{labels[s].ljust(pad)}|-{''.join(rows[s])}|" for s in range(len(rows) - 1, -1, -1)]
    return [*out, ""]

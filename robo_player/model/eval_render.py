"""Rendering evaluation on ASAP: each renderer plays every aligned test performance's
score, and its rendering is compared with the human performance of the same score.

Per performance: Pearson r of note velocities, of beat-level tempo (log inter-beat
interval on the score's quarter-note grid) and of articulation (log performed duration
over written duration at the local tempo), and the mean absolute velocity error; then the
mean over performances (a correlation with a constant rendering is undefined: NaN, null
in JSON). Renderers: the model, ``rules`` (render.py at its defaults), ``flat`` (the score
as written: the velocities and tempo marks of the piece's ``midi_score.mid`` where read,
else velocity 64 and the score's first tempo) and ``human`` (another pianist's performance
of the same piece, where ASAP has several: the ceiling).

Distributions (the Pianist Transformer protocol): Jensen-Shannon divergence (bits) between
the pooled rendered and human distributions of velocity, duration, inter-onset interval and
pedal (down or up at each onset), and their mean (``overall``). Pure numpy apart from the
model's forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..score import Note, Score
from . import score_features as sf
from .evaluate import js_divergence

Renderer = Callable[[sf.ScoreNotes], tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[float, int]]]]
METRICS = ("velocity_r", "tempo_r", "articulation_r", "velocity_mae")
FLAT_VELOCITY = 64


def score_tempo(root: Path, folder: str) -> float:
    """Seconds per quarter of the piece's ``midi_score.mid`` (its first tempo), else 0.5."""
    path = root / folder / "midi_score.mid"
    try:
        import mido

        for tr in mido.MidiFile(str(path)).tracks:
            for msg in tr:
                if msg.type == "set_tempo":
                    return float(msg.tempo) / 1e6
    except (OSError, ValueError, EOFError):
        pass
    return 0.5


def flat(s: sf.ScoreNotes) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[float, int]]]:
    """The score as written: its own velocities (dynamics) and tempo marks where the score
    MIDI has them, else velocity 64 and one tempo."""
    on = sf.notated_times(s)
    spq = np.asarray(s.score_spq, float) if s.score_spq is not None else np.full(len(on), s.sec_per_q)
    vel = (np.clip(np.round(np.asarray(s.score_vel, float)), 1, 127).astype(int) if s.score_vel is not None
           else np.full(len(s.pitch), FLAT_VELOCITY))
    return on, s.dur_q * spq, vel, []


def rules(s: sf.ScoreNotes) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[float, int]]]:
    """render.py's rules at their defaults (seed 0) on the flat score."""
    from .render import RenderRules, perform

    on, dur, vel, _ = flat(s)
    sc = Score(notes=[Note(int(s.pitch[i]), round(on[i] * 1e6), max(1, round(dur[i] * 1e6)), int(vel[i]),
                           track=i) for i in range(len(on))])
    out = perform(sc, RenderRules(seed=0))
    r_on, r_dur, r_vel = np.zeros(len(on)), np.zeros(len(on)), np.zeros(len(on), int)
    for n in out.notes:
        r_on[n.track], r_dur[n.track], r_vel[n.track] = n.onset_us / 1e6, n.duration_us / 1e6, n.velocity
    return r_on, r_dur, r_vel, [(p.t_us / 1e6, p.value) for p in out.pedal]


def model_renderer(model: Any) -> Renderer:
    from .render_net import predict

    return lambda s: sf.render_notes(s, predict(model, s))


def _compare(a: sf.Measures, b: sf.Measures) -> dict[str, float]:
    sel = np.isfinite(a.velocity) & np.isfinite(b.velocity)
    mae = float(np.abs(a.velocity[sel] - b.velocity[sel]).mean()) if sel.any() else float("nan")
    return {"velocity_r": sf.pearson(a.velocity, b.velocity), "tempo_r": sf.pearson(a.beat_log_ibi, b.beat_log_ibi),
            "articulation_r": sf.pearson(a.articulation, b.articulation), "velocity_mae": mae}


def _human_measures(p: Any, beats: np.ndarray, rows: np.ndarray | None = None) -> sf.Measures:
    ok = p.p_vel >= 0
    if rows is not None:
        sel = rows
        return sf.measures(p.onset_q[sel], p.dur_q[sel], p.p_onset_s[sel], p.p_dur_s[sel], p.p_vel[sel],
                           ok[sel], beats)
    return sf.measures(p.onset_q, p.dur_q, p.p_onset_s, p.p_dur_s, p.p_vel, ok, beats)


class _Pool:
    """Pooled distributions for the Jensen-Shannon divergences."""

    VEL = np.arange(0, 132, 4)
    DUR = np.logspace(np.log10(0.01), np.log10(10.0), 41)
    IOI = np.logspace(np.log10(0.01), np.log10(4.0), 41)

    def __init__(self) -> None:
        self.h = {"velocity": np.zeros(len(self.VEL) - 1), "duration": np.zeros(len(self.DUR) - 1),
                  "ioi": np.zeros(len(self.IOI) - 1), "pedal": np.zeros(2)}

    def add(self, on: np.ndarray, dur: np.ndarray, vel: np.ndarray, pedal: np.ndarray) -> None:
        self.h["velocity"] += np.histogram(np.clip(vel, 0, 127), self.VEL)[0]
        self.h["duration"] += np.histogram(np.clip(dur, 0.01, 9.99), self.DUR)[0]
        t = np.unique(np.round(on, 3))
        self.h["ioi"] += np.histogram(np.clip(np.diff(t), 0.01, 3.99), self.IOI)[0]
        down = sf.pedal_at(pedal, on) >= 64 if len(pedal) else np.zeros(len(on), bool)
        self.h["pedal"] += np.bincount(down.astype(int), minlength=2)

    def js(self, other: _Pool) -> dict[str, float]:
        def norm(h: np.ndarray) -> np.ndarray:
            h = h + 1e-9
            return h / h.sum()

        out = {k: round(js_divergence(norm(self.h[k]), norm(other.h[k])), 4) for k in self.h}
        out["overall"] = round(float(np.mean(list(out.values()))), 4)
        return out


def evaluate_rendering(perfs: list[Any], renderers: dict[str, Renderer], root: Path | None = None,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """``{"rendering": {name: metrics + n}, "distributions": {name: js}}`` over ``perfs``
    (aligned performances; the ``human`` entry pairs performances of the same folder)."""
    perfs = [p for p in perfs if int((p.p_vel >= 0).sum()) >= 16]
    per: dict[str, list[dict[str, float]]] = {name: [] for name in (*renderers, "human")}
    pools = {name: _Pool() for name in renderers}
    human_pool = _Pool()
    tempo_cache: dict[str, float] = {}
    by_folder: dict[str, list[Any]] = {}
    for p in perfs:
        by_folder.setdefault(p.folder, []).append(p)
    for i, p in enumerate(perfs):
        if p.folder not in tempo_cache:
            tempo_cache[p.folder] = score_tempo(root, p.folder) if root else 0.5
        s = sf.from_performance(p, tempo_cache[p.folder])
        beats = sf.beat_grid(p.onset_q)
        ok = p.p_vel >= 0
        hm = _human_measures(p, beats)
        human_pool.add(p.p_onset_s[ok], p.p_dur_s[ok], p.p_vel[ok].astype(float), p.pedal)
        for name, fn in renderers.items():
            on, dur, vel, ped = fn(s)
            rm = sf.measures(p.onset_q, p.dur_q, on, dur, np.asarray(vel), np.ones(len(on), bool), beats)
            per[name].append(_compare(rm, hm))
            ped_arr = np.array([(round(t * 1e6), v) for t, v in ped], np.int64).reshape(-1, 2)
            pools[name].add(on, dur, np.asarray(vel, float), ped_arr)
        others = [o for o in by_folder[p.folder] if o is not p]
        if others:
            o = others[0]
            common, ia, ib = np.intersect1d(p.sid, o.sid, return_indices=True)
            if len(common) >= 16:
                a = _human_measures(p, beats, ia)
                b = _human_measures(o, beats, ib)
                per["human"].append(_compare(a, b))
        if progress:
            progress(i + 1, len(perfs))
    rendering = {}
    for name, rows in per.items():
        agg: dict[str, Any] = {}
        for k in METRICS:
            vals = np.array([r[k] for r in rows], float)
            agg[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        agg["performances"] = len(rows)
        # a renderer constant over a performance (flat: one tempo) has no r there; its mean is
        # over the performances where it is defined
        agg["defined"] = {k: int(np.isfinite(np.array([r[k] for r in rows], float)).sum()) for k in METRICS[:3]}
        rendering[name] = agg
    return {"rendering": rendering,
            "distributions": {name: pool.js(human_pool) for name, pool in pools.items()}}

"""Evaluation: NLL per event and per note, a smoothed n-gram baseline, and MusPy-style
sample statistics as distances to the held-out pieces.

NLL is summed over every event of every piece (the first event conditioned on BOS)
and divided by the number of events or of notes (NOTE_ON events). The LSTM reads each
piece in one pass; the Transformer reads windows of its context length with half-window
stride, scoring each event once with at least half a window of context.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..score import Score
from . import tokenizer as tk

log = logging.getLogger(__name__)

V = tk.VOCAB_SIZE
BOS = tk.BOS
_BASE = V + 1  # radix of the n-gram context hashes


# ---------------------------------------------------------------- neural NLL


def sequence_nll(model: Any, tokens: np.ndarray, batch_windows: int = 16) -> float:
    """Summed NLL (nats) of one piece under a network."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    dev = next(model.parameters()).device  # the model's device (a GPU run's too)
    toks = torch.as_tensor(np.asarray(tokens, dtype=np.int64)).to(dev)
    inp = torch.cat([torch.tensor([BOS], device=dev), toks[:-1]])
    codes = (torch.from_numpy(tk.state_codes(np.asarray(tokens))).to(dev)
             if getattr(model.config, "features", False) else None)
    with torch.inference_mode():
        if model.config.arch == "lstm":
            if codes is not None:
                logits = model(inp[None], codes[None])[0]
                return float(F.cross_entropy(logits.float(), toks, reduction="sum"))
            logits = model(inp[None])[0]
            return float(F.cross_entropy(logits.float(), toks, reduction="sum"))
        w = model.config.context
        n = len(toks)
        if n <= w:
            logits = model(inp[None])[0]
            return float(F.cross_entropy(logits.float(), toks, reduction="sum"))
        half = w // 2
        starts = list(range(0, n - w, half)) + [n - w]
        total, scored = 0.0, 0
        for b in range(0, len(starts), batch_windows):
            chunk = starts[b:b + batch_windows]
            x = torch.stack([inp[s:s + w] for s in chunk])
            cx = torch.stack([codes[s:s + w] for s in chunk]) if codes is not None else None
            logits = model(x, cx)  # (B, W, V)
            for j, s in enumerate(chunk):
                lo = max(0, scored - s)  # events before `scored` were scored by earlier windows
                if lo < w:
                    total += float(F.cross_entropy(logits[j, lo:].float(), toks[s + lo:s + w],
                                                   reduction="sum"))
                scored = s + w
        return total


@dataclass(slots=True)
class NLL:
    nats: float
    events: int
    notes: int

    @property
    def per_event(self) -> float:
        return self.nats / max(1, self.events)

    @property
    def per_note(self) -> float:
        return self.nats / max(1, self.notes)

    def to_json(self) -> dict[str, float]:
        return {"nll_per_event": round(self.per_event, 4), "nll_per_note": round(self.per_note, 4)}


def model_nll(model: Any, pieces: Sequence[np.ndarray]) -> NLL:
    nats = sum(sequence_nll(model, p) for p in pieces)
    return NLL(nats, sum(len(p) for p in pieces), sum(tk.count_notes(p) for p in pieces))


# ---------------------------------------------------------------- n-gram baseline


def _keys(seq: np.ndarray, order: int) -> np.ndarray:
    """Per position i: hash of (context of ``order - 1`` events, event i); BOS-padded."""
    s = np.concatenate([np.full(order - 1, BOS, np.int64), np.asarray(seq, np.int64)])
    n = len(seq)
    key = np.zeros(n, np.int64)
    for j in range(order):
        key = key * _BASE + s[j:j + n]
    return key


class KneserNey:
    """Interpolated Kneser-Ney n-gram model over events (one discount ``D`` per order),
    built with numpy (sorted hash tables), so millions of events train in seconds."""

    def __init__(self, order: int = 6, discount: float = 0.75) -> None:
        if not 1 <= order <= 7:
            raise ValueError(f"n-gram order {order} out of range (1..7: contexts hash into int64)")
        self.order = order
        self.d = discount
        self.tables: list[dict[str, np.ndarray]] = []

    def fit(self, seqs: Sequence[np.ndarray]) -> KneserNey:
        full = [np.concatenate([_keys(s, m) for s in seqs]) for m in range(1, self.order + 1)]
        self.tables = []
        for m in range(1, self.order + 1):
            if m == self.order:
                keys, counts = np.unique(full[m - 1], return_counts=True)
            else:  # continuation counts: distinct one-longer contexts ending in this n-gram
                up = np.unique(full[m])
                keys, counts = np.unique(up % (_BASE ** m), return_counts=True)
            ctx = keys // _BASE
            cks, first, n1 = np.unique(ctx, return_index=True, return_counts=True)
            tot = np.add.reduceat(counts, first) if len(first) else np.zeros(0, np.int64)
            self.tables.append({"keys": keys, "counts": counts, "ctx": cks, "ctx_total": tot, "ctx_types": n1})
        return self

    @staticmethod
    def _lookup(sorted_keys: np.ndarray, values: np.ndarray, q: np.ndarray) -> np.ndarray:
        i = np.searchsorted(sorted_keys, q)
        i = np.minimum(i, len(sorted_keys) - 1)
        hit = sorted_keys[i] == q if len(sorted_keys) else np.zeros(len(q), bool)
        return np.where(hit, values[i] if len(values) else 0, 0)

    def log_probs(self, seq: np.ndarray) -> np.ndarray:
        """Natural-log probability of each event of ``seq``."""
        p = np.full(len(seq), 1.0 / V)
        for m in range(1, self.order + 1):
            t = self.tables[m - 1]
            k = _keys(seq, m)
            c = self._lookup(t["keys"], t["counts"], k).astype(float)
            ctx = k // _BASE
            tot = self._lookup(t["ctx"], t["ctx_total"], ctx).astype(float)
            typ = self._lookup(t["ctx"], t["ctx_types"], ctx).astype(float)
            seen = tot > 0
            p = np.where(seen, (np.maximum(c - self.d, 0.0) + self.d * typ * p) / np.maximum(tot, 1.0), p)
        return np.log(p)

    def nll(self, pieces: Sequence[np.ndarray]) -> NLL:
        nats = float(sum(-self.log_probs(p).sum() for p in pieces))
        return NLL(nats, sum(len(p) for p in pieces), sum(tk.count_notes(p) for p in pieces))


# ---------------------------------------------------------------- sample statistics

_MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
_MINOR_STEPS = (0, 2, 3, 5, 7, 8, 10)
IOI_EDGES_S = np.geomspace(0.01, 4.0, 25)  # log-spaced inter-onset-interval bins


def pitch_class_entropy(score: Score) -> float:
    """Shannon entropy (bits) of the pitch-class histogram (MusPy)."""
    if not score.notes:
        return float("nan")
    h = np.bincount([n.pitch % 12 for n in score.notes], minlength=12).astype(float)
    p = h[h > 0] / h.sum()
    return float(-(p * np.log2(p)).sum())


def scale_consistency(score: Score) -> float:
    """Largest share of notes in one major or minor scale (MusPy)."""
    if not score.notes:
        return float("nan")
    pcs = np.array([n.pitch % 12 for n in score.notes])
    best = 0.0
    for root in range(12):
        for steps in (_MAJOR_STEPS, _MINOR_STEPS):
            scale = {(root + s) % 12 for s in steps}
            best = max(best, float(np.isin(pcs, list(scale)).mean()))
    return best


def polyphony(score: Score, step_us: int = 10_000) -> float:
    """Mean number of sounding notes over the 10 ms steps where at least one sounds (MusPy)."""
    if not score.notes:
        return float("nan")
    end = max(n.end_us for n in score.notes) // step_us + 2
    delta = np.zeros(end + 1)
    for n in score.notes:
        a, b = n.onset_us // step_us, max(n.onset_us // step_us + 1, n.end_us // step_us)
        delta[a] += 1
        delta[b] -= 1
    active = np.cumsum(delta)[:end]
    on = active > 0
    return float(active[on].mean()) if on.any() else 0.0


def notes_per_s(score: Score) -> float:
    d = score.duration_s
    return len(score.notes) / d if d > 0 else float("nan")


def ioi_histogram(scores: Sequence[Score]) -> np.ndarray:
    """Normalised histogram of inter-onset intervals (distinct onsets) on log bins."""
    iois: list[np.ndarray] = []
    for s in scores:
        on = np.unique([n.onset_us for n in s.notes]) / 1e6
        if len(on) > 1:
            iois.append(np.diff(on))
    allv = np.concatenate(iois) if iois else np.zeros(0)
    h, _ = np.histogram(np.clip(allv, IOI_EDGES_S[0], IOI_EDGES_S[-1] - 1e-9), bins=IOI_EDGES_S)
    h = h.astype(float) + 1e-9
    return h / h.sum()


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = same, 1 = disjoint)."""
    m = (p + q) / 2
    kl = lambda a, b: float((a * np.log2(a / b)).sum())  # noqa: E731
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def velocity_mean(score: Score) -> float:
    return float(np.mean([n.velocity for n in score.notes])) if score.notes else float("nan")


def velocity_spread(score: Score) -> float:
    """Standard deviation of the note velocities."""
    return float(np.std([n.velocity for n in score.notes])) if score.notes else float("nan")


def pedal_use(score: Score) -> float:
    """Share of the piece's time with the sustain pedal down (CC64 >= 64)."""
    end = round(score.duration_s * 1e6)
    if end <= 0:
        return float("nan")
    down_us, t_down = 0, None
    for p in sorted(score.pedal, key=lambda e: e.t_us):
        if p.value >= 64 and t_down is None:
            t_down = p.t_us
        elif p.value < 64 and t_down is not None:
            down_us += p.t_us - t_down
            t_down = None
    if t_down is not None:
        down_us += max(0, end - t_down)
    return down_us / end


STATS = {
    "velocity_mean": velocity_mean,
    "velocity_spread": velocity_spread,
    "pedal_use": pedal_use,
    "pitch_class_entropy": pitch_class_entropy,
    "scale_consistency": scale_consistency,
    "polyphony": polyphony,
    "notes_per_s": notes_per_s,
}


def _finite_mean(values: Sequence[float]) -> float:
    """The mean of the finite ``values``; NaN where there are none (a set of empty scores)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def sample_statistics(samples: Sequence[Score], reference: Sequence[Score]) -> dict[str, Any]:
    """Each statistic's mean over the samples and over the reference, and their distance
    (absolute difference; Jensen-Shannon divergence for the IOI distribution)."""
    out: dict[str, Any] = {}
    for name, fn in STATS.items():
        a = _finite_mean([fn(s) for s in samples])
        b = _finite_mean([fn(s) for s in reference])
        out[name] = {"value": round(a, 4), "reference": round(b, 4), "distance": round(abs(a - b), 4)}
    js = js_divergence(ioi_histogram(samples), ioi_histogram(reference))
    out["ioi_distribution"] = {"distance": round(js, 4), "metric": "jensen-shannon (bits)"}
    return out


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None

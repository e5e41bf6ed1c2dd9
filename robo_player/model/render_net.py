"""The rendering network: a bidirectional GRU over a score's notes that predicts each
note's expression (velocity, local tempo, timing deviation, articulation, pedal; see
:mod:`score_features`), trained on ASAP's aligned performances.

``robo-player train --corpus asap:PATH --arch render --out models/render.pt`` trains it;
``robo-player perform SCORE --model models/render.pt`` renders with it. A checkpoint may hold
several networks (an ensemble, :class:`RenderEnsemble`: their mean prediction; ``combine``
makes one, ``python -m robo_player.model.render_net combine OUT A.pt B.pt ...``) and, since
format 3, beat-level tempo heads (:class:`BeatTempoGRU`: a GRU over the score's quarter-note
beats that predicts each beat's tempo, blended with the note networks' tempo by
``beat_blend``; ``python -m robo_player.model.render_net train-beat`` trains one). The
checkpoint is a dict of tensors and plain values (format ``robo_player-renderer``), loaded
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ..score import Score
from . import score_features as sf

log = logging.getLogger(__name__)

FORMAT = "robo_player-renderer"
FORMAT_VERSION = 3  # 3: + "beat_tempo" heads and "beat_blend"; 2: a list of member networks
# ("members"); 1: one network's "config"/"state_dict". Every older format still loads.
LOSS_WEIGHTS = (1.0, 2.0, 0.5, 0.5, 0.5)  # velocity, tempo, timing, articulation, pedal
CORR_WEIGHTS = (1.0, 2.0)  # velocity, tempo: the (1 - Pearson r) term per training window


@dataclass(slots=True)
class RenderConfig:
    n_features: int = sf.N_FEATURES
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.1


@dataclass(slots=True)
class BeatConfig(RenderConfig):
    n_features: int = sf.N_BEAT_FEATURES


class _BiGRU(nn.Module):
    """features (B, T, F) -> (B, T, n_out): a projection, a bidirectional GRU, a linear read-out."""

    def __init__(self, cfg: RenderConfig, n_out: int) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(cfg.n_features, cfg.hidden), nn.GELU())
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, cfg.layers, batch_first=True, bidirectional=True,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.out = nn.Linear(2 * cfg.hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(self.inp(x))  # (B, T, 2H)
        return self.out(h)


class RenderGRU(_BiGRU):
    """features (B, T, F) -> expression (B, T, 5); the pedal output is a logit."""

    def __init__(self, cfg: RenderConfig) -> None:
        super().__init__(cfg, len(sf.TARGETS))
        self.cfg = cfg


class BeatTempoGRU(_BiGRU):
    """The beat-level tempo head: beat features (B, K, F) -> each inter-beat interval's log
    tempo deviation from the notated tempo (B, K), a bidirectional GRU over the beats."""

    def __init__(self, cfg: BeatConfig) -> None:
        super().__init__(cfg, 1)
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[..., 0]


class RenderEnsemble(nn.Module):
    """Several rendering networks reading the same features; predicts their mean output
    (networks trained from other seeds and settings err differently: the mean errs less)."""

    def __init__(self, members: list[RenderGRU], beat: list[BeatTempoGRU] | None = None,
                 beat_blend: float = 1.0) -> None:
        super().__init__()
        if not members:
            raise ModelError("a rendering ensemble needs at least one network")
        widths = sorted({m.cfg.n_features for m in members})
        if len(widths) > 1:
            raise ModelError(f"a rendering ensemble's networks must read as many features (got {widths})")
        if not 0.0 <= beat_blend <= 1.0:
            raise ModelError(f"a rendering ensemble's beat_blend must be in 0..1 (got {beat_blend})")
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg
        # the beat-level tempo head (optional): its mean prediction, weighted by beat_blend
        # against the note networks' tempo, is the rendering's tempo
        self.beat = nn.ModuleList(beat or [])
        self.beat_blend = float(beat_blend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


Renderer = RenderGRU | RenderEnsemble



def _members(model: Renderer) -> list[RenderGRU]:
    return list(model.members) if isinstance(model, RenderEnsemble) else [model]  # type: ignore[arg-type]


def _beat_members(model: Renderer) -> list[BeatTempoGRU]:
    return list(model.beat) if isinstance(model, RenderEnsemble) else []  # type: ignore[arg-type]


def _one_minus_r(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over windows (rows of (B, T)) of 1 - the ``mask``-weighted Pearson r of ``pred``
    and ``y``; windows where the target is constant count nothing."""
    w = mask.float() / mask.float().sum(1, keepdim=True).clamp(min=1.0)
    pc = pred - (pred * w).sum(1, keepdim=True)
    yc = y - (y * w).sum(1, keepdim=True)
    vy = (w * yc * yc).sum(1)
    r = (w * pc * yc).sum(1) / ((w * pc * pc).sum(1) * vy + 1e-6).sqrt()
    ok = (vy > 1e-4).float()
    return ((1 - r) * ok).sum() / ok.sum().clamp(min=1.0)


def corr_loss(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(1 - Pearson r) between predicted and target velocity and tempo within each window
    (weighted by ``mask``; windows where the target is constant count nothing): what
    eval-model measures, per performance, is a correlation, blind to offset and scale."""
    total = pred.new_zeros(())
    for k, cw in enumerate(CORR_WEIGHTS):
        total = total + cw * _one_minus_r(pred[..., k], y[..., k], mask)
    return total


def loss_fn(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weighted masked loss: MSE on the four continuous targets, BCE on the pedal; ``mask``
    is 0/1 or each note's weight (how many performances it averages)."""
    m = mask.float()
    n = m.sum().clamp(min=1.0)
    total = pred.new_zeros(())
    for k, w in enumerate(LOSS_WEIGHTS):
        if k == 4:
            e = nn.functional.binary_cross_entropy_with_logits(pred[..., k], y[..., k], reduction="none")
        else:
            e = (pred[..., k] - y[..., k]) ** 2
        total = total + w * (e * m).sum() / n
    return total


def beat_tempo(nets: list[BeatTempoGRU], s: sf.ScoreNotes, note_f: np.ndarray | None = None) -> np.ndarray | None:
    """The beat heads' mean log tempo deviation, at each note (M,) the value of the beat its
    onset falls in; None for a score under two beats long."""
    xb = sf.beat_features(s, note_f)
    if not nets or len(xb) == 0:
        return None
    x = torch.from_numpy(xb)[None]
    with torch.no_grad():
        d = torch.stack([n.eval()(x)[0] for n in nets]).mean(0).numpy().astype(np.float64)
    return d[sf.beat_of(s.onset_q, sf.beat_grid(s.onset_q))]


def predict(model: Renderer, s: sf.ScoreNotes) -> np.ndarray:
    """Expression (M, 5) of one score; the pedal as a probability. With a beat-level tempo
    head, the tempo column is its prediction blended with the note networks' (``beat_blend``)."""
    f = sf.features(s)
    x = torch.from_numpy(np.ascontiguousarray(f[:, :model.cfg.n_features]))[None]
    model.eval()
    with torch.no_grad():
        out = model(x)[0].numpy().astype(np.float64)
    out[:, 4] = 1.0 / (1.0 + np.exp(-out[:, 4]))
    d = beat_tempo(_beat_members(model), s, f)
    if d is not None:
        a = cast(RenderEnsemble, model).beat_blend
        out[:, 1] = a * d + (1 - a) * out[:, 1]
    return out


def render(model: Renderer, s: sf.ScoreNotes, source: str | None = None) -> Score:
    on, dur, vel, pedal = sf.render_notes(s, predict(model, s))
    return sf.to_score(s, on, dur, vel, pedal, source)


def _rows(nets: list[Any]) -> list[dict[str, Any]]:
    return [{"config": asdict(m.cfg), "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()}}
            for m in nets]


def save(path: str | Path, model: Renderer | None, meta: dict[str, Any],
         beat: list[BeatTempoGRU] | None = None, beat_blend: float | None = None) -> None:
    """Write ``model`` (its note networks and beat heads) and ``beat`` (more beat heads;
    with ``model`` None, a checkpoint of beat heads alone, for :func:`combine`)."""
    beats = (_beat_members(model) if model is not None else []) + list(beat or [])
    if beat_blend is None:
        beat_blend = model.beat_blend if isinstance(model, RenderEnsemble) else 1.0
    blob: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION,
                            "members": _rows(_members(model)) if model is not None else [], "meta": meta}
    if beats:
        blob["beat_tempo"] = _rows(beats)
        blob["beat_blend"] = float(beat_blend)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)


def is_renderer(path: str | Path) -> bool:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - the caller reports a corrupt checkpoint
        return False
    return isinstance(blob, dict) and blob.get("format") == FORMAT


def _read(path: str | Path) -> tuple[list[RenderGRU], list[BeatTempoGRU], float, dict[str, Any]]:
    """A checkpoint's note networks, beat heads, beat blend and meta."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"{path}: corrupt or not a robo_player checkpoint ({err})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path}: not a rendering checkpoint (format must be {FORMAT!r})")
    rows = blob["members"] if "members" in blob else [blob]  # format 1: one network
    nets = []
    for row in rows:
        net = RenderGRU(RenderConfig(**row["config"]))
        net.load_state_dict(row["state_dict"])
        nets.append(net.eval())
    beats = []
    for row in blob.get("beat_tempo", []):  # format 3
        bnet = BeatTempoGRU(BeatConfig(**row["config"]))
        bnet.load_state_dict(row["state_dict"])
        beats.append(bnet.eval())
    return nets, beats, float(blob.get("beat_blend", 1.0)), dict(blob.get("meta", {}))


def load(path: str | Path) -> tuple[Renderer, dict[str, Any]]:
    """The network (or ensemble, when the checkpoint holds several or a beat-level tempo
    head) and its meta."""
    nets, beats, blend, meta = _read(path)
    if not nets:
        raise ModelError(f"{path}: holds beat-level tempo heads only; join it with a rendering checkpoint "
                         f"(python -m robo_player.model.render_net combine OUT.pt render.pt {Path(path).name})")
    model: Renderer = nets[0] if len(nets) == 1 and not beats else RenderEnsemble(nets, beats, blend)
    model.eval()
    return model, meta


def combine(paths: list[str | Path], beat_blend: float | None = None) -> RenderEnsemble:
    """One ensemble of the networks and beat heads in these checkpoints (an ensemble's
    members join as they are); ``beat_blend``: else the first checkpoint's with beat heads."""
    nets: list[RenderGRU] = []
    beats: list[BeatTempoGRU] = []
    blends = []
    for p in paths:
        n, b, blend, _ = _read(p)
        nets += n
        beats += b
        if b:
            blends.append(blend)
    return RenderEnsemble(nets, beats, beat_blend if beat_blend is not None else (blends or [1.0])[0])


def widen(model: Renderer, n_features: int = sf.N_FEATURES) -> Renderer:
    """The same network reading ``n_features`` (more) features: the new inputs start at
    zero weight, so it predicts exactly what ``model`` did (a warm start for new features);
    an ensemble's every member."""
    if isinstance(model, RenderEnsemble):
        return RenderEnsemble([cast(RenderGRU, widen(m, n_features)) for m in _members(model)],
                              _beat_members(model), model.beat_blend)
    old = model.cfg.n_features
    if n_features < old:
        raise ModelError(f"cannot narrow a rendering network from {old} to {n_features} features")
    cfg = RenderConfig(n_features=n_features, hidden=model.cfg.hidden, layers=model.cfg.layers,
                       dropout=model.cfg.dropout)
    wide = RenderGRU(cfg)
    state = model.state_dict()
    w = torch.zeros(cfg.hidden, n_features)
    w[:, :old] = state["inp.0.weight"]
    state["inp.0.weight"] = w
    wide.load_state_dict(state)
    return wide


# ---------------------------------------------------------------- training


def _windows(data: list[tuple[np.ndarray, np.ndarray, np.ndarray]], seq_len: int,
             rng: np.random.Generator) -> list[tuple[int, int, int]]:
    out = []
    for i, (x, _, _) in enumerate(data):
        off = int(rng.integers(0, seq_len)) if len(x) > seq_len else 0
        for a in range(-off if off else 0, len(x), seq_len):
            a0 = max(a, 0)
            if len(x) - a0 >= 16:
                out.append((i, a0, min(a0 + seq_len, len(x))))
    return out


def _batch(data: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
           wins: list[tuple[int, int, int]]) -> tuple[torch.Tensor, ...]:
    t = max(b - a for _, a, b in wins)
    x = np.zeros((len(wins), t, data[0][0].shape[1]), np.float32)
    y = np.zeros((len(wins), t, *data[0][1].shape[1:]), np.float32)
    m = np.zeros((len(wins), t), np.float32)
    for j, (i, a, b) in enumerate(wins):
        xi, yi, mi = data[i]
        x[j, : b - a], y[j, : b - a], m[j, : b - a] = xi[a:b], yi[a:b], mi[a:b]
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)


def _epoch_batches(data: list[tuple[np.ndarray, np.ndarray, np.ndarray]], seq_len: int, batch_size: int,
                   rng: np.random.Generator, opt: torch.optim.Optimizer, lr: float, epoch: int,
                   epochs: int, transpose: int = 0) -> Iterator[tuple[int, int, tuple[torch.Tensor, ...]]]:
    """Set epoch ``epoch``'s learning rate (cosine from ``lr`` to 5 % of it over ``epochs``)
    and yield (index, count, (x, y, mask)) for its batches of shuffled windows, each window's
    pitch feature (column 0, (pitch - 64) / 24) moved by a random -transpose..transpose semitones."""
    wins = _windows(data, seq_len, rng)
    order = rng.permutation(len(wins))
    for g in opt.param_groups:
        g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, (epoch - 1) / max(epochs, 1)))))
    n = math.ceil(len(order) / batch_size)
    for bi in range(n):
        x, y, m = _batch(data, [wins[k] for k in order[bi * batch_size:(bi + 1) * batch_size]])
        if transpose:
            x[..., 0] += torch.from_numpy(rng.integers(-transpose, transpose + 1, (len(x), 1)).astype(np.float32)) / 24
        yield bi, n, (x, y, m)


def prepare(perfs: list[Any], n_features: int = sf.N_FEATURES,
            by_piece: bool = True) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(features, targets, weights) per score. ``by_piece``: the performances of one score
    (the same folder and score notes) become one row whose targets are their mean over the
    performances that played each note, weighted by that count. For the squared errors this
    is the same loss (up to a constant: the pianists' spread) at a fraction of the work
    (ASAP's train split: 827 performances of ~180 scores); the pedal's cross-entropy against
    the share of pianists who had it down likewise."""
    return _by_score([p for p in perfs if len(p.pitch) >= 16], sf.targets, 16,
                     lambda s: sf.features(s, n_features), by_piece)


def _by_score(perfs: list[Any], targets: Any, min_known: int, features: Any,
              by_piece: bool) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(features, targets, weights) per score (or per performance): ``targets(p)`` gives a
    performance's (targets, known), rows (notes or beats) first; a score's targets are the
    mean over the performances where each row is known, weighted by that count."""
    groups: dict[tuple[str, bytes], list[tuple[np.ndarray, np.ndarray, Any]]] = {}
    for i, p in enumerate(perfs):
        y, ok = targets(p)
        if ok.sum() < min_known:
            continue
        key = (p.folder, np.asarray(p.sid).tobytes()) if by_piece else (str(i), b"")
        groups.setdefault(key, []).append((y, ok, p))
    out = []
    for rows in groups.values():
        w = np.sum([ok for _, ok, _ in rows], axis=0).astype(np.float32)
        wide = (slice(None),) + (None,) * (rows[0][0].ndim - 1)  # the weight over each row's targets
        y = np.sum([yy * ok[wide] for yy, ok, _ in rows], axis=0) / np.maximum(w, 1)[wide]
        out.append((features(sf.from_performance(rows[0][2])), y.astype(np.float32), w))
    return out


def evaluate_loss(model: Renderer, data: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for x, y, m in data:
            p = model(torch.from_numpy(x)[None])
            tot += float(loss_fn(p, torch.from_numpy(y)[None], torch.from_numpy(m)[None])) * int(m.sum())
            n += int(m.sum())
    return tot / max(n, 1)


def train_renderer(train_perfs: list[Any], valid_perfs: list[Any], out: str | Path,
                   cfg: RenderConfig | None = None, epochs: int = 30, batch_size: int = 16,
                   seq_len: int = 512, lr: float = 3e-3, max_minutes: float = 0.0, seed: int = 0,
                   progress: bool = True, meta: dict[str, Any] | None = None,
                   init_from: str | Path | None = None, transpose: int = 2,
                   corr_weight: float = 0.3) -> dict[str, Any]:
    """Train on the aligned performances and write the best (validation loss) weights to
    ``out`` (starting from ``init_from``'s weights when given; an ensemble trains as one,
    on its mean). ``transpose``: each training window's pitch feature moved by a random
    -k..k semitones; ``corr_weight``: the weight of :func:`corr_loss` beside the squared
    errors. Returns a summary (epochs, losses, seconds)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if init_from:
        model, _ = load(init_from)
        if model.cfg.n_features < sf.N_FEATURES:
            model = widen(model)
        cfg = model.cfg
    else:
        cfg = cfg or RenderConfig()
        model = RenderGRU(cfg)
    tr, va = prepare(train_perfs, cfg.n_features), prepare(valid_perfs, cfg.n_features)
    if not tr:
        raise ModelError("train --arch render: no aligned training performances (need asap:PATH)")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    t0 = time.perf_counter()
    best = math.inf
    history: list[dict[str, float]] = []
    n_notes = sum(int(m.sum()) for _, _, m in tr)
    sys.stderr.write(f"render: {sum(p.numel() for p in model.parameters())} parameters; "
                     f"{len(tr)} training scores ({n_notes} played notes), {len(va)} validation\n")
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        tot, nb = 0.0, 0
        for bi, n_batches, (x, y, m) in _epoch_batches(tr, seq_len, batch_size, rng, opt, lr, epoch, epochs,
                                                       transpose):
            p = model(x)
            tot += _step(opt, model, loss_fn(p, y, m) + (corr_weight * corr_loss(p, y, m) if corr_weight else 0.0))
            nb += 1
            if progress and bi % 20 == 0:
                sys.stderr.write(f"\repoch {epoch}: batch {bi + 1}/{n_batches} loss {tot / nb:.4f}")
            if max_minutes and time.perf_counter() - t0 > max_minutes * 60:
                break
        vl = evaluate_loss(model, va) if va else tot / max(nb, 1)
        history.append({"epoch": epoch, "train": tot / max(nb, 1), "valid": vl})
        sys.stderr.write(f"\repoch {epoch}: train loss {tot / max(nb, 1):.4f}, valid loss {vl:.4f} "
                         f"({time.perf_counter() - t0:.0f}s)\n")
        if vl < best:
            best = vl
            save(out, model, {**(meta or {}), "epoch": epoch, "valid_loss": vl})
        if max_minutes and time.perf_counter() - t0 > max_minutes * 60:
            break
    return {"epochs": epoch, "best_valid_loss": best, "history": history,
            "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------- the beat-level tempo head

BeatRow = tuple[np.ndarray, np.ndarray, np.ndarray]


def prepare_beats(perfs: list[Any], by_piece: bool = True) -> list[BeatRow]:
    """(beat features, beat tempo targets, weights) per score, the performances of a score
    averaged beat by beat as :func:`prepare` averages notes."""
    return _by_score([p for p in perfs if int((p.p_vel >= 0).sum()) >= 16], sf.beat_targets, 8,
                     sf.beat_features, by_piece)


def beat_loss(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, notated: torch.Tensor,
              corr_weight: float = 0.3, full_weight: float = 0.0) -> torch.Tensor:
    """Squared error of the beat tempo deviation, plus ``corr_weight`` x (1 - r) of the
    deviation and ``full_weight`` x (1 - r) of the whole log inter-beat interval (the
    notated one plus the deviation: what eval-model correlates) per window."""
    m = mask.float()
    total = (((pred - y) ** 2) * m).sum() / m.sum().clamp(min=1.0)
    if corr_weight:
        total = total + corr_weight * _one_minus_r(pred, y, m)
    if full_weight:
        total = total + full_weight * _one_minus_r(pred + notated, y + notated, m)
    return total


BeatCheck = tuple[tuple[str, bytes], np.ndarray, np.ndarray, np.ndarray]


def prepare_beat_check(perfs: list[Any]) -> list[BeatCheck]:
    """Per performance: its score's key, beat features, notated and performed log
    inter-beat intervals (what :func:`beat_tempo_r` reads; computed once)."""
    feats: dict[tuple[str, bytes], np.ndarray] = {}
    out = []
    for p in perfs:
        beats = sf.beat_grid(p.onset_q)
        if int((p.p_vel >= 0).sum()) < 16 or len(beats) < 4:
            continue
        key = (p.folder, np.asarray(p.sid).tobytes())
        s = sf.from_performance(p)
        if key not in feats:
            feats[key] = sf.beat_features(s)
        ok = p.p_vel >= 0
        human = sf.measures(p.onset_q, p.dur_q, p.p_onset_s, p.p_dur_s, p.p_vel, ok, beats).beat_log_ibi
        out.append((key, feats[key], sf.notated_beat_log_ibi(s, beats), human))
    return out


def beat_tempo_r(nets: list[BeatTempoGRU], rows: list[BeatCheck]) -> float:
    """Mean over performances (:func:`prepare_beat_check`) of Pearson r between the notated
    log inter-beat interval plus the heads' deviation and the performance's, on the beat
    grid eval-model uses (the selection measure; a rendering adds the chord timing and
    interpolates the beats between onsets)."""
    cache: dict[tuple[str, bytes], np.ndarray] = {}
    rs = []
    for key, x, notated, human in rows:
        if key not in cache:
            with torch.no_grad():
                xt = torch.from_numpy(x)[None]
                cache[key] = torch.stack([n.eval()(xt)[0] for n in nets]).mean(0).numpy().astype(np.float64)
        r = sf.pearson(notated + cache[key], human)
        if math.isfinite(r):
            rs.append(r)
    return float(np.mean(rs)) if rs else float("nan")



def _step(opt: torch.optim.Optimizer, net: nn.Module, loss: torch.Tensor) -> float:
    """One optimiser step on ``loss`` (gradients clipped to norm 1); the loss's value."""
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    return float(loss.item())

def train_beat_tempo(train_perfs: list[Any], valid_perfs: list[Any], out: str | Path,
                     cfg: BeatConfig | None = None, epochs: int = 40, batch_size: int = 16,
                     seq_len: int = 128, lr: float = 2e-3, seed: int = 0, corr_weight: float = 0.3,
                     full_weight: float = 0.0, transpose: int = 2, max_minutes: float = 0.0,
                     progress: bool = True, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one beat-level tempo head; write the best (validation :func:`beat_tempo_r`,
    else training loss) to ``out`` as a checkpoint of beat heads alone (join it with the
    note networks by :func:`combine`). Returns a summary."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = cfg or BeatConfig()
    net = BeatTempoGRU(cfg)
    tr = prepare_beats(train_perfs)
    check = prepare_beat_check(valid_perfs)
    if not tr:
        raise ModelError("beat tempo head: no aligned training performances")
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    t0 = time.perf_counter()
    best = -math.inf
    history: list[dict[str, float]] = []
    sys.stderr.write(f"beat tempo: {sum(p.numel() for p in net.parameters())} parameters; {len(tr)} training "
                     f"scores ({sum(len(x) for x, _, _ in tr)} beats)\n")
    epoch = 0
    for epoch in range(1, epochs + 1):
        net.train()
        tot, nb = 0.0, 0
        # transposition moves the beat's mean pitch feature, as the note networks' pitch
        for _, _, (x, y, m) in _epoch_batches(tr, seq_len, batch_size, rng, opt, lr, epoch, epochs, transpose):
            tot += _step(opt, net, beat_loss(net(x), y, m, x[..., sf.BEAT_NOTATED], corr_weight, full_weight))
            nb += 1
        score = beat_tempo_r([net], check) if check else -tot / max(nb, 1)
        history.append({"epoch": epoch, "train": tot / max(nb, 1), "valid_tempo_r": score})
        if progress:
            sys.stderr.write(f"epoch {epoch}: train loss {tot / max(nb, 1):.4f}, valid beat-tempo r {score:.4f} "
                             f"({time.perf_counter() - t0:.0f}s)\n")
        if score > best:
            best = score
            save(out, None, {**(meta or {}), "epoch": epoch, "valid_tempo_r": score}, beat=[net])
        if max_minutes and time.perf_counter() - t0 > max_minutes * 60:
            break
    return {"epochs": epoch, "best": best, "history": history, "seconds": time.perf_counter() - t0}


def run(args: Any) -> int:
    """``train --arch render``: the corpus is ``asap:PATH`` (ASAP's aligned train/valid
    performances) or ``pair:SCORE,PERF[+pair:...]`` (a user's own pairs, aligned with
    parangonar, all used for training; start from ``--init-from models/render.pt``)."""
    from .asap import attach_score_marks, load_asap
    from .corpus import default_cache_dir

    spec = str(args.corpus)
    if not spec.startswith(("asap:", "pair:")):
        raise ModelError(f"train --arch render: --corpus {spec!r} has no score/performance pairs; "
                         f"give asap:PATH or pair:SCORE.mid,PERFORMANCE.mid")
    if args.threads:
        torch.set_num_threads(args.threads)
    if spec.startswith("pair:"):
        from .align import align_pair, parse_pairs

        tr, va = [], []
        for score_path, perf_path in parse_pairs(spec):
            perf, rate = align_pair(score_path, perf_path)
            sys.stderr.write(f"{score_path} + {perf_path}: {int(perf.matched.sum())} of {len(perf.pitch)} "
                             f"score notes matched, {perf.inserted} inserted, alignment rate {rate:.3f}\n")
            tr.append(perf)
        corpus_name = "own score/performance pairs (parangonar)"
    else:

        def prog(i: int, n: int) -> None:
            if not args.quiet and (i % 25 == 0 or i == n):
                sys.stderr.write(f"\rparsing ASAP alignments: {i}/{n}")
                if i == n:
                    sys.stderr.write("\n")

        from .cli import _marks_progress

        c = load_asap(spec[len("asap:"):], cache_dir=args.cache or default_cache_dir(), progress=prog)
        attach_score_marks(c, cache_dir=args.cache or default_cache_dir(), progress=_marks_progress(args.quiet))
        tr, va = c.split("train"), c.split("valid")
        if args.limit_pieces:
            tr, va = tr[: args.limit_pieces], va[: max(1, args.limit_pieces // 4)]
        if args.valid_pieces:
            va = va[: args.valid_pieces]
        sys.stderr.write(f"ASAP: {len(c.performances)} performances, alignment rate "
                         f"{c.alignment_rate():.3f}; train {len(tr)}, valid {len(va)}\n")
        corpus_name = "ASAP (CC BY-NC-SA 4.0)"
    cfg = RenderConfig(hidden=args.d_model or 64, layers=args.layers or 2, dropout=args.dropout)
    s = train_renderer(tr, va, args.out, cfg, epochs=args.epochs, batch_size=args.batch_size,
                       seq_len=max(args.seq_len, 64), lr=args.lr, max_minutes=args.max_minutes,
                       seed=args.seed, progress=not args.quiet,
                       meta={"corpus": corpus_name, "train_performances": len(tr)},
                       init_from=args.init_from, transpose=0 if args.no_augment else 2,
                       corr_weight=args.corr_weight)
    sys.stdout.write(f"{args.out}: rendering network, {s['epochs']} epochs in {s['seconds']:.0f}s, "
                     f"best validation loss {s['best_valid_loss']:.4f}\n")
    return 0


def _train_beat_cli(args: Any) -> int:
    from .asap import attach_score_marks, load_asap
    from .corpus import default_cache_dir

    if not str(args.corpus).startswith("asap:"):
        sys.stderr.write(f"train-beat: --corpus {args.corpus!r}: give asap:PATH (ASAP's aligned performances)\n")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = default_cache_dir()
    try:
        c = load_asap(str(args.corpus)[len("asap:"):], cache_dir=cache)
        attach_score_marks(c, cache_dir=cache)
        s = train_beat_tempo(c.split("train"), c.split("valid"), args.out, BeatConfig(hidden=args.hidden),
                             epochs=args.epochs, seed=args.seed, seq_len=max(args.seq_len, 16),
                             batch_size=max(1, 2048 // max(args.seq_len, 16)), corr_weight=args.corr_weight,
                             full_weight=args.full_weight, max_minutes=args.max_minutes,
                             meta={"corpus": "ASAP (CC BY-NC-SA 4.0)", "seed": args.seed})
    except ModelError as err:
        sys.stderr.write(f"{err}\n")
        return 2
    sys.stdout.write(f"{args.out}: beat tempo head, {s['epochs']} epochs in {s['seconds']:.0f}s, best validation "
                     f"beat-tempo r {s['best']:.4f}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m robo_player.model.render_net combine OUT.pt A.pt B.pt ...``: one checkpoint
    whose prediction is the mean of these networks'; ``train-beat --corpus asap:PATH --out
    B.pt``: one beat-level tempo head (join it to the note networks with ``combine``)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m robo_player.model.render_net",
                                 description="Join rendering networks into one ensemble checkpoint; train a "
                                             "beat-level tempo head.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train-beat", help="train a beat-level tempo head on ASAP (selected on the valid split)")
    t.add_argument("--corpus", required=True, help="asap:PATH")
    t.add_argument("--out", required=True, metavar="B.pt")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--hidden", type=int, default=64)
    t.add_argument("--seq-len", type=int, default=128, help="beats per training window")
    t.add_argument("--corr-weight", type=float, default=0.3, help="(1 - r) of the tempo deviation per window")
    t.add_argument("--full-weight", type=float, default=0.0,
                   help="(1 - r) of the whole log inter-beat interval (notated + deviation) per window")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--max-minutes", type=float, default=0.0)
    c = sub.add_parser("combine", help="OUT.pt: the mean of the networks in MODEL.pt ...")
    c.add_argument("out", metavar="OUT.pt")
    c.add_argument("models", nargs="+", metavar="MODEL.pt")
    c.add_argument("--beat-blend", type=float, default=None,
                   help="weight of the beat-level tempo heads' tempo against the note networks' "
                        "(0..1; default: the first checkpoint's with heads, else 1)")
    args = ap.parse_args(argv)
    if args.cmd == "train-beat":
        return _train_beat_cli(args)
    for path in args.models:
        if not Path(path).is_file():
            sys.stderr.write(f"{path}: no such model checkpoint\n")
            return 2
    try:
        ens = combine(args.models, args.beat_blend)
    except ModelError as err:
        sys.stderr.write(f"{err}\n")
        return 2
    metas = [_read(p)[3] for p in args.models]
    save(args.out, ens, {"corpus": metas[0].get("corpus", ""), "members_from": [Path(p).name for p in args.models],
                         "valid_losses": [m.get("valid_loss") for m in metas],
                         "valid_tempo_r": [m.get("valid_tempo_r") for m in metas]})
    n = sum(p.numel() for p in ens.parameters())
    heads = f" + {len(ens.beat)} beat tempo heads (blend {ens.beat_blend:g})" if len(ens.beat) else ""
    sys.stdout.write(f"{args.out}: {len(ens.members)} rendering networks{heads}, {n} parameters\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

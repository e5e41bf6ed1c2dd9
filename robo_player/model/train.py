"""Training: windows of token sequences, AdamW, validation every epoch, early stopping,
checkpoints and resume, AMP on GPU, DDP through ``torchrun``.

    robo-player train --corpus music21:bach,palestrina --arch transformer --out models/NAME.pt
    torchrun --nproc_per_node 2 -m robo_player.model.train --corpus ... --out ...

``--out`` gets the best weights (by validation NLL; small, what ``generate`` loads);
``--out`` + ``.ckpt`` the last state with the optimiser (what ``--resume`` reads), written
every epoch and every ``--ckpt-minutes``, so a stop loses little.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ..errors import ModelError, UsageError
from ..progress import Progress
from . import tokenizer as tk
from .checkpoint import read_checkpoint, save_checkpoint
from .cli import add_train_arguments
from .networks import ModelConfig, build_model, count_parameters

log = logging.getLogger(__name__)

IGNORE = -100
BOS = tk.BOS


@dataclass(slots=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    seq_len: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    patience: int = 3  # epochs without validation improvement before stopping
    max_minutes: float = 0.0  # stop after this much training time (0: no limit)
    ckpt_minutes: float = 5.0  # also save the resume checkpoint this often within an epoch
    transpose: int = 3  # augmentation: random transposition in -k..k semitones
    stretch: float = 0.05  # augmentation: tempo stretch by 1 +- this (and 1)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast on CUDA for the Transformer (ignored on CPU and for LSTMs)
    init_from: str = ""  # start from these weights (same arch and size; may lack state features)


def init_from(model: nn.Module, path: str | Path) -> None:
    """Load a trained model's weights into ``model`` (a fine-tune or a warm start).

    The shapes must match; a features model may start from one without features: its
    state projection then starts at zero, so training begins from the old model's
    exact predictions and only adds what the state features are worth.
    """
    blob = read_checkpoint(path)
    own = model.state_dict()
    src = blob["state_dict"]
    bad = [k for k, v in src.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise ModelError(f"--init-from {path}: weights do not fit this model ({', '.join(bad[:4])}); "
                         f"use the same --arch, --d-model and --layers")
    missing = [k for k in own if k not in src]
    if any(not k.startswith("state_enc.") for k in missing):
        raise ModelError(f"--init-from {path}: it lacks {', '.join(missing[:4])}")
    model.load_state_dict(src, strict=False)
    enc = getattr(model, "state_enc", None)
    if enc is not None and missing:
        with torch.no_grad():
            enc.proj.weight.zero_()
            enc.proj.bias.zero_()
    log.info("initialised from %s (%d tensors; new: %s)", path, len(src), ", ".join(missing) or "none")


# ---------------------------------------------------------------- data


def windows(seqs: Sequence[np.ndarray], seq_len: int, codes: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Cut sequences into ``(N, seq_len)`` input/target windows (and, with ``codes``, the
    tokenizer's state rows for each input, ``(N, seq_len, N_STATE)`` uint8).

    The first window of a piece starts with BOS; later ones with the token before them,
    so every token of every piece is a target exactly once. Short tails are padded
    (targets IGNORE). State rows come from the whole piece, so a window from mid-piece
    knows which keys are down at its start.
    """
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    cs: list[np.ndarray] = []
    for s in seqs:
        s = np.asarray(s, dtype=np.int64)
        inp = np.concatenate([[BOS], s[:-1]])
        st = tk.state_codes(s) if codes else None
        for i in range(0, len(s), seq_len):
            x = np.full(seq_len, BOS, np.int64)
            y = np.full(seq_len, IGNORE, np.int64)
            n = min(seq_len, len(s) - i)
            x[:n] = inp[i:i + n]
            y[:n] = s[i:i + n]
            xs.append(x)
            ys.append(y)
            if st is not None:
                c = np.zeros((seq_len, tk.N_STATE), np.uint8)
                c[:n] = st[i:i + n]
                cs.append(c)
    if not xs:
        empty = torch.zeros((0, seq_len), dtype=torch.long)
        return empty, empty.clone(), (torch.zeros((0, seq_len, tk.N_STATE), dtype=torch.uint8)
                                      if codes else None)
    c_t = torch.from_numpy(np.stack(cs)) if codes else None
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)), c_t


def stretch_variants(notes_scores: Sequence[Any], base: Sequence[np.ndarray], stretch: float
                     ) -> list[list[np.ndarray]]:
    """Per training piece: its tokens at tempo factors 1 and 1 +- ``stretch``."""
    out: list[list[np.ndarray]] = []
    for sc, toks in zip(notes_scores, base, strict=True):
        vs = [np.asarray(toks, np.int16)]
        if stretch > 0 and sc is not None:
            for f in (1.0 - stretch, 1.0 + stretch):
                vs.append(np.array(tk.encode(tk.stretch_score(sc, f)), np.int16))
        out.append(vs)
    return out


def epoch_sequences(variants: Sequence[Sequence[np.ndarray]], transpose: int,
                    rng: np.random.Generator) -> list[np.ndarray]:
    """One augmented version of each training piece: a random stretch and transposition."""
    out = []
    for vs in variants:
        base = vs[int(rng.integers(len(vs)))]
        t = tk.transpose_tokens(base, int(rng.integers(-transpose, transpose + 1))) if transpose else None
        out.append(t if t is not None else base)
    return out


# ---------------------------------------------------------------- distributed


@dataclass(slots=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_dist(device: str) -> Dist:
    """Single process, or one rank of a ``torchrun`` job (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world <= 1:
        return Dist(0, 1, torch.device(device))
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device == "cuda":
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return Dist(rank, world, dev)


def _all_sum(values: list[float], d: Dist, smallest: bool = False) -> list[float]:
    """Each value summed over the ranks (``smallest``: its minimum instead)."""
    if d.world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN if smallest else dist.ReduceOp.SUM)
    return t.tolist()


# ---------------------------------------------------------------- loop


def budget_epochs(done: int, epoch_s: float, left_s: float, epochs: int) -> int:
    """Epochs a time budget holds: ``done`` so far and as many more of ``epoch_s``
    (training and validation) as fit in ``left_s``; at least ``done``, at most ``epochs``."""
    more = int(max(0.0, left_s) // epoch_s) if epoch_s > 0 else epochs
    return max(done, min(epochs, done + more))


def evaluate_windows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                     d: Dist, amp: bool = False, c: torch.Tensor | None = None) -> tuple[float, int]:
    """Summed NLL (nats) and token count over windows (this rank's share)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(d.device), y[i:i + batch_size].to(d.device)
            cb = c[i:i + batch_size].to(d.device) if c is not None else None
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                logits = model(xb, cb)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                   ignore_index=IGNORE, reduction="sum")
            total += float(loss)
            count += int((yb != IGNORE).sum())
    model.train()
    return total, count


def train(model_config: ModelConfig, cfg: TrainConfig, train_variants: Sequence[Sequence[np.ndarray]],
          valid_seqs: Sequence[np.ndarray], out: str | Path, resume: bool = False,
          progress: bool = True, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and write ``out`` (best weights) and ``out.ckpt`` (resume state).

    Returns a summary: epochs run, best validation NLL per event/note, tokens/s, seconds.
    """
    d = setup_dist(cfg.device)
    try:
        return _train(model_config, cfg, train_variants, valid_seqs, Path(out), resume, progress,
                      meta or {}, d)
    finally:
        if d.world > 1:
            import torch.distributed as dist

            # Ranks leave together: a rank that tears down its gloo pairs while
            # another still has them open can make that one abort (SIGABRT).
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()


def _train(model_config: ModelConfig, cfg: TrainConfig, train_variants: Sequence[Sequence[np.ndarray]],
           valid_seqs: Sequence[np.ndarray], out: Path, resume: bool, progress: bool,
           meta: dict[str, Any], d: Dist) -> dict[str, Any]:
    if not train_variants:
        raise UsageError("train: no training pieces (check --corpus and the split)")
    torch.manual_seed(cfg.seed)
    model = build_model(model_config).to(d.device)
    if cfg.init_from and not resume:
        init_from(model, cfg.init_from)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.98))
    ckpt_path = out.with_name(out.name + ".ckpt")
    state = {"epoch": 0, "step": 0, "best": math.inf, "best_note": math.inf, "bad_epochs": 0,
             "train_seconds": 0.0, "tokens": 0, "sched_epochs": 0}
    if resume:
        if not ckpt_path.is_file():
            raise ModelError(f"{ckpt_path}: no checkpoint to resume from")
        blob = read_checkpoint(ckpt_path)
        if ModelConfig.from_dict(blob["config"]) != model_config:
            raise ModelError(f"{ckpt_path}: resume with a different model config "
                             f"({blob['config']} vs {model_config.to_dict()})")
        model.load_state_dict(blob["state_dict"])
        ts = blob.get("train_state", {})
        opt.load_state_dict(ts["optimizer"])
        state.update({k: ts[k] for k in state if k in ts})
        log.info("resumed from %s at epoch %d, step %d", ckpt_path, state["epoch"], state["step"])
        end = state["sched_epochs"] or cfg.epochs
        over_budget = cfg.max_minutes and state["train_seconds"] >= cfg.max_minutes * 60
        if state["epoch"] >= end or state["bad_epochs"] >= cfg.patience or over_budget:
            why = (f"its schedule ended at epoch {state['epoch']} of {end}" if state["epoch"] >= end
                   else f"it stopped early ({state['bad_epochs']} epochs without improvement)"
                   if state["bad_epochs"] >= cfg.patience
                   else f"its --max-minutes {cfg.max_minutes:g} are spent")
            if d.main:
                sys.stderr.write(f"train --resume: {ckpt_path} is a finished run ({why}); nothing to "
                                 f"do. To train further, start a new run from its weights: "
                                 f"--init-from {out}\n")
            return {"epochs": state["epoch"], "best_valid_nll_per_event": state["best"],
                    "best_valid_nll_per_note": state["best_note"], "finished": True}
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: N817

        net: nn.Module = DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    else:
        net = model
    # No autocast for LSTMs: cuDNN's RNN runs in float16 under autocast (not bfloat16), and
    # without a gradient scaler float16 gradients underflow. They train in float32 with TF32.
    amp = cfg.amp and d.device.type == "cuda" and model_config.arch != "lstm"
    if d.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    feats = model_config.features
    vx, vy, vc = windows(valid_seqs, cfg.seq_len, codes=feats)
    vx, vy = vx[d.rank::d.world], vy[d.rank::d.world]
    vc = vc[d.rank::d.world] if vc is not None else None
    valid_notes = sum(tk.count_notes(s) for s in valid_seqs)
    n_params = count_parameters(model)
    if d.main:
        log.info("%s: %d parameters; %d training pieces, %d validation windows", model_config.arch,
                 n_params, len(train_variants), len(vx) * d.world)
    steps_per_epoch_est = None
    t_start = time.monotonic() - state["train_seconds"]
    last_ckpt = time.monotonic()
    summary: dict[str, Any] = {}

    def lr_at(step: int, total: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        frac = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    def save_resume() -> None:
        if d.main:
            ts = dict(state)
            ts["optimizer"] = opt.state_dict()
            save_checkpoint(ckpt_path, model, model_config, meta=meta, train_state=ts)

    out_of_time = False
    while state["epoch"] < (state["sched_epochs"] or cfg.epochs) and not out_of_time:
        epoch = state["epoch"]
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)  # same on every rank
        x, y, c = windows(epoch_sequences(train_variants, cfg.transpose, rng), cfg.seq_len, codes=feats)
        perm = torch.from_numpy(rng.permutation(len(x)))
        usable = len(perm) // d.world * d.world  # equal steps on every rank (DDP needs it)
        perm = perm[:usable][d.rank::d.world]
        steps = math.ceil(len(perm) / cfg.batch_size)
        steps_per_epoch_est = steps_per_epoch_est or steps
        total_steps = steps_per_epoch_est * (state["sched_epochs"] or cfg.epochs)
        prog = Progress(f"epoch {epoch + 1}/{state['sched_epochs'] or cfg.epochs}",
                        enabled=progress and d.main)
        tok_epoch, loss_sum, loss_n = 0, 0.0, 0
        t_epoch = time.monotonic()
        net.train()
        for si in range(steps):
            idx = perm[si * cfg.batch_size:(si + 1) * cfg.batch_size]
            xb, yb = x[idx].to(d.device), y[idx].to(d.device)
            cb = c[idx].to(d.device) if c is not None else None
            for g in opt.param_groups:
                g["lr"] = lr_at(state["step"], total_steps)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                logits = net(xb, cb)  # (B, T, V)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                   ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            state["step"] += 1
            n_tok = int((yb != IGNORE).sum())
            tok_epoch += n_tok
            loss_sum += float(loss.detach()) * n_tok
            loss_n += n_tok
            prog((si + 1) / steps)
            now = time.monotonic()
            if cfg.max_minutes and now - t_start > cfg.max_minutes * 60:
                out_of_time = True
            stop = _all_sum([1.0 if out_of_time else 0.0], d)[0] > 0
            if stop:
                out_of_time = True
                break
            if cfg.ckpt_minutes and now - last_ckpt > cfg.ckpt_minutes * 60:
                state["train_seconds"] = now - t_start
                save_resume()
                last_ckpt = now
        prog.done()
        dt = time.monotonic() - t_epoch
        tot, cnt = evaluate_windows(model, vx, vy, cfg.batch_size * 2, d, amp, vc)
        tot, cnt, tok_all = _all_sum([tot, float(cnt), float(tok_epoch)], d)
        val = tot / max(1.0, cnt)
        val_note = tot / max(1, valid_notes)
        train_loss = _all_sum([loss_sum, float(loss_n)], d)
        state["epoch"] = epoch + 1
        state["tokens"] += int(tok_all)
        state["train_seconds"] = time.monotonic() - t_start
        if cfg.max_minutes and not state["sched_epochs"]:
            # the cosine schedule ends where the time budget does: fixed after the first
            # epoch (kept on resume), the same on every rank (their smallest estimate)
            fit = budget_epochs(state["epoch"], time.monotonic() - t_epoch,
                                cfg.max_minutes * 60 - state["train_seconds"], cfg.epochs)
            state["sched_epochs"] = int(_all_sum([float(fit)], d, smallest=True)[0])
            if d.main:
                log.info("time budget: the schedule ends after epoch %d", state["sched_epochs"])
        improved = val < state["best"]
        if improved:
            state["best"], state["best_note"], state["bad_epochs"] = val, val_note, 0
        else:
            state["bad_epochs"] += 1
        tps = tok_all / dt if dt > 0 else 0.0
        if d.main:  # printed, not logged: one line per epoch without -v (docs/model.md)
            sys.stderr.write(f"epoch {epoch + 1}: train {train_loss[0] / max(1.0, train_loss[1]):.4f}, "
                             f"valid {val:.4f} nats/event {val_note:.4f} nats/note, {tps:.0f} tokens/s"
                             f"{' (best)' if improved else ''}\n")
            if improved:
                m = dict(meta)
                m.update({"world_size": d.world, "valid_nll_per_event": val, "valid_nll_per_note": val_note,
                          "epochs": epoch + 1, "parameters": n_params,
                          "train_seconds": round(state["train_seconds"], 1),
                          "tokens_seen": state["tokens"]})
                save_checkpoint(out, model, model_config, meta=m)
        save_resume()
        last_ckpt = time.monotonic()
        summary = {"epochs": state["epoch"], "best_valid_nll_per_event": state["best"],
                   "best_valid_nll_per_note": state["best_note"], "tokens_per_s": tps,
                   "train_seconds": state["train_seconds"], "parameters": n_params}
        if state["bad_epochs"] >= cfg.patience:
            if d.main:
                log.info("early stop: no improvement for %d epochs", cfg.patience)
            break
    return summary


# ---------------------------------------------------------------- command line




def run(args: argparse.Namespace) -> int:
    from . import corpus

    if args.arch == "render":
        from .render_net import run as run_render

        return run_render(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    d_model = args.d_model or 256
    layers = args.layers or (2 if args.arch == "lstm" else 4)
    mc = ModelConfig(arch=args.arch, d_model=d_model, n_layers=layers, n_heads=args.heads,
                     d_ff=4 * d_model, dropout=args.dropout, context=args.seq_len,
                     max_rel=args.seq_len, features=args.features)
    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                     patience=args.patience, max_minutes=args.max_minutes, seed=args.seed,
                     device=args.device, transpose=0 if args.no_augment else 3,
                     stretch=0.0 if args.no_augment else 0.05, init_from=args.init_from or "")
    pieces = corpus.load_corpus(args.corpus, cache_dir=args.cache or corpus.default_cache_dir(),
                                progress=None if args.quiet else corpus.progress_line("parsing corpus"))
    if args.limit_pieces:
        pieces = pieces[: args.limit_pieces]
    split = corpus.by_split(pieces)
    tr = split["train"]
    if not split["valid"]:  # tiny user folders: validate on train rather than not at all
        log.warning("no validation pieces in %s; validating on the training pieces", args.corpus)
    valid = [p.tokens for p in (split["valid"] or tr)]
    if args.valid_pieces:  # a budgeted CPU run: validate on a fixed subset
        valid = valid[: args.valid_pieces]
    variants = stretch_variants([p.score() if tc.stretch else None for p in tr],
                                [p.tokens for p in tr], tc.stretch)
    meta = {"corpus": args.corpus, "train_pieces": len(tr), "valid_pieces": len(split["valid"]),
            "test_pieces": len(split["test"]), "train_config": asdict(tc),
            "torch": str(torch.__version__), "threads": torch.get_num_threads()}
    summary = train(mc, tc, variants, valid, args.out, resume=args.resume,
                    progress=not args.quiet, meta=meta)
    if int(os.environ.get("RANK", "0")) == 0:
        sys.stdout.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in summary.items()) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m robo_player.model.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (ModelError, UsageError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 2


if __name__ == "__main__":
    rc = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun, skip interpreter finalisation: the process group is
        # already destroyed and the checkpoint written, and gloo's worker
        # threads can abort a rank that is torn down with them (pytorch#179291).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)

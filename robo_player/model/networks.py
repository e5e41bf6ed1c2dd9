"""The networks: a Performance RNN-style LSTM and a Transformer with relative positions.

One file of ``nn.Module``s plus :class:`ModelConfig` (nanoGPT style). Both models read
token ids ``(B, T)`` (the tokenizer's 390 events, plus a BOS id = ``vocab_size`` that
only ever appears as input) and return next-event logits ``(B, T, vocab_size)``. Both
also decode one event at a time with a cache (:meth:`step`) for fast sampling.

Relative positions in the Transformer: a *learned relative position bias*, one scalar
per head and per distance ``i - j`` (clipped to ``max_rel - 1``), added to the attention
logits -- T5/ALiBi-like, and the scalar form of Shaw et al.'s clipped relative positions.
It is not Huang et al.'s relative *embeddings* with the skewing trick: the bias costs
nothing at decode time and keeps attention in PyTorch's fused SDPA kernel. Because the
bias depends only on distance, a sliding key/value window at decode time is exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from torch import nn

from ..errors import ModelError
from .tokenizer import N_PITCH, TOKENIZER_VERSION, VOCAB_SIZE, state_codes

ARCHS = ("lstm", "transformer")


@dataclass(slots=True)
class ModelConfig:
    arch: str = "lstm"
    vocab_size: int = VOCAB_SIZE
    d_model: int = 256  # embedding / hidden size (LSTM: hidden units per layer)
    n_layers: int = 2
    n_heads: int = 4  # transformer only
    d_ff: int = 1024  # transformer only: feed-forward width
    dropout: float = 0.1
    max_rel: int = 512  # transformer only: distances >= this share one bias
    context: int = 512  # transformer only: key/value window when decoding
    features: bool = False  # also read the tokenizer's state rows (held keys, timing)
    tokenizer: str = TOKENIZER_VERSION

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ModelError(f"model config: arch {self.arch!r} unknown (allowed: {', '.join(ARCHS)})")
        for name, lo, hi in (("d_model", 8, 4096), ("n_layers", 1, 48), ("n_heads", 1, 64),
                             ("d_ff", 8, 16384), ("max_rel", 1, 65536), ("context", 2, 65536),
                             ("vocab_size", 2, 100000)):
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ModelError(f"model config: {name} = {v!r} out of range ({lo}..{hi})")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"model config: dropout = {self.dropout} out of range (0..<1)")
        if self.arch == "transformer" and self.d_model % self.n_heads:
            raise ModelError(f"model config: d_model {self.d_model} not divisible by n_heads {self.n_heads}")

    @classmethod
    def performance_rnn(cls) -> ModelConfig:
        """Magenta's Performance RNN size: LSTM 3x512."""
        return cls(arch="lstm", d_model=512, n_layers=3)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(f"{where}: unknown model config keys {unknown} (allowed: {sorted(known)})")
        return cls(**d)


def build_model(config: ModelConfig) -> nn.Module:
    return PerformanceLSTM(config) if config.arch == "lstm" else RelativeTransformer(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class StateEncoder(nn.Module):
    """The tokenizer's state rows ``(B, T, N_STATE)`` uint8 -> ``(B, T, d_model)``.

    Per key: down or not, and how long it has been down (linear, in seconds); a histogram
    of the held keys' times down (32 bins of 40 ms); one-hot bins (80 ms) of the time
    since the last onset and of the last inter-onset interval. All linear after that, so
    decoding can fold it into the first layer (:class:`~robo_player.model.generate.NumpyLSTM`).
    """

    N_BINS = 32
    EL_STEPS = 4  # histogram bin of a held key's time down: 4 steps (40 ms)
    GAP_STEPS = 8  # bin of the time since the last onset and of the last IOI: 80 ms
    # layout of the dense vector: [held 128 | seconds down 128 | hist 32 | since 32 | ioi 32]
    HIST, SINCE, IOI = 2 * N_PITCH, 2 * N_PITCH + N_BINS, 2 * N_PITCH + 2 * N_BINS
    N_DENSE = 2 * N_PITCH + 3 * N_BINS

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.proj = nn.Linear(self.N_DENSE, d_model)

    @classmethod
    def dense(cls, codes: torch.Tensor) -> torch.Tensor:
        c = codes.long()
        keys = c[..., :N_PITCH]
        held = keys > 0
        el = (keys - 1).clamp(min=0) * held
        nb = cls.N_BINS
        hist = torch.zeros(*c.shape[:-1], nb, dtype=torch.float32, device=c.device)
        hist.scatter_add_(-1, (el // cls.EL_STEPS).clamp(max=nb - 1), held.float())
        since = F.one_hot((c[..., N_PITCH] // cls.GAP_STEPS).clamp(max=nb - 1), nb).float()
        ioi = F.one_hot((c[..., N_PITCH + 1] // cls.GAP_STEPS).clamp(max=nb - 1), nb).float()
        return torch.cat([held.float(), el.float() / 100.0, hist, since, ioi], dim=-1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dense(codes))


def codes_for(x: torch.Tensor) -> torch.Tensor:
    """State rows ``(B, T, N_STATE)`` for input rows ``x`` (B, T): row ``j`` is the state
    after inputs ``x[..., :j + 1]`` (BOS and padding ids change nothing). Exact when each
    row starts its piece; a window from mid-piece needs the rows of the whole piece."""
    import numpy as np

    r = x.cpu().numpy()
    pad = np.zeros((r.shape[0], 1), r.dtype)
    rows = [state_codes(np.concatenate([row, p]))[1:] for row, p in zip(r, pad, strict=True)]
    return torch.from_numpy(np.stack(rows)).to(x.device)


class _EventInputs(nn.Module):
    """Shared by both networks: event embedding plus, for a features model, the
    projected state rows (``self.embed``, ``self.state_enc`` set by the subclass)."""

    embed: nn.Embedding
    state_enc: StateEncoder | None

    def inputs(self, x: torch.Tensor, codes: torch.Tensor | None) -> torch.Tensor:
        e = self.embed(x)
        if self.state_enc is not None:
            e = e + self.state_enc(codes if codes is not None else codes_for(x))
        return e


class PerformanceLSTM(_EventInputs):
    """Embedding -> LSTM (n_layers x d_model) -> linear, as Performance RNN."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size + 1, config.d_model)  # +1: BOS
        self.state_enc = StateEncoder(config.d_model) if config.features else None
        self.lstm = nn.LSTM(config.d_model, config.d_model, config.n_layers, batch_first=True,
                            dropout=config.dropout if config.n_layers > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.d_model, config.vocab_size)

    def forward(self, x: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, T) ids; ``codes`` (B, T, N_STATE) the state after each input (made
        here from ``x`` when absent, which assumes each row starts a piece)."""
        h, _ = self.lstm(self.drop(self.inputs(x, codes)))  # (B, T, C)
        return self.head(self.drop(h))  # (B, T, V)

    def step(self, tok: torch.Tensor, state: Any = None,
             codes: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """One event for each batch row: ``tok`` (B,) -> logits (B, V), new state.
        A features model needs ``codes`` (B, N_STATE): the state after ``tok``."""
        if self.state_enc is not None and codes is None:
            raise ModelError("this model reads state features: pass codes to step()")
        e = self.inputs(tok[:, None], None if codes is None else codes[:, None])
        h, state = self.lstm(e, state)  # (B, 1, C)
        return self.head(h[:, 0]), state


class RelativeSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.max_rel = config.max_rel
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.rel_bias = nn.Parameter(torch.zeros(config.n_heads, config.max_rel))  # (H, R)
        self.dropout = config.dropout

    def bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """Additive attention bias (H, Tq, Tk): learned by distance, -inf for the future."""
        dist = q_pos[:, None] - k_pos[None, :]  # (Tq, Tk)
        b = self.rel_bias[:, dist.clamp(0, self.max_rel - 1)]  # (H, Tq, Tk)
        return b.masked_fill(dist < 0, float("-inf"))

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                pos0: int = 0, window: int | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        B, T, C = x.shape  # noqa: N806
        H = self.n_heads  # noqa: N806
        q, k, v = self.qkv(x).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)  # each (B, H, T, D)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
            if window is not None and k.shape[2] > window:
                k, v = k[:, :, -window:], v[:, :, -window:]
        tk = k.shape[2]
        q_pos = torch.arange(pos0, pos0 + T, device=x.device)
        k_pos = torch.arange(pos0 + T - tk, pos0 + T, device=x.device)
        bias = self.bias(q_pos, k_pos).to(q.dtype)  # (H, T, Tk)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj(y), (k, v)


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = RelativeSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, config.d_ff), nn.GELU(),
                                 nn.Linear(config.d_ff, config.d_model))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: Any = None, pos0: int = 0,
                window: int | None = None) -> tuple[torch.Tensor, Any]:
        a, cache = self.attn(self.ln1(x), cache, pos0, window)
        x = x + self.drop(a)
        x = x + self.drop(self.mlp(self.ln2(x)))
        return x, cache


class RelativeTransformer(_EventInputs):
    """Decoder-only pre-LN Transformer with learned relative position bias (no absolute
    positions at all, so it runs on sequences of any length)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size + 1, config.d_model)
        self.state_enc = StateEncoder(config.d_model) if config.features else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size)

    def forward(self, x: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        h = self.drop(self.inputs(x, codes))  # (B, T, C)
        for blk in self.blocks:
            h, _ = blk(h)
        return self.head(self.ln_f(h))  # (B, T, V)

    def step(self, tok: torch.Tensor, state: Any = None,
             codes: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """One event per row with a key/value cache; ``state`` = (pos, [(k, v)] per layer)."""
        if self.state_enc is not None and codes is None:
            raise ModelError("this model reads state features: pass codes to step()")
        pos, caches = state if state is not None else (0, [None] * len(self.blocks))
        h = self.inputs(tok[:, None], None if codes is None else codes[:, None])  # (B, 1, C)
        new = []
        for blk, c in zip(self.blocks, caches, strict=True):
            h, c = blk(h, c, pos, self.config.context)
            new.append(c)
        return self.head(self.ln_f(h[:, 0])), (pos + 1, new)

"""Checkpoints: weights + config + tokenizer version (+ optimiser state for resume).

Everything is stored as tensors and plain Python values, so a checkpoint loads with
``torch.load(weights_only=True)``: no pickled code can run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..fileio import atomic_path
from .networks import ModelConfig, build_model
from .tokenizer import TOKENIZER_VERSION

log = logging.getLogger(__name__)

FORMAT = "robo_player.model"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, model: nn.Module, config: ModelConfig,
                    meta: dict[str, Any] | None = None,
                    train_state: dict[str, Any] | None = None) -> None:
    """Write atomically (temp file renamed into place): a stop never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DDP
    blob: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tokenizer": TOKENIZER_VERSION,
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    if train_state is not None:
        blob["train_state"] = train_state
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint dict; ModelError for missing, corrupt or incompatible."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model checkpoint")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: corrupt or not a robo_player checkpoint ({first[:200]})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path}: not a robo_player model checkpoint (format must be {FORMAT!r})")
    if blob.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format version {blob.get('format_version')!r} "
                         f"unsupported (allowed: {FORMAT_VERSION})")
    if blob.get("tokenizer") != TOKENIZER_VERSION:
        raise ModelError(f"{path}: checkpoint made for tokenizer {blob.get('tokenizer')!r}, "
                         f"this robo_player uses {TOKENIZER_VERSION!r}; retrain or use a matching version")
    for key in ("config", "state_dict"):
        if not isinstance(blob.get(key), dict):
            raise ModelError(f"{path}: checkpoint has no {key!r} dict")
    return blob


def load_model(path: str | Path, device: str = "cpu") -> tuple[nn.Module, ModelConfig, dict[str, Any]]:
    """``(model in eval mode, config, meta)`` from a checkpoint file."""
    blob = read_checkpoint(path)
    config = ModelConfig.from_dict(blob["config"], where=f"{path}: config")
    model = build_model(config)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as err:
        raise ModelError(f"{path}: weights do not match the config ({str(err).splitlines()[0]})") from err
    model.to(device).eval()
    return model, config, dict(blob.get("meta", {}))

"""World-model checkpoint files: written atomically, read with ``weights_only=True``.

A file holds the resolved model config beside the weights, so a model rebuilds from the file
alone (``score``, ``WorldModelEnv``). Training checkpoints embed the same two keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path
from .config import ConfigError, WorldModelConfig, from_mapping, to_dict
from .models import build_world_model
from .world_model import WorldModel

FORMAT = "loopwm-rl/world-model"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model; the message says which."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def world_model_payload(model: WorldModel, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "model_config": to_dict(model.cfg),
        "state_dict": model.state_dict(),
        "meta": dict(meta or {}),
    }


def save_world_model(path: str | Path, model: WorldModel, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (and JSON-like ``meta``: env id, action bounds, ...) to ``path``."""
    return atomic_save(world_model_payload(model, meta), path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``) or raise a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated/corrupt/foreign files
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated?): {err}") from err
    if not isinstance(payload, dict) or "model_config" not in payload or "state_dict" not in payload:
        raise CheckpointError(f"{path} holds no world model (expected keys 'model_config' and 'state_dict')")
    payload["state_dict"] = _rename_legacy(payload["state_dict"])
    return payload


# Checkpoints written before the tokenizers had their own module kept these token parameters
# on the model itself; their values carry over unchanged under ``tokenizer.``.
_MOVED_TO_TOKENIZER = {"pos", "slot_tokens", "state_token", "action_embed"}


def _rename_legacy(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        f"tokenizer.{key}" if key.split(".")[0] in _MOVED_TO_TOKENIZER else key: value
        for key, value in state_dict.items()
    }


def load_world_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[WorldModel, dict[str, Any]]:
    """Rebuild the world model stored in ``path``; returns ``(model, meta)`` in eval mode."""
    payload = read_checkpoint(path)
    try:
        cfg = from_mapping(WorldModelConfig, payload["model_config"], prefix="model.")
        model = build_world_model(cfg)
    except ConfigError as err:
        raise CheckpointError(f"{path}: incompatible model config: {err}") from err
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the stored model config: {err}") from err
    return model.to(device).eval(), dict(payload.get("meta", {}))

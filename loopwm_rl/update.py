"""Optimiser and one update of the world model (AdamW, gradient clipping, NaN guard)."""

from __future__ import annotations

import torch
from torch import nn

from .batch import SequenceBatch


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the offending terms."""


NO_DECAY = ("tokenizer.pos", "tokenizer.slot_tokens", "tokenizer.object_embed", "loop_readout", "loop_modulation")


def make_optimizer(model: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """AdamW without weight decay on norms, biases, embeddings and the state injection
    (decaying ``a``, ``Δ`` or ``B`` would pull the retention away from its Parcae init). A
    world model's memory (``memory.*``) learns at ``lr * cfg.memory_lr_scale``."""
    cfg = getattr(model, "cfg", None)
    memory_lr = lr * getattr(cfg, "memory_lr_scale", 1.0)
    groups: dict[tuple[bool, bool], list] = {(d, m): [] for d in (True, False) for m in (False, True)}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = not (param.dim() < 2 or name.startswith("injection.") or name in NO_DECAY)
        groups[(decays, name.startswith("memory."))].append(param)
    return torch.optim.AdamW(
        [
            {"params": params, "weight_decay": weight_decay if decays else 0.0, "lr": memory_lr if memory else lr}
            for (decays, memory), params in groups.items()
            if params or not memory  # two groups without memory, as checkpoints made before it hold
        ],
        lr=lr,
    )


def update(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: SequenceBatch,
    *,
    grad_clip: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One gradient step on ``batch``; returns the loss metrics plus the gradient norm."""
    model.train()
    loss, metrics = model.loss(batch, generator=generator)
    if not torch.isfinite(loss):
        bad = {k: v for k, v in metrics.items() if not torch.isfinite(torch.tensor(v))}
        raise NonFiniteLossError(
            f"world-model loss is {loss.item()}; non-finite terms: {bad or metrics}. "
            "Lower the learning rate or check the data for NaN/inf values."
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    metrics["train/grad_norm"] = float(grad_norm)
    return metrics

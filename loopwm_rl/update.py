"""Optimiser and one update of the world model (AdamW, gradient clipping, divergence guard)."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from .batch import SequenceBatch


class NonFiniteLossError(FloatingPointError):
    """Updates kept coming out NaN or infinite; the message names the offending terms."""


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


def non_finite(metrics: dict[str, float]) -> list[str]:
    """The names of the non-finite values in ``metrics``."""
    return [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]


def update(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: SequenceBatch,
    *,
    grad_clip: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One gradient step on ``batch``; returns the loss metrics plus the gradient norm.

    A non-finite loss or gradient skips the step, so the weights and the optimiser state stay
    as they were; the metrics then hold ``guard/skipped = 1`` and ``guard/bad`` names the
    terms that went bad (``train/wm_loss``, ``train/halting_loss``, ``train/consistency``, or
    the gradient). :class:`DivergenceGuard` counts such skips.
    """
    model.train()
    loss, metrics = model.loss(batch, generator=generator)
    if not torch.isfinite(loss):
        return {
            **metrics,
            "guard/skipped": 1.0,
            "guard/bad": "world model: " + ", ".join(non_finite(metrics) or ["train/loss"]),
        }
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if not torch.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        return {**metrics, "guard/skipped": 1.0, "guard/bad": "world model: the gradient"}
    optimizer.step()
    metrics["train/grad_norm"] = float(grad_norm)
    metrics["guard/skipped"] = 0.0
    return metrics


class DivergenceGuard:
    """Counts consecutive skipped updates (``guard/skipped`` in their metrics, from the world
    model's :func:`update` or the critic's); warns on each, and after ``max_bad`` in a row
    raises :class:`NonFiniteLossError` naming the bad terms, before anything more is saved."""

    def __init__(self, max_bad: int) -> None:
        if max_bad < 1:
            raise ValueError(f"max_bad={max_bad} must be >= 1")
        self.max_bad, self.bad, self.skipped = max_bad, 0, 0

    def check(self, metrics: dict) -> None:
        if not metrics.get("guard/skipped"):
            self.bad = 0
            return
        self.bad += 1
        self.skipped += 1
        what = metrics.get("guard/bad", "a loss term")
        if self.bad >= self.max_bad:
            raise NonFiniteLossError(
                f"{self.bad} updates in a row were non-finite (last: {what}); stopping with the last "
                "checkpoint as it was. Lower the learning rate or check the data for NaN/inf values."
            )
        warnings.warn(f"skipped an update with non-finite values ({what}); weights kept", RuntimeWarning, stacklevel=2)

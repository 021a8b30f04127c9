"""What the world-model verbs return: one step, a rollout over time, every loop of a step, and
the scores of real transitions."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch


@dataclasses.dataclass
class PerLoop:
    """Every loop's (normalised) predictions, kept for per-loop supervision. Leading (K, B)."""

    z: torch.Tensor  # (K, B, D) next latent features (without the observation estimate)
    delta: torch.Tensor  # (K, B, O)
    reward: torch.Tensor  # (K, B)
    cont_logit: torch.Tensor  # (K, B)
    features: torch.Tensor  # (K, B, F) detached
    valid: torch.Tensor  # (K, B) bool: the sample ran this loop

    @classmethod
    def scatter(cls, kept: list[tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]], B: int) -> PerLoop:
        """Dense (K, B, ...) tensors from each loop's (batch rows (k,), fields (n, ...), running (n,))."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "valid"]
        cols: dict[str, list[torch.Tensor]] = {k: [] for k in names}
        valid = []
        for rows, fields, running in kept:
            for key in cols:
                value = fields[key][running]  # (k, ...)
                cols[key].append(value.new_zeros(B, *value.shape[1:]).index_copy(0, rows, value))
            mask = torch.zeros(B, dtype=torch.bool, device=rows.device)
            mask[rows] = True
            valid.append(mask)
        return cls(**{k: torch.stack(v) for k, v in cols.items()}, valid=torch.stack(valid))


@dataclasses.dataclass
class StepOut:
    """The result of one env step for a batch of B samples."""

    z: torch.Tensor  # (B, O + D) next latent
    obs: torch.Tensor  # (B, O) predicted next observation
    reward: torch.Tensor  # (B,)
    cont: torch.Tensor  # (B,) probability that the episode continues
    loops: torch.Tensor  # (B,) int64, loops this step used
    residuals: torch.Tensor  # (B, K) relative latent change per loop, NaN after halting
    delta: torch.Tensor  # (B, O) normalised next-observation delta
    per_loop: PerLoop | None = None


@dataclasses.dataclass
class Rollout:
    """StepOuts stacked over time: every tensor gains a leading H."""

    z: torch.Tensor  # (H, B, O + D)
    obs: torch.Tensor  # (H, B, O)
    reward: torch.Tensor  # (H, B)
    cont: torch.Tensor  # (H, B)
    loops: torch.Tensor  # (H, B)
    residuals: torch.Tensor  # (H, B, K)
    delta: torch.Tensor  # (H, B, O)
    per_loop: list[PerLoop] | None = None

    @classmethod
    def stack(cls, steps: list[StepOut]) -> Rollout:
        fields = [f.name for f in dataclasses.fields(StepOut) if f.name != "per_loop"]
        stacked = {name: torch.stack([getattr(s, name) for s in steps]) for name in fields}
        per_loop = [s.per_loop for s in steps] if steps[0].per_loop is not None else None
        return cls(**stacked, per_loop=per_loop)


@dataclasses.dataclass
class Scores:
    """Real transitions judged by the model (:meth:`WorldModel.score`), as numpy arrays."""

    loops: np.ndarray  # (N,) int64
    error: np.ndarray  # (N,) normalised one-step error (1 ~ predicting "no change")
    residuals: np.ndarray  # (N, K) relative latent change per loop, NaN after halting

    @classmethod
    def cat(cls, parts: list[Scores]) -> Scores:
        """Concatenate scores of consecutive chunks; residual widths may differ (NaN-padded)."""
        K = max(p.residuals.shape[1] for p in parts)
        pad = [np.pad(p.residuals, ((0, 0), (0, K - p.residuals.shape[1])), constant_values=np.nan) for p in parts]
        return cls(
            loops=np.concatenate([p.loops for p in parts]),
            error=np.concatenate([p.error for p in parts]),
            residuals=np.concatenate(pad),
        )

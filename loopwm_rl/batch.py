"""Training sequences, time-major."""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class SequenceBatch:
    """B sequences of H transitions each.

    Attributes:
        obs: (H + 1, B, O) observations o_0 .. o_H.
        actions: (H, B, A) float or (H, B) int64.
        rewards: (H, B).
        terminated: (H, B) bool; True where the transition ended the episode. Steps after a
            termination inside a sequence are masked out of the loss.
        first: optional (B,) int64, the first step of each sequence inside its episode; the
            steps before it pad a burn-in prefix that reaches back past the episode start
            (a model with memory starts filtering at ``first`` or later).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    first: torch.Tensor | None = None

    def __post_init__(self) -> None:
        H1, B = self.obs.shape[:2]
        H = H1 - 1
        if self.obs.dim() != 3 or H < 1:
            raise ValueError(f"obs must be (H + 1, B, O) with H >= 1, got {tuple(self.obs.shape)}")
        for name in ("actions", "rewards", "terminated"):
            shape = tuple(getattr(self, name).shape[:2])
            if shape != (H, B):
                raise ValueError(f"{name} has leading shape {shape}, expected (H, B) = {(H, B)}")
        if self.rewards.dim() != 2 or self.terminated.dim() != 2:
            raise ValueError("rewards and terminated must be (H, B)")
        if self.first is not None and tuple(self.first.shape) != (B,):
            raise ValueError(f"first has shape {tuple(self.first.shape)}, expected (B,) = ({B},)")

    @property
    def horizon(self) -> int:
        return self.actions.shape[0]

    @property
    def batch_size(self) -> int:
        return self.actions.shape[1]

    def alive(self) -> torch.Tensor:
        """(H, B) float: 1 up to and including the first termination, 0 after it."""
        term = self.terminated.float()
        before = torch.cat([torch.zeros_like(term[:1]), term[:-1]], 0)
        return (1 - before).cumprod(0)

    def to(self, device: torch.device | str) -> SequenceBatch:
        moved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return SequenceBatch(**{k: v if v is None else v.to(device) for k, v in moved.items()})

"""The planning objective: discounted imagined return of action sequences."""

from __future__ import annotations

import warnings
from typing import Protocol

import torch

from loopwm_rl.outputs import Rollout


class Dynamics(Protocol):
    """What the planner needs of a model: the world-model verbs ``encode`` and ``imagine``."""

    def encode(self, obs: torch.Tensor) -> torch.Tensor: ...

    def imagine(self, z0: torch.Tensor, actions: torch.Tensor, **kwargs) -> Rollout: ...


class ImaginedReturn:
    """``V(a_{0:H}) = sum_t gamma^t C_t r_t + gamma^H C_H Q(z_H, pi(z_H))`` where
    ``C_t = prod_{s<t} cont_s`` is the predicted probability of still being alive.

    One batched ``imagine`` call over ``(H, N)`` scores all N candidates. Candidates whose
    imagined values are not finite score ``-inf`` and a warning names the first bad step.

    Args:
        model: a world model (or anything with its ``encode``/``imagine`` verbs).
        gamma: discount.
        value: optional ``value(z) -> (N,)`` terminal value (e.g. ``ActorCritic.value``).
        max_loops: loop cap of imagined steps.
    """

    def __init__(self, model: Dynamics, gamma: float = 0.99, value=None, max_loops: int | None = None) -> None:
        self.model, self.gamma, self.value, self.max_loops = model, gamma, value, max_loops
        self.z0: torch.Tensor | None = None
        self.loops: list[torch.Tensor] = []

    def start(self, z0: torch.Tensor) -> None:
        """Plan from the current latent (1, S), once per plan."""
        self.z0 = z0
        self.loops = []

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        H, N = actions.shape[:2]
        kwargs = {} if self.max_loops is None else {"max_loops": self.max_loops}
        roll = self.model.imagine(self.z0.expand(N, -1), actions, **kwargs)
        self.loops.append(roll.loops)  # (H, N)
        discount = self.gamma ** torch.arange(H, dtype=roll.reward.dtype, device=roll.reward.device)
        alive = torch.cumprod(torch.cat([torch.ones_like(roll.cont[:1]), roll.cont[:-1]]), 0)  # (H, N)
        values = (discount[:, None] * alive * roll.reward).sum(0)  # (N,)
        if self.value is not None:
            values = values + self.gamma**H * alive[-1] * roll.cont[-1] * self.value(roll.z[-1])
        bad = ~torch.isfinite(values)
        if bool(bad.any()):
            finite_steps = torch.isfinite(roll.reward) & torch.isfinite(roll.z).all(-1)  # (H, N)
            first = int((~finite_steps[:, bad]).float().argmax(0).min())
            warnings.warn(
                f"imagined rollouts gave non-finite values for {int(bad.sum())} of {N} candidates, "
                f"first at imagined step {first}; they are ranked last",
                RuntimeWarning,
                stacklevel=2,
            )
            values = values.masked_fill(bad, -torch.inf)
        return values

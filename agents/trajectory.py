"""Receding-horizon trajectory optimisation with a warm start."""

from __future__ import annotations

import torch
from gymnasium import spaces

from .config import PlannerConfig
from .optimizers import CategoricalCEM, GaussianOptimizer, Objective, Solution


class TrajectoryOptimizer:
    """Replans every step, starting from the previous plan shifted by one step.

    ``reset()`` at episode start forgets the previous plan (mean 0 / uniform probabilities,
    std ``max_std``). When every candidate of a plan is non-finite the previous plan is kept.
    """

    def __init__(self, cfg: PlannerConfig, action_space: spaces.Space, device: torch.device | str = "cpu") -> None:
        self.cfg, self.device = cfg, torch.device(device)
        if isinstance(action_space, spaces.Discrete):
            self.discrete, self.n = True, int(action_space.n)
            self.optimizer: GaussianOptimizer | CategoricalCEM = CategoricalCEM(cfg, self.n)
        elif isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
            self.discrete = False
            low = torch.as_tensor(action_space.low, dtype=torch.float32, device=self.device)
            high = torch.as_tensor(action_space.high, dtype=torch.float32, device=self.device)
            self.optimizer = GaussianOptimizer(cfg, low, high)
            self.low, self.high = low, high
        else:
            raise ValueError(f"action space {action_space} is not supported: expected Discrete(n) or a 1-D Box")
        self.prev: torch.Tensor | None = None

    def reset(self) -> None:
        self.prev = None

    def initial(self) -> torch.Tensor:
        """The warm-start mean (or probabilities): the previous plan shifted by one step."""
        H = self.cfg.horizon
        if self.discrete:
            fresh = torch.full((1, self.n), 1.0 / self.n, device=self.device)
        else:
            fresh = ((self.low + self.high) / 2)[None]
        if self.prev is None:
            return fresh.expand(H, -1).clone()
        return torch.cat([self.prev[1:], fresh], 0)

    def next_iterations(self) -> int:
        """Iterations of the next plan: ``warm_iterations`` once warm-started (when set)."""
        return self.cfg.warm_iterations if self.prev is not None and self.cfg.warm_iterations else self.cfg.iterations

    def plan(self, objective: Objective, generator: torch.Generator | None = None, prior=None) -> Solution:
        start = self.initial()
        iterations = self.next_iterations()
        if self.discrete:
            sol = self.optimizer.optimize(objective, start, generator, prior, iterations)
        else:
            std = torch.full_like(start, self.cfg.max_std)
            sol = self.optimizer.optimize(objective, start, std, generator, prior, iterations)
        if not bool(torch.isfinite(sol.values).any()):
            # nothing usable was imagined: keep acting on the previous plan
            sol.mean = start
            sol.values = torch.zeros_like(sol.values)
            sol.weights = torch.full_like(sol.weights, 1.0 / len(sol.weights))
            first = start.argmax(-1) if self.discrete else start  # (H,) actions or (H, A)
            sol.elites = first[:, None].expand(-1, len(sol.weights), *first.shape[1:]).clone()
        self.prev = sol.mean
        return sol

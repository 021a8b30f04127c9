"""Optimisers over action sequences. They know nothing about RL: they maximise
``objective(actions) -> values``, with actions time-major ``(H, N, A)`` (or ``(H, N)`` discrete).

Hand-written rather than TorchRL's ``MPPIPlanner``/``CEMPlanner``: those (0.14) have no warm
start, no std clamp or prior samples, overflow in ``exp(temperature * advantage)`` and route
every imagined step through TensorDict and ``env.rollout`` (see BENCHMARKS.md for the measured
throughput of both on the same world model).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from .config import PlannerConfig

Objective = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class Solution:
    """The sampling distribution after the last iteration and its elites."""

    mean: torch.Tensor  # (H, A) continuous, or (H, n) action probabilities when discrete
    std: torch.Tensor | None  # (H, A); None when discrete
    elites: torch.Tensor  # (H, E, A) or (H, E)
    weights: torch.Tensor  # (E,) sum to 1
    values: torch.Tensor  # (E,) elite values


def _nan_last(values: torch.Tensor) -> torch.Tensor:
    # not torch.nan_to_num: it would also turn -inf into the most negative finite float
    return values.masked_fill(torch.isnan(values), -torch.inf)


def elite_weights(values: torch.Tensor, temperature: float) -> torch.Tensor:
    """``exp(tau * (v - v_max))`` normalised; finite for any finite values."""
    return torch.softmax(temperature * (values - values.max()), dim=0)


class GaussianOptimizer:
    """MPPI (TD-MPC2 style) or CEM over continuous action sequences in ``[low, high]``.

    MPPI: the elites' weights are ``exp(tau (v - v_max))``; mean and std are the weighted mean
    and std of the elites (Williams et al. 2015; Hansen et al. 2024). CEM: unweighted elite
    statistics with ``momentum`` on the mean (Rubinstein 1999). Candidates from a policy prior
    can be passed in and compete with the Gaussian samples.
    """

    def __init__(self, cfg: PlannerConfig, low: torch.Tensor, high: torch.Tensor) -> None:
        self.cfg, self.low, self.high = cfg, low, high

    def optimize(
        self,
        objective: Objective,
        mean: torch.Tensor,
        std: torch.Tensor,
        generator: torch.Generator | None = None,
        prior: Callable[[], torch.Tensor] | None = None,
        iterations: int | None = None,
    ) -> Solution:
        cfg = self.cfg
        H, A = mean.shape
        n_prior = cfg.prior_samples if prior is not None else 0
        n_gauss = cfg.samples - n_prior
        for _ in range(iterations or cfg.iterations):
            noise = torch.randn(H, n_gauss, A, generator=generator, device=mean.device)
            actions = (mean[:, None] + std[:, None] * noise).clamp(self.low, self.high)  # (H, N, A)
            if n_prior:
                actions = torch.cat([prior()[:, :n_prior], actions], dim=1)
            values = _nan_last(objective(actions))  # (N,)
            elite_values, idx = values.topk(cfg.elites)
            elites = actions[:, idx]  # (H, E, A)
            if not bool(torch.isfinite(elite_values).any()):
                break  # nothing finite to learn from; the caller keeps its previous plan
            if cfg.method == "mppi":
                w = elite_weights(elite_values, cfg.temperature)[None, :, None]  # (1, E, 1)
                new_mean = (w * elites).sum(1)
                new_std = ((w * (elites - new_mean[:, None]) ** 2).sum(1)).sqrt()
            else:
                new_mean = cfg.momentum * mean + (1 - cfg.momentum) * elites.mean(1)
                new_std = elites.std(1, unbiased=False)
            mean, std = new_mean, new_std.clamp(cfg.min_std, cfg.max_std)
        weights = elite_weights(elite_values, cfg.temperature)
        return Solution(mean=mean, std=std, elites=elites, weights=weights, values=elite_values)


class CategoricalCEM:
    """CEM over discrete action sequences: per step a categorical distribution, updated to the
    elites' action frequencies mixed with ``smoothing`` of the uniform distribution."""

    def __init__(self, cfg: PlannerConfig, n_actions: int) -> None:
        self.cfg, self.n = cfg, n_actions

    def optimize(
        self,
        objective: Objective,
        probs: torch.Tensor,
        generator: torch.Generator | None = None,
        prior: Callable[[], torch.Tensor] | None = None,
        iterations: int | None = None,
    ) -> Solution:
        cfg = self.cfg
        H = probs.shape[0]
        for _ in range(iterations or cfg.iterations):
            actions = torch.multinomial(probs, cfg.samples, replacement=True, generator=generator)  # (H, N)
            values = _nan_last(objective(actions))
            elite_values, idx = values.topk(cfg.elites)
            elites = actions[:, idx]  # (H, E)
            if not bool(torch.isfinite(elite_values).any()):
                break
            w = elite_weights(elite_values, cfg.temperature)
            freq = torch.zeros(H, self.n, device=probs.device).scatter_add_(1, elites, w.expand(H, -1))
            probs = (1 - cfg.smoothing) * freq + cfg.smoothing / self.n
        return Solution(
            mean=probs,
            std=None,
            elites=elites,
            weights=elite_weights(elite_values, cfg.temperature),
            values=elite_values,
        )

"""Planner configuration (frozen, validated)."""

from __future__ import annotations

import dataclasses

from loopwm_rl.config import ConfigError

METHODS = ("mppi", "cem")
EXPLORE_NOISES = ("white", "ou")
EVAL_ACTIONS = ("mean", "best")


@dataclasses.dataclass(frozen=True)
class PlannerConfig:
    """Settings of the trajectory optimiser (TD-MPC2's MPPI by default)."""

    method: str = "mppi"
    """``mppi`` (weighted elites, TD-MPC2) or ``cem`` (unweighted elites). Discrete action spaces
    always use categorical CEM."""
    horizon: int = 5
    """Imagined steps H per candidate."""
    samples: int = 256
    """Candidates N per iteration (including ``prior_samples``)."""
    elites: int = 32
    """Top candidates that update the sampling distribution."""
    iterations: int = 4
    warm_iterations: int = 0
    """Iterations when the plan is warm-started from the previous step's (every step of an
    episode but the first); 0: ``iterations``. The shifted plan starts near the optimum, so
    fewer refinements are needed there (BENCHMARKS.md, "Where the time goes")."""
    temperature: float = 0.5
    """MPPI inverse temperature tau in the weights exp(tau * (v - v_max))."""
    min_std: float = 0.05
    max_std: float = 2.0
    """Continuous sampling std is clamped to [min_std, max_std]; max_std is the initial std."""
    momentum: float = 0.1
    """CEM: weight of the previous mean in the update (0 = replace)."""
    smoothing: float = 0.1
    """Categorical CEM: probability floor mixed into each update so no action dies out."""
    prior_samples: int = 0
    """Candidates drawn from the policy prior (when the agent has one)."""
    gamma: float = 0.99
    """Discount of imagined rewards."""
    eval_action: str = "mean"
    """Evaluation (noise-free) action: ``mean``, the first step of the final sampling
    distribution's mean (MPPI's weighted elite mean; discrete: its most likely action), or
    ``best``, the first action of the highest-valued elite. When the elites split between two
    ways of solving the task (swing left or right first), their mean can be a null action that
    leaves the state, and so the next plan, where it was. On the MountainCar and CartPole
    checkpoints measured the two rules return the same (BENCHMARKS.md, "MountainCar: the
    evaluation action")."""
    explore_std: float = 0.3
    """Training: Gaussian noise on the executed action (continuous)."""
    explore_noise: str = "white"
    """Training, continuous actions: ``white`` draws the noise afresh every decision; ``ou``
    draws it from an Ornstein-Uhlenbeck process with the same stationary std (``explore_std``)
    that keeps its sign for about ``1 / explore_theta`` decisions, and the seed phase then acts
    with that process around the box centre instead of uniformly. Correlated noise builds
    momentum where white noise cancels out (BENCHMARKS.md, "MountainCar: exploration noise")."""
    explore_theta: float = 0.15
    """``ou`` noise: fraction of the noise that decays each decision (1 = white)."""
    explore_eps: float = 0.1
    """Training: probability of a uniformly random action (discrete)."""
    max_loops: int | None = None
    """Loop cap of imagined steps (None: the world model's)."""
    halting: str | None = None
    """Halting while planning: None follows the world model's trained rule (at its calibrated
    budget); ``fixed`` runs every imagined step to the cap; ``convergence`` stops at the
    convergence rule's tolerance."""
    loop_budget: int = 0
    """World-model loops one plan (one env step) may spend over all its candidates, imagined
    steps and iterations; 0: no budget. Each call of the objective caps its loops per step to
    stay inside its share, so a plan never spends more (``plan/loops_spent``)."""
    screen_loops: int = 0
    """Multi-fidelity: score every candidate with at most this many loops per step first, then
    re-score the best ``screen_keep`` fraction at full depth; 0: off."""
    screen_keep: float = 0.25
    """Multi-fidelity: fraction of candidates re-scored at full depth (at least ``elites``)."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"planner.method={self.method!r} is not one of {list(METHODS)}")
        if self.horizon < 1:
            raise ConfigError(f"planner.horizon={self.horizon} must be >= 1")
        if self.iterations < 1 or self.warm_iterations < 0:
            raise ConfigError(
                f"planner.iterations={self.iterations} must be >= 1 and warm_iterations={self.warm_iterations} >= 0"
            )
        if self.samples < 2:
            raise ConfigError(f"planner.samples={self.samples} must be >= 2")
        if not 1 <= self.elites <= self.samples:
            raise ConfigError(f"planner.elites={self.elites} must lie in [1, samples={self.samples}]")
        if not 0 <= self.prior_samples < self.samples:
            raise ConfigError(f"planner.prior_samples={self.prior_samples} must lie in [0, samples={self.samples})")
        if not 0 < self.min_std <= self.max_std:
            raise ConfigError(f"planner.min_std={self.min_std} and max_std={self.max_std} need 0 < min_std <= max_std")
        if self.temperature <= 0 or not 0 < self.gamma <= 1:
            raise ConfigError(f"planner.temperature={self.temperature} must be > 0 and gamma={self.gamma} in (0, 1]")
        if self.max_loops is not None and self.max_loops < 1:
            raise ConfigError(f"planner.max_loops={self.max_loops} must be >= 1")
        if self.halting not in (None, "fixed", "convergence"):
            raise ConfigError(f"planner.halting={self.halting!r} is not one of [None, 'fixed', 'convergence']")
        if self.eval_action not in EVAL_ACTIONS:
            raise ConfigError(f"planner.eval_action={self.eval_action!r} is not one of {list(EVAL_ACTIONS)}")
        if self.explore_noise not in EXPLORE_NOISES or not 0 < self.explore_theta <= 1:
            raise ConfigError(
                f"planner.explore_noise={self.explore_noise!r} must be one of {list(EXPLORE_NOISES)} "
                f"and explore_theta={self.explore_theta} lie in (0, 1]"
            )
        if self.loop_budget < 0 or self.screen_loops < 0 or not 0 < self.screen_keep <= 1:
            raise ConfigError(
                f"planner.loop_budget={self.loop_budget} and screen_loops={self.screen_loops} must be >= 0 "
                f"and screen_keep={self.screen_keep} in (0, 1]"
            )

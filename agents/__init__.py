"""Planners and agents (imported as ``loopwm_rl.agents``), layered as optimiser over action
sequences -> trajectory optimiser with warm start -> agent ``act(obs)``."""

from .agent import PlanningAgent, PlanStats
from .config import PlannerConfig
from .critic import ActorCritic
from .objective import ImaginedReturn
from .optimizers import CategoricalCEM, GaussianOptimizer, Solution
from .trajectory import TrajectoryOptimizer

__all__ = [
    "ActorCritic",
    "CategoricalCEM",
    "GaussianOptimizer",
    "ImaginedReturn",
    "PlanStats",
    "PlannerConfig",
    "PlanningAgent",
    "Solution",
    "TrajectoryOptimizer",
]

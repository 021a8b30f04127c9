"""loopwm-rl: reinforcement learning with looped (weight-tied, adaptive-depth) world models.

The names below load on first use, so that ``import loopwm_rl`` does not load torch: the CLI
and the benchmarks set OpenMP's wait policy (:mod:`loopwm_rl.cores`) before torch starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "SequenceBatch": "batch",
    "ConfigError": "config",
    "HaltingConfig": "config",
    "WorldModelConfig": "config",
    "load_model_config": "config",
    "LoopedWorldModel": "models",
    "StackedWorldModel": "models",
    "build_world_model": "models",
    "Rollout": "outputs",
    "Scores": "outputs",
    "StepOut": "outputs",
    "WorldModel": "world_model",
}

__all__ = [
    "ConfigError",
    "HaltingConfig",
    "LoopedWorldModel",
    "Rollout",
    "Scores",
    "SequenceBatch",
    "StackedWorldModel",
    "StepOut",
    "WorldModel",
    "WorldModelConfig",
    "__version__",
    "build_world_model",
    "load_model_config",
]

if TYPE_CHECKING:
    from .batch import SequenceBatch
    from .config import ConfigError, HaltingConfig, WorldModelConfig, load_model_config
    from .models import LoopedWorldModel, StackedWorldModel, build_world_model
    from .outputs import Rollout, Scores, StepOut
    from .world_model import WorldModel


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'loopwm_rl' has no attribute {name!r}")

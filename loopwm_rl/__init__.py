"""loopwm-rl: reinforcement learning with looped (weight-tied, adaptive-depth) world models."""

from .batch import SequenceBatch
from .config import ConfigError, HaltingConfig, WorldModelConfig, load_model_config
from .models import LoopedWorldModel, StackedWorldModel, build_world_model
from .outputs import Rollout, Scores, StepOut
from .world_model import WorldModel

__version__ = "0.1.0"

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

"""The environment suite (imported as ``loopwm_rl.envs``).

Importing this package registers the suite with Gymnasium under the ``LoopWM/`` namespace.
``gymnasium.make("loopwm_rl.envs:LoopWM/BouncingBall-v0")`` imports it on the fly.
"""

import gymnasium as gym

from .billiards import BilliardsEnv
from .bouncing_ball import BouncingBallEnv
from .cradle import CradleEnv
from .factory import CLASSIC, MUJOCO, SUITE, EnvError, describe_suite, make_env
from .imagined import WorldModelEnv
from .teleport import TeleportEnv
from .zones import HiddenZonesEnv

for _env_id, _cls in SUITE.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=f"{_cls.__module__}:{_cls.__name__}", max_episode_steps=200)
if "LoopWM/Imagined-v0" not in gym.registry:
    gym.register(id="LoopWM/Imagined-v0", entry_point="loopwm_rl.envs.imagined:WorldModelEnv", max_episode_steps=200)

__all__ = [
    "CLASSIC",
    "MUJOCO",
    "SUITE",
    "BilliardsEnv",
    "BouncingBallEnv",
    "CradleEnv",
    "EnvError",
    "HiddenZonesEnv",
    "TeleportEnv",
    "WorldModelEnv",
    "describe_suite",
    "make_env",
]

"""One factory for the suite and the standard Gymnasium tasks."""

from __future__ import annotations

import difflib
import importlib.util
import inspect

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .billiards import BilliardsEnv
from .bouncing_ball import BouncingBallEnv
from .cradle import CradleEnv
from .repeat import ActionRepeat
from .teleport import TeleportEnv
from .zones import HiddenZonesEnv

SUITE = {
    "LoopWM/BouncingBall-v0": BouncingBallEnv,
    "LoopWM/Billiards-v0": BilliardsEnv,
    "LoopWM/HiddenZones-v0": HiddenZonesEnv,
    "LoopWM/Teleport-v0": TeleportEnv,
    "LoopWM/Cradle-v0": CradleEnv,
}
CLASSIC = ("Pendulum-v1", "CartPole-v1", "MountainCarContinuous-v0", "Acrobot-v1")
MUJOCO = ("InvertedPendulum-v5", "Reacher-v5", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")


class EnvError(ValueError):
    """An environment cannot be made; the message says why and what would work."""


def make_env(env_id: str, *, render_mode: str | None = None, action_repeat: int = 1, **kwargs) -> gym.Env:
    """Make a suite env or a standard task with the wrappers the agents need.

    Continuous actions are rescaled to ``[-1, 1]`` and observations cast to float32. With
    ``action_repeat`` > 1 each action is applied that many env steps (:class:`ActionRepeat`).

    Raises:
        EnvError: unknown id (with close matches), MuJoCo task without the ``mujoco`` extra,
            or keyword arguments the env does not take.
    """
    if env_id in MUJOCO and importlib.util.find_spec("mujoco") is None:
        raise EnvError(f"{env_id} needs MuJoCo, which is not installed: pip install 'loopwm-rl[mujoco]'")
    if env_id not in gym.registry:
        known = [*SUITE, *CLASSIC, *MUJOCO, *gym.registry]
        close = difflib.get_close_matches(env_id, list(dict.fromkeys(known)), n=3, cutoff=0.5)
        hint = f" Did you mean {close}?" if close else ""
        raise EnvError(f"unknown environment id {env_id!r}.{hint} The suite: {list(SUITE)}; standard: {list(CLASSIC)}")
    try:
        env = gym.make(env_id, render_mode=render_mode, **kwargs)
    except TypeError as err:
        cls = SUITE.get(env_id)
        valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"] if cls else "see its docs"
        raise EnvError(f"{env_id} got invalid arguments {kwargs}: {err}. Valid arguments: {valid}") from err
    if isinstance(env.action_space, spaces.Box) and not (
        np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
    ):
        ones = np.ones(env.action_space.shape, np.float32)
        env = gym.wrappers.RescaleAction(env, -ones, ones)
    if isinstance(env.observation_space, spaces.Box) and env.observation_space.dtype != np.float32:
        env = gym.wrappers.DtypeObservation(env, np.float32)
    if action_repeat != 1:
        env = ActionRepeat(env, action_repeat)
    return env


def describe_suite() -> list[dict[str, str]]:
    """Id, spaces, object count and hard event of each suite env (for ``loopwm-rl envs``)."""
    rows = []
    for env_id, cls in SUITE.items():
        env = cls()
        rows.append(
            {
                "id": env_id,
                "observation": f"Box{env.observation_space.shape}",
                "action": str(env.action_space)
                if isinstance(env.action_space, spaces.Discrete)
                else f"Box{env.action_space.shape}",
                "objects": str(len(env.objects)),
                "hard": cls.hard_event,
            }
        )
        env.close()
    return rows

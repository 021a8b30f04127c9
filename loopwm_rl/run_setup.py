"""What every run does around its world model, online or offline: threads and seeds, the
model's sizes (from an env's spaces or a dataset's arrays), the action metadata saved beside
the weights, and setting the halting threshold from a compute budget."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from loopwm_rl.envs import EnvError, make_env

from . import cores
from .calibration import calibrate, set_halting, threshold_of
from .config import WorldModelConfig
from .depth import contraction_warning
from .world_model import WorldModel


def start(seed: int, threads: int) -> np.random.Generator:
    """Set torch's threads (0: one, :mod:`loopwm_rl.cores`) and seed; returns the run's numpy
    generator."""
    torch.set_num_threads(cores.resolve_threads(threads))
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def sizes_from_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> dict[str, int]:
    """``obs_dim`` and ``action_dim`` or ``num_actions`` for :meth:`WorldModelConfig.resolve`,
    or an EnvError naming a space the world model cannot take."""
    if not (isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 1):
        raise EnvError(f"observation space {observation_space} is not supported: expected a 1-D Box")
    obs_dim = observation_space.shape[0]
    if isinstance(action_space, spaces.Discrete):
        return {"obs_dim": obs_dim, "num_actions": int(action_space.n)}
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        return {"obs_dim": obs_dim, "action_dim": action_space.shape[0]}
    raise EnvError(f"action space {action_space} is not supported: expected Discrete(n) or a 1-D Box")


def sizes_from_data(data: dict[str, np.ndarray]) -> dict[str, int]:
    """The same sizes from a dataset's arrays (discrete actions: the largest action + 1)."""
    obs_dim = data["observations"].shape[1]
    if data["actions"].ndim == 1:
        return {"obs_dim": obs_dim, "num_actions": int(data["actions"].max()) + 1}
    return {"obs_dim": obs_dim, "action_dim": data["actions"].shape[1]}


def object_layout(env: gym.Env | str, obs_dim: int) -> tuple[tuple[int, ...], ...]:
    """The env's declared object layout (``SuiteEnv.objects``; an env or an env id), or ``()``
    when it declares none or its observation size is not ``obs_dim`` (the tokenizer validates
    the layout itself)."""
    if isinstance(env, str):
        if not env:
            return ()
        try:
            made = make_env(env)
        except EnvError:
            return ()
        with made:
            return object_layout(made, obs_dim)
    if env.observation_space.shape != (obs_dim,):
        return ()
    return tuple(getattr(env.unwrapped, "objects", ()))


def resolve_model(cfg: WorldModelConfig, sizes: dict[str, int], env: gym.Env | str) -> WorldModelConfig:
    """``cfg`` resolved to ``sizes`` (:func:`sizes_from_spaces`, :func:`sizes_from_data`), with
    ``env``'s object layout filled in where the tokenizer reads one and the config names none."""
    if cfg.tokenizer in ("objects", "auto") and not cfg.objects:
        return cfg.resolve(**sizes, objects=object_layout(env, sizes["obs_dim"]))
    return cfg.resolve(**sizes)


def action_meta(env_id: str, action_space: spaces.Space | None = None, low=None, high=None) -> dict:
    """The metadata a checkpoint carries so that ``LoopWM/Imagined-v0`` rebuilds its spaces:
    the env id and, for continuous actions, the bounds (from the space, or given)."""
    meta: dict = {"env_id": env_id}
    if isinstance(action_space, spaces.Box):
        low, high = action_space.low, action_space.high
    if low is not None and high is not None:
        meta["action_low"] = np.asarray(low, np.float32).tolist()
        meta["action_high"] = np.asarray(high, np.float32).tolist()
    return meta


@torch.no_grad()
def check_contraction(model: WorldModel, z: torch.Tensor, actions: torch.Tensor) -> dict[str, float]:
    """Run every row of (z (N, S), actions) to the loop cap and warn (with the curve) if the
    residuals stop shrinking; returns ``depth/contraction``, last loop's residual / loop 2's."""
    with model.evaluating():
        curve = model.step(z, actions, halting="fixed").residuals.mean(0).cpu().numpy()  # (K,)
    message = contraction_warning(curve)
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return {"depth/contraction": float(curve[-1] / curve[1])} if len(curve) >= 3 else {}


def calibrate_to_budget(
    model: WorldModel, obs: torch.Tensor, actions: torch.Tensor, budget: float, z: torch.Tensor | None = None
) -> dict[str, float]:
    """Set the model's halting threshold so that mean loops on (obs, actions) are
    ``budget * loop_cap``; returns the ``depth/threshold`` and ``depth/calibrated_loops_mean`` it logs.
    ``z`` (N, S): the latents to step from (a model with memory passes its filtered ones)."""
    calibrated, loops = calibrate(model, obs, actions, budget, z=z)
    set_halting(model, calibrated)
    return {"depth/threshold": threshold_of(calibrated), "depth/calibrated_loops_mean": loops}

"""A Gymnasium environment whose dynamics are a trained world model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from loopwm_rl.checkpoint import CheckpointError, load_world_model


class WorldModelEnv(gym.Env):
    """
    ## Description
    An imagined environment: ``reset`` starts from a real initial observation and ``step``
    runs the world model stored in ``checkpoint`` one step at adaptive depth. Any Gymnasium
    agent can train inside it. ``info["loops"]`` is the number of loops that step used and
    ``info["cont"]`` the predicted probability that the episode continues.

    ## Action Space
    The action space the model was trained on: ``Discrete(n)`` or ``Box(low, high)`` from the
    checkpoint's ``meta`` (``action_low``/``action_high``; ``[-1, 1]`` when absent). Continuous
    actions are clipped to the box.

    ## Observation Space
    ``Box(-inf, inf, (O,), float32)``: the model's predicted observation.

    ## Rewards
    The model's predicted reward.

    ## Starting State
    A random row of ``initial_observations``: an ``(N, O)`` array, a dataset ``.npz`` (the first
    observation of each episode) or a Gymnasium id whose ``reset`` is used. Defaults to the
    checkpoint's ``meta["env_id"]``.

    ## Episode End
    Termination when the predicted continuation falls below ``termination_threshold``.
    Truncation after ``max_episode_steps`` (200 in the registration).

    ## Arguments
    ``gymnasium.make("LoopWM/Imagined-v0", checkpoint=PATH, initial_observations=None,
    max_loops=None, halting=None, termination_threshold=0.5)``.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        checkpoint: str | Path,
        initial_observations: str | np.ndarray | None = None,
        max_loops: int | None = None,
        halting: str | None = None,
        termination_threshold: float = 0.5,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise ValueError("WorldModelEnv does not render; use render_mode=None")
        self.model, self.meta = load_world_model(checkpoint)
        cfg = self.model.cfg
        self.max_loops, self.halting, self.threshold = max_loops, halting, termination_threshold
        self.observation_space = spaces.Box(-np.inf, np.inf, (cfg.obs_dim,), dtype=np.float32)
        if cfg.discrete:
            self.action_space: spaces.Space = spaces.Discrete(cfg.num_actions)
        else:
            low = np.asarray(self.meta.get("action_low", -1.0), np.float32) * np.ones(cfg.action_dim, np.float32)
            high = np.asarray(self.meta.get("action_high", 1.0), np.float32) * np.ones(cfg.action_dim, np.float32)
            self.action_space = spaces.Box(low, high, dtype=np.float32)
        self._real_env: gym.Env | None = None
        self._starts = self._initial_pool(
            initial_observations if initial_observations is not None else self.meta.get("env_id") or None
        )
        self._z: torch.Tensor | None = None

    def _initial_pool(self, source) -> np.ndarray | None:
        O = self.model.cfg.obs_dim
        if source is None:
            raise CheckpointError(
                "WorldModelEnv needs initial_observations (an (N, O) array, a dataset .npz or a "
                "Gymnasium id): the checkpoint names no env id (a model fitted on a dataset without "
                "one; refit with env.id=ID, or pass initial_observations=...)"
            )
        if isinstance(source, str) and not source.endswith(".npz"):
            self._real_env = gym.make(source)
            shape = self._real_env.observation_space.shape
            if shape != (O,):
                raise CheckpointError(f"{source} observations have shape {shape}; the model expects ({O},)")
            if isinstance(self._real_env.action_space, spaces.Discrete) != self.model.cfg.discrete:
                raise CheckpointError(
                    f"{source} has action space {self._real_env.action_space}; the model was built for "
                    f"{self.action_space}"
                )
            return None
        if isinstance(source, str | Path):
            with np.load(source) as data:
                obs = data["observations"]
                ends = data["terminations"] | data["truncations"]
            starts = np.concatenate([[0], np.flatnonzero(ends[:-1]) + 1])
            source = obs[starts]
        pool = np.asarray(source, dtype=np.float32)
        if pool.ndim != 2 or pool.shape[1] != O or len(pool) == 0:
            raise CheckpointError(f"initial observations have shape {pool.shape}; the model expects (N, {O})")
        return pool

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self._starts is None:
            obs, _ = self._real_env.reset(seed=int(self.np_random.integers(2**31)))
            obs = np.asarray(obs, np.float32)
        else:
            obs = self._starts[self.np_random.integers(len(self._starts))]
        with torch.no_grad():
            self._z = self.model.encode(torch.as_tensor(obs)[None])
        return obs.copy(), {"loops": 0}

    def step(self, action):
        if self._z is None:
            raise RuntimeError("call reset() before step()")
        if isinstance(self.action_space, spaces.Discrete):
            if not self.action_space.contains(np.int64(action)):
                raise ValueError(f"action {action!r} is not in {self.action_space}")
            act = torch.tensor([int(action)])
        else:
            action = np.asarray(action, np.float32).reshape(self.action_space.shape)
            if not np.all(np.isfinite(action)):
                raise ValueError(f"action {action!r} is not finite")
            act = np.clip(
                action,
                self.action_space.low,
                self.action_space.high,
            )
            act = torch.as_tensor(act)[None]
        with torch.no_grad():
            out = self.model.step(self._z, act, max_loops=self.max_loops, halting=self.halting)
        self._z = out.z
        obs = out.obs[0].numpy().astype(np.float32)
        cont = float(out.cont[0])
        info = {"loops": int(out.loops[0]), "cont": cont}
        return obs, float(out.reward[0]), cont < self.threshold, False, info

"""Transition datasets (``.npz``, Minari's array names) and the ``collect`` job.

Arrays, transitions in episode order: ``observations (N, O) float32``, ``actions (N, A)
float32`` or ``(N,) int64``, ``rewards (N,)``, ``next_observations (N, O)``, ``terminations
(N,) bool``, ``truncations (N,) bool``, optional ``hard (N,) bool`` and ``events (N,) int64``
(the env's ``info["events"]``: sub-step events resolved in the transition). An episode ends where
``terminations | truncations``. Metadata, so that a model fitted on the file knows its env:
``env_id`` (a string) and, for continuous actions, ``action_low`` / ``action_high`` (A,).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from .atomic import atomic_path
from .batch import SequenceBatch

REQUIRED = ("observations", "actions", "rewards", "next_observations", "terminations", "truncations")


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or malformed; the message names the array."""


def validate(data: dict[str, np.ndarray], where: str = "dataset") -> dict[str, np.ndarray]:
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise DatasetError(f"{where} lacks the arrays {missing}; required: {list(REQUIRED)}")
    n = len(data["observations"])
    for key in (*REQUIRED, "hard", "events"):
        if key in data and len(data[key]) != n:
            raise DatasetError(f"{where}: '{key}' has {len(data[key])} rows but 'observations' has {n}")
    if n == 0:
        raise DatasetError(f"{where} holds no transitions")
    obs, nxt = data["observations"], data["next_observations"]
    if obs.ndim != 2 or nxt.shape != obs.shape:
        raise DatasetError(f"{where}: observations {obs.shape} and next_observations {nxt.shape} must both be (N, O)")
    for key in ("observations", "next_observations", "rewards"):
        if not np.all(np.isfinite(data[key])):
            raise DatasetError(f"{where}: '{key}' holds NaN or inf values")
    out = {
        "observations": obs.astype(np.float32),
        "next_observations": nxt.astype(np.float32),
        "rewards": data["rewards"].astype(np.float32).reshape(n),
        "terminations": data["terminations"].astype(bool).reshape(n),
        "truncations": data["truncations"].astype(bool).reshape(n),
    }
    actions = data["actions"]
    if np.issubdtype(actions.dtype, np.integer) and actions.ndim == 1:
        out["actions"] = actions.astype(np.int64)
    elif actions.ndim == 2:
        out["actions"] = actions.astype(np.float32)
    else:
        raise DatasetError(f"{where}: 'actions' must be (N, A) float or (N,) int, got {actions.shape} {actions.dtype}")
    if "hard" in data:
        out["hard"] = data["hard"].astype(bool).reshape(n)
    if "events" in data:
        out["events"] = data["events"].astype(np.int64).reshape(n)
    if "env_id" in data:
        out["env_id"] = np.asarray(str(np.asarray(data["env_id"])))  # a 0-d unicode array, no pickle
    if ("action_low" in data) != ("action_high" in data):
        raise DatasetError(f"{where}: 'action_low' and 'action_high' come together or not at all")
    if "action_low" in data:
        low, high = (np.asarray(data[k], np.float32).reshape(-1) for k in ("action_low", "action_high"))
        if out["actions"].ndim != 2 or low.shape != (out["actions"].shape[1],) or high.shape != low.shape:
            raise DatasetError(f"{where}: action bounds of shape {low.shape} do not fit actions {out['actions'].shape}")
        out["action_low"], out["action_high"] = low, high
    return out


def dataset_meta(data: dict[str, np.ndarray]) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """``(env_id, action_low, action_high)`` of a dataset: ``""`` when it names no env; for
    continuous actions without stored bounds, the range of the actions it holds."""
    env_id = str(data["env_id"]) if "env_id" in data else ""
    if data["actions"].ndim == 1:
        return env_id, None, None
    if "action_low" in data:
        return env_id, data["action_low"], data["action_high"]
    return env_id, data["actions"].min(0), data["actions"].max(0)


def load_dataset(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no dataset file at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DatasetError(f"{path} is not a readable .npz dataset: {err}") from err
    return validate(data, str(path))


def save_dataset(path: str | Path, data: dict[str, np.ndarray], *, overwrite: bool = False) -> Path:
    """Write atomically; refuses to replace an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise DatasetError(f"{path} exists; choose another --out or pass --force to replace it")
    data = validate(data, str(path))
    with atomic_path(path, suffix=".npz") as tmp:  # the suffix stops numpy from appending one
        np.savez_compressed(tmp, **data)
    return path


def episode_index(data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per transition: its episode number and its step t within the episode."""
    ends = data["terminations"] | data["truncations"]
    episode = np.concatenate([[0], np.cumsum(ends[:-1])]).astype(np.int64)
    starts = np.concatenate([[0], np.flatnonzero(ends[:-1]) + 1])
    t = np.arange(len(episode)) - starts[episode]
    return episode, t


def collect(env_id: str, steps: int, *, seed: int = 0, policy: str = "random", progress: bool = True) -> dict:
    """Run ``policy`` in ``env_id`` for ``steps`` transitions; keeps ``info["hard"]`` and
    ``info["events"]`` if given."""
    from loopwm_rl.envs import make_env

    if policy != "random":
        raise DatasetError(f"policy={policy!r}; only 'random' is available for collect")
    if steps < 1:
        raise DatasetError(f"--steps {steps} must be >= 1")
    env = make_env(env_id)
    env.action_space.seed(seed)
    rows: dict[str, list] = {k: [] for k in (*REQUIRED, "hard", "events")}
    has_hard = has_events = True
    obs, _ = env.reset(seed=seed)
    episode = 0
    for i in tqdm(range(steps), desc=f"collect {env_id}", disable=not progress, unit="step"):
        action = env.action_space.sample()
        nxt, reward, terminated, truncated, info = env.step(action)
        truncated = truncated or i == steps - 1  # the last episode is cut here
        for key, value in zip(REQUIRED, (obs, action, reward, nxt, terminated, truncated), strict=True):
            rows[key].append(value)
        has_hard = has_hard and "hard" in info
        rows["hard"].append(bool(info.get("hard", False)))
        has_events = has_events and "events" in info
        rows["events"].append(int(info.get("events", 0)))
        obs = nxt
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
    kept = {"hard": has_hard, "events": has_events}
    data = {k: np.asarray(v) for k, v in rows.items() if kept.get(k, True)}
    data["env_id"] = np.asarray(env_id)
    if isinstance(env.action_space, gym.spaces.Box):
        data["action_low"], data["action_high"] = env.action_space.low, env.action_space.high
    return validate(data, env_id)


def split_episodes(data: dict, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, val) over transitions, splitting whole episodes."""
    episode, _ = episode_index(data)
    n_ep = int(episode.max()) + 1
    rng = np.random.default_rng(seed)
    n_val = max(1, round(val_fraction * n_ep)) if n_ep > 1 and val_fraction > 0 else 0
    val_eps = rng.choice(n_ep, size=min(n_val, n_ep - 1), replace=False)
    val = np.isin(episode, val_eps)
    return ~val, val


class SequenceSampler:
    """Random windows of ``horizon`` transitions that stay inside one episode; windows that
    start on a ``hard`` transition are drawn ``hard_weight`` times as often as the others.

    With ``burn_in`` (a model with memory), each window also carries the ``burn_in``
    transitions before it; where the episode started later, the prefix is padded with the
    episode's first transition and ``SequenceBatch.first`` marks where the episode begins, so
    every step of every episode can start a window."""

    def __init__(
        self,
        data: dict,
        mask: np.ndarray,
        horizon: int,
        device: str | torch.device = "cpu",
        *,
        hard_weight: float = 1.0,
        burn_in: int = 0,
    ) -> None:
        episode, t_in_episode = episode_index(data)
        ends = data["terminations"] | data["truncations"]
        # remaining transitions in the episode from each index, including itself
        left = np.zeros(len(episode), dtype=np.int64)
        run = 0
        for i in range(len(episode) - 1, -1, -1):
            run = 1 if ends[i] else run + 1
            left[i] = run
        valid = np.flatnonzero(mask & (left >= horizon))
        valid = valid[np.all(mask[valid[:, None] + np.arange(horizon)], axis=1)] if len(valid) else valid
        if len(valid) == 0:
            raise DatasetError(f"no episode segment of {horizon} transitions to train on; lower the horizon")
        self.starts, self.horizon, self.burn_in = valid, horizon, burn_in
        self.episode_start = torch.as_tensor(np.arange(len(episode)) - t_in_episode)  # (N,)
        self.p = None
        if hard_weight != 1.0:
            if "hard" not in data:
                raise DatasetError(f"fit.hard_weight={hard_weight} needs the dataset's 'hard' column, which it lacks")
            weight = np.where(data["hard"][valid], hard_weight, 1.0)
            self.p = weight / weight.sum()
        to = lambda x: torch.as_tensor(x, device=device)  # noqa: E731
        self.obs, self.next_obs = to(data["observations"]), to(data["next_observations"])
        self.actions, self.rewards, self.term = (
            to(data["actions"]),
            to(data["rewards"]),
            to(data["terminations"]),
        )

    def sample(self, batch: int, rng: np.random.Generator) -> SequenceBatch:
        n = len(self.starts)
        pick = rng.integers(n, size=batch) if self.p is None else rng.choice(n, batch, p=self.p)
        start = torch.as_tensor(self.starts[pick])  # (B,)
        n = self.burn_in
        idx = start[None, :] + torch.arange(-n, self.horizon)[:, None]  # (n + H, B)
        first = (self.episode_start[start] - (start - n)).clamp_min(0)  # (B,): padded steps
        idx = torch.maximum(idx, self.episode_start[start][None, :])  # padding repeats the first step
        obs = torch.cat([self.obs[idx], self.next_obs[idx[-1:]]], 0)  # (n + H + 1, B, O)
        batch = SequenceBatch(obs, self.actions[idx], self.rewards[idx], self.term[idx])
        if n:
            batch.first = first
        return batch

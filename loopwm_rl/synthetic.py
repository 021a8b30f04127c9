"""Known dynamics for studying depth, in a time-major layout: suite-env rollouts, a substepped
pendulum and the Chirikov standard map (maps a single shallow block cannot shortcut). Used by
the learning tests and by ``benchmarks/loops_matter.py``."""

from __future__ import annotations

import numpy as np
import torch

from .batch import SequenceBatch
from .config import load_model_config
from .memory import filter_latents
from .models import build_world_model
from .update import make_optimizer, update
from .world_model import WorldModel

TINY = ("latent_dim=32", "token_dim=32", "heads=2", "slots=2", "mlp_ratio=2", "encoder_hidden=64")
"""Overrides of the small looped model that the learning tests and ``loops_matter`` fit."""


def rollout_env(env_id: str, episodes: int, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random-policy rollouts of a suite env in the time-major layout of this module: obs
    (T + 1, E, O), actions (T, E, A), rewards (T, E), hard (T, E). Episodes must not end
    before ``steps`` (suite envs without termination)."""
    from .envs import make_env

    env = make_env(env_id, max_episode_steps=steps + 1)
    env.action_space.seed(seed)
    obs, actions, rewards, hard = [], [], [], []
    for episode in range(episodes):
        o, _ = env.reset(seed=seed * 100_000 + episode)
        ep_obs, ep_act, ep_rew, ep_hard = [o], [], [], []
        for _ in range(steps):
            a = env.action_space.sample()
            o, r, terminated, _, info = env.step(a)
            assert not terminated, "rollout_env needs envs without termination"
            ep_obs.append(o)
            ep_act.append(a)
            ep_rew.append(r)
            ep_hard.append(info["hard"])
        obs.append(ep_obs)
        actions.append(ep_act)
        rewards.append(ep_rew)
        hard.append(ep_hard)
    swap = lambda x, dtype: np.asarray(x, dtype=dtype).swapaxes(0, 1)  # noqa: E731
    return {
        "obs": swap(obs, np.float32),
        "actions": swap(actions, np.float32),
        "rewards": swap(rewards, np.float32),
        "hard": swap(hard, bool),
    }


def hidden_gain_arrays(episodes: int, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A point x moved by the action through a gain that each episode draws and never shows:
    ``x' = x + 0.2 * g * a`` with g in {-1, -0.5, 0.5, 1}. One observation cannot tell g; the
    episode's first transition can. Time-major arrays as :func:`rollout_env` returns them."""
    rng = np.random.default_rng(seed)
    gain = rng.choice([-1.0, -0.5, 0.5, 1.0], size=episodes)  # (E,)
    actions = rng.uniform(-1, 1, size=(steps, episodes, 1))  # (T, E, 1)
    x = rng.uniform(-1, 1, size=episodes)
    obs = [x[:, None]]
    for t in range(steps):
        x = x + 0.2 * gain * actions[t, :, 0]
        obs.append(x[:, None])
    return _known_map_arrays(obs, actions)


def sample_sequences(data: dict[str, np.ndarray], batch: int, horizon: int, rng: np.random.Generator) -> SequenceBatch:
    """B random windows of H transitions from the time-major arrays."""
    T, E = data["actions"].shape[:2]
    start = rng.integers(0, T - horizon + 1, size=batch)
    ep = rng.integers(0, E, size=batch)
    t = start[None, :] + np.arange(horizon + 1)[:, None]  # (H + 1, B)
    obs = torch.from_numpy(data["obs"][t, ep])
    actions = torch.from_numpy(data["actions"][t[:-1], ep])
    rewards = torch.from_numpy(data["rewards"][t[:-1], ep])
    return SequenceBatch(obs, actions, rewards, torch.zeros_like(rewards, dtype=torch.bool))


def one_step_errors(model, data: dict[str, np.ndarray], **step_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Per-transition normalised one-step error and loops (:meth:`WorldModel.score`), flattened
    over (T, E); a model with memory is filtered along each episode (column)."""
    O, A = data["obs"].shape[-1], data["actions"].shape[-1]
    T, E = data["actions"].shape[:2]
    obs = torch.from_numpy(data["obs"][:-1].reshape(-1, O))  # (T * E, O)
    nxt = torch.from_numpy(data["obs"][1:].reshape(-1, O))
    act = torch.from_numpy(data["actions"].reshape(-1, A))  # (T * E, A)
    by_episode = lambda x: x.reshape(T, E, -1).transpose(0, 1).reshape(E * T, -1)  # noqa: E731
    z = filter_latents(model, by_episode(obs), by_episode(act), np.repeat(np.arange(E), T))  # (E * T, S)
    z = z.reshape(E, T, -1).transpose(0, 1).reshape(T * E, -1)  # back to time-major rows
    scores = model.score(obs, act, nxt, z=z, **step_kwargs)
    return scores.error, scores.loops


def _known_map_arrays(obs: list[np.ndarray], actions: np.ndarray) -> dict[str, np.ndarray]:
    """The time-major arrays of a known map: obs (T + 1, E, O), the first observation
    coordinate as reward, and no hard transitions."""
    stacked = np.stack(obs).astype(np.float32)  # (T + 1, E, O)
    hard = np.zeros(actions.shape[:2], dtype=bool)  # (T, E)
    return {"obs": stacked, "actions": actions.astype(np.float32), "rewards": stacked[1:, :, 0].copy(), "hard": hard}


def pendulum(episodes: int, steps: int, seed: int = 0, substeps: int = 10, dt: float = 0.05) -> dict[str, np.ndarray]:
    """A torque-driven pendulum integrated for ``substeps`` Euler steps per env step, so the
    map from one observation to the next is a deep composition of a nonlinear function.
    Observation (cos θ, sin θ, ω / 8); same array layout as :func:`rollout_env`."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-np.pi, np.pi, size=episodes)
    omega = rng.uniform(-4, 4, size=episodes)
    actions = rng.uniform(-1, 1, size=(steps, episodes, 1))

    def observe(th, om):
        return np.stack([np.cos(th), np.sin(th), om / 8.0], -1)

    obs = [observe(theta, omega)]
    for t in range(steps):
        for _ in range(substeps):
            omega = np.clip(omega + dt * (-10.0 * np.sin(theta) + 3.0 * actions[t, :, 0]), -8, 8)
            theta = theta + dt * omega
        obs.append(observe(theta, omega))
    return _known_map_arrays(obs, actions)


def standard_map(
    episodes: int, steps: int, seed: int = 0, iterations: int = 3, kick: float = 0.8
) -> dict[str, np.ndarray]:
    """``iterations`` rounds of the Chirikov standard map per env step, with the action added
    to the momentum kick. One step's map is a composition that a single shallow block cannot
    shortcut, so it tests that extra loops add usable depth. Observation (cos x, sin x,
    cos p, sin p); same array layout as :func:`rollout_env`."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-np.pi, np.pi, size=episodes)
    p = rng.uniform(-np.pi, np.pi, size=episodes)
    actions = rng.uniform(-1, 1, size=(steps, episodes, 1))

    def observe(x, p):
        return np.stack([np.cos(x), np.sin(x), np.cos(p), np.sin(p)], -1)

    obs = [observe(x, p)]
    for t in range(steps):
        for _ in range(iterations):
            p = p + kick * np.sin(x) + 0.3 * actions[t, :, 0]
            x = x + p
        obs.append(observe(x, p))
    return _known_map_arrays(obs, actions)


def fit_arrays(
    data: dict[str, np.ndarray],
    overrides,
    updates: int,
    seed: int = 0,
    batch: int = 128,
    horizon: int = 1,
    lr=3e-3,
    objects: tuple[tuple[int, ...], ...] = (),
) -> WorldModel:
    """A ``looped`` model with :data:`TINY` and ``overrides`` (and an object layout for
    ``tokenizer=objects``), fitted for ``updates`` steps on time-major arrays; returned in eval
    mode."""
    torch.manual_seed(seed)
    O, A = data["obs"].shape[-1], data["actions"].shape[-1]
    cfg = load_model_config(["looped"], [*TINY, *overrides]).resolve(obs_dim=O, action_dim=A, objects=objects)
    model = build_world_model(cfg)
    obs = torch.from_numpy(data["obs"])  # (T + 1, E, O)
    model.set_normalization(
        obs[:-1].reshape(-1, O), obs[1:].reshape(-1, O), torch.from_numpy(data["rewards"]).reshape(-1)
    )
    opt = make_optimizer(model, lr=lr)
    rng = np.random.default_rng(seed)
    for _ in range(updates):
        update(model, opt, sample_sequences(data, batch, horizon + cfg.sequence_burn_in, rng))
    return model.eval()

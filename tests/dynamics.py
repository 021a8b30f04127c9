"""Known dynamics for world-model tests: a thrust-driven ball that bounces off the walls of
the unit box. A bounce inside the step is the ``hard`` label."""

from __future__ import annotations

import numpy as np
import torch

from loopwm_rl.batch import SequenceBatch


def bouncing_ball(episodes: int, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Time-major arrays: obs (T + 1, E, 4), actions (T, E, 2), rewards (T, E), hard (T, E)."""
    rng = np.random.default_rng(seed)
    dt, gravity, thrust, restitution = 0.05, 2.0, 6.0, 0.8
    pos = rng.uniform(0.1, 0.9, size=(episodes, 2))
    vel = rng.uniform(-2.5, 2.5, size=(episodes, 2))
    obs = [np.concatenate([pos, vel], -1)]
    actions = rng.uniform(-1, 1, size=(steps, episodes, 2))
    hard = np.zeros((steps, episodes), dtype=bool)
    for t in range(steps):
        vel = vel + dt * (thrust * actions[t] + np.array([0.0, -gravity]))
        pos = pos + dt * vel
        low, high = pos < 0, pos > 1
        bounced = low | high
        pos = np.where(low, -pos, np.where(high, 2 - pos, pos))
        vel = np.where(bounced, -restitution * vel, vel)
        hard[t] = bounced.any(-1)
        obs.append(np.concatenate([pos, vel], -1))
    obs = np.stack(obs).astype(np.float32)
    rewards = -np.linalg.norm(obs[1:, :, :2] - 0.5, axis=-1).astype(np.float32)
    return {"obs": obs, "actions": actions.astype(np.float32), "rewards": rewards, "hard": hard}


def sample_sequences(
    data: dict[str, np.ndarray], batch: int, horizon: int, rng: np.random.Generator
) -> SequenceBatch:
    """B random windows of H transitions from the time-major arrays."""
    T, E = data["actions"].shape[:2]
    start = rng.integers(0, T - horizon + 1, size=batch)
    ep = rng.integers(0, E, size=batch)
    t = start[None, :] + np.arange(horizon + 1)[:, None]  # (H + 1, B)
    obs = torch.from_numpy(data["obs"][t, ep])
    actions = torch.from_numpy(data["actions"][t[:-1], ep])
    rewards = torch.from_numpy(data["rewards"][t[:-1], ep])
    return SequenceBatch(obs, actions, rewards, torch.zeros_like(rewards, dtype=torch.bool))


def one_step_errors(model, data: dict[str, np.ndarray], **step_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-transition normalised next-observation MSE and loops, flattened over (T, E)."""
    obs = torch.from_numpy(data["obs"][:-1].reshape(-1, 4))
    nxt = torch.from_numpy(data["obs"][1:].reshape(-1, 4))
    act = torch.from_numpy(data["actions"].reshape(-1, 2))
    with torch.no_grad():
        out = model.step(model.encode(obs), act, **step_kwargs)
        err = (model.normalize_delta(obs, out.obs) - model.normalize_delta(obs, nxt)).pow(2).mean(-1)
    return err, out.loops

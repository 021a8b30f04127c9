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
    O, A = data["obs"].shape[-1], data["actions"].shape[-1]
    obs = torch.from_numpy(data["obs"][:-1].reshape(-1, O))
    nxt = torch.from_numpy(data["obs"][1:].reshape(-1, O))
    act = torch.from_numpy(data["actions"].reshape(-1, A))
    with torch.no_grad():
        out = model.step(model.encode(obs), act, **step_kwargs)
        err = (model.normalize_delta(obs, out.obs) - model.normalize_delta(obs, nxt)).pow(2).mean(-1)
    return err, out.loops


def pendulum(
    episodes: int, steps: int, seed: int = 0, substeps: int = 10, dt: float = 0.05
) -> dict[str, np.ndarray]:
    """A torque-driven pendulum integrated for ``substeps`` Euler steps per env step, so the
    map from one observation to the next is a deep composition of a nonlinear function.
    Observation (cos θ, sin θ, ω / 8); same array layout as :func:`bouncing_ball`."""
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
    obs = np.stack(obs).astype(np.float32)
    rewards = obs[1:, :, 0].astype(np.float32)
    hard = np.zeros((steps, episodes), dtype=bool)
    return {"obs": obs, "actions": actions.astype(np.float32), "rewards": rewards, "hard": hard}


def standard_map(
    episodes: int, steps: int, seed: int = 0, iterations: int = 3, kick: float = 0.8
) -> dict[str, np.ndarray]:
    """``iterations`` rounds of the Chirikov standard map per env step, with the action added
    to the momentum kick. One step's map is a composition that a single shallow block cannot
    shortcut, so it tests that extra loops add usable depth. Observation (cos x, sin x,
    cos p, sin p); same array layout as :func:`bouncing_ball`."""
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
    obs = np.stack(obs).astype(np.float32)
    rewards = obs[1:, :, 0].astype(np.float32)
    hard = np.zeros((steps, episodes), dtype=bool)
    return {"obs": obs, "actions": actions.astype(np.float32), "rewards": rewards, "hard": hard}

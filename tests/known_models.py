"""Known dynamics written with the world-model verbs, for testing planners without learning."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from loopwm_rl.outputs import Rollout


class PendulumModel:
    """Gymnasium's Pendulum-v1 as a differentiable torch function, with actions in [-1, 1]
    (``make_env`` rescales the torque range [-2, 2] to it). z is the observation
    (cos θ, sin θ, θ̇); every step reports 1 loop."""

    g, m, length, dt, max_speed, max_torque = 10.0, 1.0, 1.0, 0.05, 8.0, 2.0

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    def _step(self, z: torch.Tensor, action: torch.Tensor):
        th = torch.atan2(z[:, 1], z[:, 0])
        thdot = z[:, 2]
        u = self.max_torque * action[:, 0].clamp(-1, 1)
        angle = torch.remainder(th + torch.pi, 2 * torch.pi) - torch.pi
        reward = -(angle**2 + 0.1 * thdot**2 + 0.001 * u**2)
        thdot = thdot + (3 * self.g / (2 * self.length) * torch.sin(th) + 3.0 / (self.m * self.length**2) * u) * self.dt
        thdot = thdot.clamp(-self.max_speed, self.max_speed)
        th = th + thdot * self.dt
        return torch.stack([torch.cos(th), torch.sin(th), thdot], -1), reward

    def step(self, z: torch.Tensor, action: torch.Tensor) -> SimpleNamespace:
        z_next, reward = self._step(z, action)
        return SimpleNamespace(z=z_next, reward=reward)

    def imagine(self, z0: torch.Tensor, actions: torch.Tensor, **_) -> Rollout:
        z, zs, rewards = z0, [], []
        for a in actions:
            z, r = self._step(z, a)
            zs.append(z)
            rewards.append(r)
        z_all, r_all = torch.stack(zs), torch.stack(rewards)  # (H, N, 3), (H, N)
        H, N = r_all.shape
        return Rollout(
            z=z_all,
            obs=z_all,
            reward=r_all,
            cont=torch.ones_like(r_all),
            loops=torch.ones(H, N, dtype=torch.long),
            residuals=torch.zeros(H, N, 1),
            delta=torch.zeros_like(z_all),
        )

"""A latent actor-critic (TD-MPC2 style): a Q-ensemble learned by TD in latent space with a
Polyak target, and a policy prior trained to maximise it."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def _mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inp, hidden),
        nn.LayerNorm(hidden),
        nn.Mish(),
        nn.Linear(hidden, hidden),
        nn.LayerNorm(hidden),
        nn.Mish(),
        nn.Linear(hidden, out),
    )


class ActorCritic(nn.Module):
    """``Q_i(z, a)`` for i < ``num_q`` and a tanh-Gaussian policy prior ``pi(z)``.

    Continuous actions in ``[-1, 1]^A`` (the factory rescales every Box env to it). For
    discrete actions, Q outputs one value per action and the prior is a softmax over them.

    Args:
        state_dim: size of the world model's latent z.
        action_dim: A (continuous) — or ``num_actions`` n with ``discrete=True``.
        hidden: width of the MLPs.
        tau: Polyak rate of the target Q.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        *,
        discrete: bool = False,
        hidden: int = 128,
        num_q: int = 2,
        tau: float = 0.01,
        lr: float = 3e-4,
    ) -> None:
        super().__init__()
        self.discrete, self.action_dim, self.tau = discrete, action_dim, tau
        q_in = state_dim if discrete else state_dim + action_dim
        q_out = action_dim if discrete else 1
        self.qs = nn.ModuleList(_mlp(q_in, hidden, q_out) for _ in range(num_q))
        self.pi = _mlp(state_dim, hidden, action_dim if discrete else 2 * action_dim)
        self.target_qs = copy.deepcopy(self.qs).requires_grad_(False)
        self.q_opt = torch.optim.Adam(self.qs.parameters(), lr=lr)
        self.pi_opt = torch.optim.Adam(self.pi.parameters(), lr=lr)

    # ------------------------------------------------------------------ acting

    def policy(self, z: torch.Tensor, *, sample: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions (N, A) in [-1, 1], or (N,) int64 when discrete."""
        out = self.pi(z)
        if self.discrete:
            if not sample:
                return out.argmax(-1)
            return torch.multinomial(out.softmax(-1), 1, generator=generator).squeeze(-1)
        mean, log_std = out.chunk(2, -1)
        if not sample:
            return torch.tanh(mean)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        return torch.tanh(mean + log_std.clamp(-5, 1).exp() * noise)

    def q(self, z: torch.Tensor, a: torch.Tensor, target: bool = False) -> torch.Tensor:
        """min over the ensemble, (N,)."""
        nets = self.target_qs if target else self.qs
        if self.discrete:
            return torch.stack([net(z).gather(-1, a.long()[:, None]).squeeze(-1) for net in nets]).min(0).values
        za = torch.cat([z, a], -1)
        return torch.stack([net(za).squeeze(-1) for net in nets]).min(0).values

    def value(self, z: torch.Tensor) -> torch.Tensor:
        """Terminal value ``Q(z, pi(z))`` used by the planner, (N,)."""
        with torch.no_grad():
            return self.q(z, self.policy(z, sample=False))

    # ------------------------------------------------------------------ learning

    @staticmethod
    def n_step_return(
        reward: torch.Tensor, cont: torch.Tensor, gamma: float, steps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``sum_{k<m} gamma^k C_k r_k`` and the bootstrap weight ``gamma^m C_m``, where
        ``C_k = prod_{j<k} cont_j`` (a reward still counts on the step that terminates).

        ``reward`` and ``cont`` are (M, N), or (N,) for one step; ``steps`` (N,) gives each
        column's m <= M (default M), the entries past it being ignored. Both results are (N,).
        """
        if reward.dim() == 1:
            reward, cont = reward[None], cont[None]
        M, N = reward.shape
        if steps is None:
            steps = torch.full((N,), M, dtype=torch.long, device=reward.device)
        valid = torch.arange(M, device=reward.device)[:, None] < steps[None]  # (M, N)
        alive = torch.cumprod(torch.cat([torch.ones_like(cont[:1]), cont.masked_fill(~valid, 1.0)]), 0)  # (M + 1, N)
        discount = gamma ** torch.arange(M + 1, dtype=reward.dtype, device=reward.device)[:, None]
        ret = (discount[:M] * alive[:M] * reward.masked_fill(~valid, 0.0)).sum(0)
        weight = (discount * alive).gather(0, steps[None]).squeeze(0)
        return ret, weight

    def update(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        cont: torch.Tensor,
        z_next: torch.Tensor,
        gamma: float,
        steps: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """One TD step of Q and one policy step on a batch of latent transitions.

        ``reward`` and ``cont`` are (N,) for one-step targets, or (M, N) for multi-step ones
        (:meth:`n_step_return`, ``steps`` (N,) the steps each row uses), with ``z_next`` then
        the latent ``steps`` on. Longer targets carry a reward back several steps per update
        instead of one, at the bias of the replayed actions behind the first.
        """
        z, z_next = z.detach(), z_next.detach()
        ret, weight = self.n_step_return(reward, cont, gamma, steps)
        with torch.no_grad():
            target = ret + weight * self.q(z_next, self.policy(z_next), target=True)
        if self.discrete:
            preds = [net(z).gather(-1, action.long()[:, None]).squeeze(-1) for net in self.qs]
        else:
            preds = [net(torch.cat([z, action], -1)).squeeze(-1) for net in self.qs]
        q_loss = sum(F.mse_loss(p, target) for p in preds)
        if not torch.isfinite(q_loss):  # skip the whole update: the weights stay as they were
            return {"train/q_loss": float(q_loss.detach()), "guard/skipped": 1.0, "guard/bad": "critic: train/q_loss"}
        self.q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.qs.parameters(), 10.0)
        self.q_opt.step()

        if self.discrete:
            probs = self.pi(z).softmax(-1)
            q_all = torch.stack([net(z) for net in self.qs]).min(0).values.detach()
            entropy = -(probs * probs.clamp_min(1e-8).log()).sum(-1)
            pi_loss = -((probs * q_all).sum(-1) + 1e-2 * entropy).mean()
        else:
            self.qs.requires_grad_(False)
            pi_loss = -self.q(z, self.policy(z)).mean()
            self.qs.requires_grad_(True)
        self.pi_opt.zero_grad(set_to_none=True)
        pi_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.pi.parameters(), 10.0)
        self.pi_opt.step()
        with torch.no_grad():
            for p, tp in zip(self.qs.parameters(), self.target_qs.parameters(), strict=True):
                tp.lerp_(p, self.tau)
        return {
            "train/q_loss": float(q_loss.detach()),
            "train/pi_loss": float(pi_loss.detach()),
            "train/q_mean": float(preds[0].detach().mean()),
        }

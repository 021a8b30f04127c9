"""A planning agent: ``act(obs)`` imagines candidate action sequences inside the world model
and executes the first action of the best."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
from gymnasium import spaces

from .config import PlannerConfig
from .critic import ActorCritic
from .objective import Dynamics, ImaginedReturn
from .trajectory import TrajectoryOptimizer


@dataclasses.dataclass
class PlanStats:
    """What one ``act`` call imagined, and where its world-model loops went: ``loops_spent``
    is ``loops_screen`` (multi-fidelity screening) + ``loops_full`` (full-depth scoring) +
    ``loops_prior`` (the policy prior's rollouts); ``loop_budget`` is 0 without a budget."""

    imagined_transitions: int
    loops_mean: float
    loops_p95: float
    latency_s: float
    plan_value: float
    loops_spent: int = 0
    loops_screen: int = 0
    loops_full: int = 0
    loops_prior: int = 0
    loop_budget: int = 0

    def as_metrics(self, prefix: str = "plan/") -> dict[str, float]:
        rate = self.imagined_transitions / max(self.latency_s, 1e-9)
        return {
            f"{prefix}imagined_transitions": float(self.imagined_transitions),
            f"{prefix}loops_mean": self.loops_mean,
            f"{prefix}loops_p95": self.loops_p95,
            f"{prefix}latency_ms": 1e3 * self.latency_s,
            f"{prefix}imagined_per_s": rate,
            f"{prefix}value": self.plan_value,
            f"{prefix}loops_spent": float(self.loops_spent),
            f"{prefix}loops_screen": float(self.loops_screen),
            f"{prefix}loops_prior": float(self.loops_prior),
        }


class PlanningAgent:
    """MPPI/CEM (categorical CEM for discrete actions) over a world model, replanning every step.

    Args:
        model: the world model (or any object with its ``encode``/``imagine`` verbs).
        action_space: the env's action space; ``Box`` (1-D) or ``Discrete``.
        cfg: planner settings.
        critic: optional :class:`ActorCritic` for the terminal value and prior samples.
        seed: seeds the planner's sampling, so a fixed seed gives fixed actions.

    Example::

        agent = PlanningAgent(model, env.action_space, PlannerConfig(horizon=5), seed=0)
        agent.reset()
        action, stats = agent.act(obs)
    """

    def __init__(
        self,
        model: Dynamics,
        action_space: spaces.Space,
        cfg: PlannerConfig | None = None,
        critic: ActorCritic | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.cfg = cfg or PlannerConfig()
        self.model, self.action_space, self.critic = model, action_space, critic
        self.device = torch.device(device)
        self.trajectory = TrajectoryOptimizer(self.cfg, action_space, self.device)
        self.objective = ImaginedReturn(
            model,
            self.cfg.gamma,
            critic.value if critic is not None else None,
            self.cfg.max_loops,
            screen_loops=self.cfg.screen_loops,
            screen_keep=self.cfg.screen_keep,
            keep_min=self.cfg.elites,
            halting=self.cfg.halting,
        )
        self._prior_loops = 0
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        # known models written with the verbs may have no config; then any 1-D obs is accepted
        self._obs_dim = getattr(getattr(model, "cfg", None), "obs_dim", None)
        self._z: torch.Tensor | None = None  # the real episode's latent so far
        self._action: torch.Tensor | None = None  # the last action taken, as the model takes it
        self._noise: torch.Tensor | None = None  # the ou exploration state (A,); None: draw afresh
        if self.trajectory.discrete and self.cfg.explore_noise != "white":
            raise ValueError(
                f"planner.explore_noise={self.cfg.explore_noise!r} needs a continuous (Box) action space; "
                f"{action_space} explores with explore_eps"
            )

    def reset(self) -> None:
        """Call at the start of every episode: forgets the warm-start plan and the episode's
        latent (the next ``act`` encodes its observation afresh)."""
        self.trajectory.reset()
        self._z = self._action = self._noise = None

    def _latent(self, obs_t: torch.Tensor) -> torch.Tensor:
        """The latent of the current observation (1, S): ``encode`` at an episode's first act,
        then ``observe`` of the previous action and this observation (a model with memory keeps
        what it has seen; models without ``observe`` are re-encoded every step)."""
        if self._z is None or not hasattr(self.model, "observe"):
            return self.model.encode(obs_t)
        return self.model.observe(self._z, self._action, obs_t)

    def _prior(self):
        if self.critic is None or self.cfg.prior_samples == 0:
            return None

        # under a loop budget the prior's rollouts run at one loop per step: a fixed cost,
        # reserved before the candidates' share is worked out (act)
        kwargs = {"max_loops": 1} if self.cfg.loop_budget else {}
        if self.cfg.halting is not None:
            kwargs["halting"] = self.cfg.halting

        def sample() -> torch.Tensor:
            z = self.objective.z0.expand(self.cfg.prior_samples, -1)
            # roll the prior through the model so each candidate is a coherent sequence
            actions = []
            for _ in range(self.cfg.horizon):
                a = self.critic.policy(z, generator=self.generator)
                actions.append(a)
                out = self.model.step(z, a, **kwargs)
                loops = getattr(out, "loops", None)  # a model may not count its loops
                self._prior_loops += int(loops.sum()) if loops is not None else 0
                z = out.z
            return torch.stack(actions)  # (H, P, A) or (H, P)

        return sample

    @torch.no_grad()
    def act(self, obs, *, eval: bool = False):
        """Plan from ``obs`` and return ``(action, PlanStats)``; the action lies in the space."""
        start = time.perf_counter()
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        if obs_t.dim() != 1 or (self._obs_dim is not None and obs_t.shape[0] != self._obs_dim):
            raise ValueError(f"observation has shape {tuple(obs_t.shape)}, expected ({self._obs_dim},)")
        self._z = self._latent(obs_t[None])
        cfg, calls, prior = self.cfg, self.trajectory.next_iterations(), self._prior()
        budget = None
        if cfg.loop_budget:
            budget = cfg.loop_budget - (calls * cfg.prior_samples * cfg.horizon if prior is not None else 0)
        self.objective.start(self._z, budget, calls, cfg.samples, cfg.horizon)
        self._prior_loops = 0
        sol = self.trajectory.plan(self.objective, self.generator, prior)
        action = self._select(sol, eval)
        self._action = self._model_action(action)
        loops = (
            torch.cat([x.flatten() for x in self.objective.loops]).float() if self.objective.loops else torch.zeros(1)
        )
        stats = PlanStats(
            imagined_transitions=int(loops.numel()),
            loops_mean=float(loops.mean()),
            loops_p95=float(torch.quantile(loops, 0.95)),
            latency_s=time.perf_counter() - start,
            plan_value=float(sol.values.max()),
            loops_spent=sum(self.objective.spent.values()) + self._prior_loops,
            loops_screen=self.objective.spent["screen"],
            loops_full=self.objective.spent["full"],
            loops_prior=self._prior_loops,
            loop_budget=cfg.loop_budget,
        )
        return action, stats

    @torch.no_grad()
    def act_prior(self, obs, *, eval: bool = False):
        """Act with the critic's policy prior alone (no planning): one forward pass."""
        if self.critic is None:
            raise ValueError("act_prior needs an ActorCritic; build the agent with critic=...")
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)[None]
        action = self.critic.policy(self.model.encode(obs_t), sample=not eval, generator=self.generator)[0]
        if self.trajectory.discrete:
            return int(action)
        low, high = self.trajectory.low, self.trajectory.high
        # the prior acts in [-1, 1]; map it onto the space's box
        return (low + (action.clamp(-1, 1) + 1) / 2 * (high - low)).cpu().numpy().astype(self.action_space.dtype)

    def _model_action(self, action) -> torch.Tensor:
        """The env action as the model takes it: (1,) int64 or (1, A) float32."""
        if self.trajectory.discrete:
            return torch.tensor([int(action)], device=self.device)
        return torch.as_tensor(np.asarray(action, np.float32), device=self.device)[None]

    def _select(self, sol, eval: bool):
        cfg, g = self.cfg, self.generator
        if self.trajectory.discrete:
            if not eval and torch.rand((), generator=g) < cfg.explore_eps:
                return int(torch.randint(self.trajectory.n, (), generator=g))
            if eval and cfg.eval_action == "best":
                return int(sol.elites[0, sol.values.argmax()])
            probs = sol.mean[0]
            return int(probs.argmax()) if eval else int(torch.multinomial(probs, 1, generator=g))
        if eval:
            a = sol.elites[0, sol.values.argmax()] if cfg.eval_action == "best" else sol.mean[0]
        else:
            k = int(torch.multinomial(sol.weights.nan_to_num(0.0) + 1e-12, 1, generator=g))
            a = sol.elites[0, k] + self._exploration()
        a = a.clamp(self.trajectory.low, self.trajectory.high)
        return a.cpu().numpy().astype(self.action_space.dtype)

    def _exploration(self) -> torch.Tensor:
        """Noise (A,) added to a training action, std ``explore_std``: fresh every call
        (``white``) or the next value of the episode's Ornstein-Uhlenbeck process (``ou``)."""
        cfg = self.cfg
        eps = cfg.explore_std * torch.randn(self.trajectory.low.shape, generator=self.generator)
        if cfg.explore_noise == "white":
            return eps
        if self._noise is None:
            self._noise = eps  # the process starts from its stationary distribution
        else:
            keep = 1.0 - cfg.explore_theta
            self._noise = keep * self._noise + (1.0 - keep**2) ** 0.5 * eps  # keeps std explore_std
        return self._noise

    def seed_action(self):
        """An action of the seed phase, before the world model is trained: uniform over the
        space (the space's own sampler), or with ``ou`` exploration the noise process around
        the box centre, so the seed data already has the noise's momentum."""
        if self.cfg.explore_noise == "white":
            return self.action_space.sample()
        low, high = self.trajectory.low, self.trajectory.high
        a = ((low + high) / 2 + self._exploration()).clamp(low, high)
        return a.cpu().numpy().astype(self.action_space.dtype)

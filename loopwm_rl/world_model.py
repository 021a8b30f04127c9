"""Looped and stacked latent world models behind one set of verbs.

Verbs (all that planners, losses and tools call):

- ``encode(obs) -> z``                           (B, O) -> (B, O + D [+ C]); starts an episode
- ``observe(z, action, obs) -> z``               a real step seen: the next latent, with memory
- ``step(z, action) -> StepOut``                 one imagined env step at adaptive depth
- ``imagine(z0, actions) -> Rollout``            actions (H, B, A) or (H, B); the one loop over time
- ``score(obs, action, next_obs) -> Scores``     real transitions judged: loops, error, residuals
- ``loss(batch) -> (loss, metrics)``             multi-step training loss

The latent z = [o_hat (O), features (latent_dim)] carries the model's normalised estimate of
the current observation beside learned features, so the next observation is predicted as a
delta on an estimate that is exact after ``encode`` (no reconstruction error is amplified by
the small scale of the delta). With ``memory: context`` z ends in a context c (C) that
``observe`` filters from the episode's real transitions (:mod:`loopwm_rl.memory`).

One env step: z and the action become S tokens (:mod:`loopwm_rl.tokenizers`: one state token,
or one token per object or dimension), a light prelude and a LayerNorm give the injected input
e, and the depth loop runs
``h <- Block_t(Ā h + B̄ e)`` (``= Ā h + B̄ e + R̄(h, e)``) from h = 0, re-injecting e every loop.
After every loop a coda pools the tokens into the next latent and linear heads decode the
next-observation delta (object tokens decode their own), the reward and the continuation, so
each loop's prediction is usable and a halting rule can stop any sample early. Halted samples leave the active set.

:mod:`loopwm_rl.models` holds the two subclasses: ``LoopedWorldModel`` uses one shared block
for every loop, ``StackedWorldModel`` L distinct blocks run once each. Everything else is here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .active_set import ActiveSet
from .blocks import StateInjection, TransformerBlock
from .config import ConfigError, HaltingConfig, WorldModelConfig
from .halting import (
    HaltingRule,
    LoopReadout,
    Schedule,
    ScheduledHalting,
    feature_dim,
    halting_features,
    make_halting,
    override_rule,
)
from .loss import sequence_loss
from .memory import ContextFilter
from .outputs import PerLoop, Rollout, Scores, StepOut
from .tokenizers import Tokenizer

__all__ = ["PerLoop", "Rollout", "Schedule", "Scores", "StepOut", "WorldModel"]


class WorldModel(nn.Module):
    """Shared encoders, tokens, coda, heads and depth loop; subclasses pick the block per loop."""

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        if not cfg.resolved:
            raise ConfigError(
                "the model config has no observation/action sizes; call cfg.resolve(obs_dim=..., "
                "action_dim=... or num_actions=...) or build it with build_world_model(cfg, env)"
            )
        self.cfg = cfg
        D, d, O = cfg.latent_dim, cfg.token_dim, cfg.obs_dim
        self.encoder = nn.Sequential(
            nn.Linear(O, cfg.encoder_hidden),
            nn.LayerNorm(cfg.encoder_hidden),
            nn.GELU(),
            nn.Linear(cfg.encoder_hidden, D),
            nn.LayerNorm(D),
        )
        self.tokenizer = Tokenizer(cfg)
        self.memory = ContextFilter(cfg) if cfg.memory != "none" else None
        self.loss_calls = 0  # training losses computed: deferred decoding's curriculum clock
        self.num_tokens = self.tokenizer.num_tokens
        self.prelude = nn.ModuleList(TransformerBlock(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.prelude_layers))
        self.prelude_norm = nn.LayerNorm(d)
        self.injection = StateInjection(d)
        self.coda = nn.Sequential(nn.LayerNorm(d), nn.Flatten(-2), nn.Linear(self.num_tokens * d, D), nn.LayerNorm(D))
        # per-loop scale and shift of the tokens before the readout (cfg.readout == "loop")
        self.loop_readout = nn.Parameter(torch.zeros(cfg.loop_cap, 2, d)) if cfg.readout == "loop" else None
        self.delta_head = self._head(D, O)
        self.reward_head = self._head(D, 1)
        self.cont_head = self._head(D, 1)
        if cfg.zero_delta_head:
            last = self.delta_head if isinstance(self.delta_head, nn.Linear) else self.delta_head[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.tokenizer.zero_delta()
        self.feature_dim = feature_dim(D, O)
        self.halting = make_halting(cfg.halting, self.feature_dim)
        self.register_buffer("obs_loc", torch.zeros(O))
        self.register_buffer("obs_scale", torch.ones(O))
        self.register_buffer("delta_scale", torch.ones(O))
        self.register_buffer("reward_loc", torch.zeros(()))
        self.register_buffer("reward_scale", torch.ones(()))

    def _head(self, D: int, out: int) -> nn.Module:
        if self.cfg.head_hidden <= 0:
            return nn.Linear(D, out)
        return nn.Sequential(nn.Linear(D, self.cfg.head_hidden), nn.GELU(), nn.Linear(self.cfg.head_hidden, out))

    # ------------------------------------------------------------------ subclass hooks

    def block_at(self, t: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The block applied at loop t (0-based): (n, S, d) -> (n, S, d)."""
        raise NotImplementedError("block_at(t) -> callable")

    def train_schedule(self, batch_size: int, generator: torch.Generator | None = None) -> Schedule:
        raise NotImplementedError("train_schedule(batch_size, generator) -> Schedule")

    def supervised(self, per_loop_valid: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        """(K, B) bool: which loops' predictions the world-model loss supervises."""
        raise NotImplementedError("supervised(valid, schedule) -> (K, B) bool")

    # ------------------------------------------------------------------ normalisation

    @torch.no_grad()
    def set_normalization(
        self, observations: torch.Tensor, next_observations: torch.Tensor, rewards: torch.Tensor
    ) -> None:
        """Set input/target scales from data: obs (N, O), next obs (N, O), rewards (N,)."""
        obs = torch.as_tensor(observations, dtype=torch.float32)
        nxt = torch.as_tensor(next_observations, dtype=torch.float32)
        rew = torch.as_tensor(rewards, dtype=torch.float32)
        self.obs_loc.copy_(obs.mean(0))
        self.obs_scale.copy_(obs.std(0).clamp_min(1e-3))
        self.delta_scale.copy_((nxt - obs).std(0).clamp_min(1e-3))
        self.reward_loc.copy_(rew.mean())
        self.reward_scale.copy_(rew.std().clamp_min(1e-3))

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_loc) / self.obs_scale

    def normalize_delta(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return (next_obs - obs) / self.delta_scale

    def prediction_error(self, predicted_obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """One-step error (B,): MSE of the next observation in units of the delta's scale, so
        that predicting "no change" scores about 1 on every dataset."""
        return ((predicted_obs - next_obs) / self.delta_scale).pow(2).mean(-1)

    def normalize_reward(self, reward: torch.Tensor) -> torch.Tensor:
        return (reward - self.reward_loc) / self.reward_scale

    # ------------------------------------------------------------------ checks

    def check_obs(self, obs: torch.Tensor) -> None:
        if obs.dim() != 2 or obs.shape[-1] != self.cfg.obs_dim:
            raise ValueError(f"observation has shape {tuple(obs.shape)}, expected (B, {self.cfg.obs_dim})")

    def check_latent(self, z: torch.Tensor) -> None:
        if z.dim() != 2 or z.shape[-1] != self.cfg.state_dim:
            raise ValueError(f"latent has shape {tuple(z.shape)}, expected (B, {self.cfg.state_dim})")

    def check_action(self, action: torch.Tensor, batch: int) -> None:
        if self.cfg.discrete:
            if action.dtype.is_floating_point or action.shape != (batch,):
                raise ValueError(
                    f"action has shape {tuple(action.shape)} and dtype {action.dtype}; this model was "
                    f"built for {self.cfg.num_actions} discrete actions: expected an integer tensor of "
                    f"shape ({batch},)"
                )
            if action.numel() and (action.min() < 0 or action.max() >= self.cfg.num_actions):
                raise ValueError(
                    f"discrete action out of range [0, {self.cfg.num_actions}): "
                    f"min {int(action.min())}, max {int(action.max())}"
                )
        elif not action.dtype.is_floating_point or action.shape != (batch, self.cfg.action_dim):
            raise ValueError(
                f"action has shape {tuple(action.shape)} and dtype {action.dtype}; this model was built "
                f"for continuous actions: expected a float tensor of shape ({batch}, {self.cfg.action_dim})"
            )

    # ------------------------------------------------------------------ verbs

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Observation (B, O) -> latent z (B, O + D [+ C]): [normalised obs, encoder features,
        and with memory an empty context]. The start of an episode."""
        self.check_obs(obs)
        obs_n = self.normalize_obs(obs)
        parts = [obs_n, self.encoder(obs_n)]
        if self.memory is not None:
            parts.append(obs_n.new_zeros(obs_n.shape[0], self.cfg.memory_dim))  # (B, C)
        return torch.cat(parts, -1)

    def observe(self, z: torch.Tensor, action: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """After a real step: the latent z (B, S) it started from, the action taken and the
        observation (B, O) that followed -> the next latent (B, S). Without memory this is
        ``encode(obs)``; with it, the context also takes in the observed transition."""
        self.check_latent(z)
        self.check_obs(obs)
        if obs.shape[0] != z.shape[0]:
            raise ValueError(f"observation batch {obs.shape[0]} differs from the latent's {z.shape[0]}")
        self.check_action(action, z.shape[0])
        fresh = self.encode(obs)  # (B, S), context empty
        if self.memory is None:
            return fresh
        O, C = self.cfg.obs_dim, self.cfg.memory_dim
        prev = z[:, :O]  # (B, O) normalised
        delta = (fresh[:, :O] - prev) * (self.obs_scale / self.delta_scale)  # (B, O) in delta scales
        c = self.memory(prev, action, delta, z[:, -C:])  # (B, C)
        return torch.cat([fresh[:, :-C], c], -1)

    def step(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        *,
        max_loops: int | None = None,
        halting: str | HaltingConfig | None = None,
        schedule: Schedule | None = None,
        keep_loops: bool = False,
        drop_halted: bool = True,
    ) -> StepOut:
        """One env step from latent z (B, O + D) under ``action`` at adaptive depth.

        Args:
            max_loops: cap for this call (test-time depth); defaults to the config's.
            halting: ``"fixed"`` or ``"convergence"`` to override the trained rule, or a
                :class:`HaltingConfig` (e.g. new thresholds for the trained rule).
            schedule: training depth per sample (see :meth:`train_schedule`).
            keep_loops: also return every loop's predictions (``StepOut.per_loop``).
            drop_halted: halted samples leave the active set (True) or are masked (False);
                both give the same outputs, only the cost differs.
        """
        B = z.shape[0]
        self.check_latent(z)
        self.check_action(action, B)
        if schedule is not None:
            rule: HaltingRule = ScheduledHalting(schedule)
            cap = rule.cap
        else:
            rule, cap = self._rule(halting), self._cap(max_loops)
        e = self._inject_input(z, action)  # (B, S, d)
        # training may start rows from a random state (cfg.loop_init_std); inference from 0
        h0_std = schedule.init_std if schedule is not None and schedule.init_std is not None else 0.0
        out, loops, residuals, per_loop = self._think(
            e, cap, rule, keep_loops=keep_loops, drop_halted=drop_halted, h0_std=h0_std
        )
        O = self.cfg.obs_dim
        obs_n = z[:, :O] + out["delta"] * (self.delta_scale / self.obs_scale)  # (B, O)
        context = z[:, O + self.cfg.latent_dim :]  # (B, C): held fixed while imagining
        return StepOut(
            z=torch.cat([obs_n, out["z"], context], -1),  # (B, O + D + C)
            obs=self.obs_loc + self.obs_scale * obs_n,  # (B, O)
            reward=self.reward_loc + self.reward_scale * out["reward"],
            cont=torch.sigmoid(out["cont_logit"]),
            loops=loops,
            residuals=residuals,
            delta=out["delta"],
            per_loop=per_loop,
        )

    def imagine(self, z0: torch.Tensor, actions: torch.Tensor, **step_kwargs) -> Rollout:
        """Roll the model forward from z0 (B, O + D) under actions (H, B, A) or (H, B)."""
        if actions.dim() < 2 or actions.shape[1] != z0.shape[0]:
            raise ValueError(f"actions have shape {tuple(actions.shape)}, expected time-major (H, {z0.shape[0]}, ...)")
        z, steps = z0, []
        for action in actions:
            out = self.step(z, action, **step_kwargs)
            steps.append(out)
            z = out.z
        return Rollout.stack(steps)

    @torch.no_grad()
    def score(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        next_obs: torch.Tensor,
        *,
        z: torch.Tensor | None = None,
        **step_kwargs,
    ) -> Scores:
        """Judge real transitions (B,): one step from ``z`` (default ``encode(obs)``; a model
        with memory should get the latent ``observe`` built along the episode), its loops, its
        one-step error against ``next_obs`` (:meth:`prediction_error`) and its residuals
        (B, K). ``step_kwargs`` go to :meth:`step` (``max_loops``, ``halting``)."""
        if z is None:
            z = self.encode(obs)
        elif z.shape[0] != obs.shape[0]:
            raise ValueError(f"z has {z.shape[0]} rows for {obs.shape[0]} observations")
        out = self.step(z, action, **step_kwargs)
        return Scores(
            loops=out.loops.cpu().numpy(),
            error=self.prediction_error(out.obs, next_obs).cpu().numpy(),
            residuals=out.residuals.cpu().numpy(),
        )

    def loss(self, batch, generator: torch.Generator | None = None):
        """Multi-step training loss on a :class:`~loopwm_rl.batch.SequenceBatch`."""
        return sequence_loss(self, batch, generator=generator)

    @contextmanager
    def evaluating(self) -> Iterator[WorldModel]:
        """Eval mode inside the ``with`` block; the mode the model had is back after it, an
        error included (training calls scoring and evaluation and must keep training)."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ introspection

    def retention(self) -> torch.Tensor:
        """Ā, the per-channel retention of the state injection, (d,)."""
        return self.injection.retention()

    def block_parameters(self) -> int:
        """Parameters in the blocks of the depth loop."""
        return sum(p.numel() for p in self.depth_blocks().parameters())

    def depth_blocks(self) -> nn.ModuleList:
        raise NotImplementedError("depth_blocks() -> nn.ModuleList")

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        blocks = self.block_parameters()
        return f"kind={self.cfg.kind}, params={n}, block_params={blocks}, cap={self.cfg.loop_cap}"

    @torch.no_grad()
    def path_gap(self, z: torch.Tensor, action: torch.Tensor, loops: int, h0_std: float = 1.0) -> torch.Tensor:
        """Path independence (B,): the relative distance between the predicted delta after
        ``loops`` loops from h0 = 0 and from a Gaussian h0 of std ``h0_std``. Near 0 means the
        loop forgets where it started, which is what lets extra test-time loops converge."""
        e = self._inject_input(z, action)
        fixed = self._rule("fixed")
        a, *_ = self._think(e, loops, fixed)
        b, *_ = self._think(e, loops, fixed, h0_std=h0_std)
        return (a["delta"] - b["delta"]).norm(dim=-1) / (a["delta"].norm(dim=-1) + 1e-6)

    # ------------------------------------------------------------------ internals

    def _cap(self, max_loops: int | None) -> int:
        if max_loops is None:
            return self.cfg.loop_cap
        if not isinstance(max_loops, int) or max_loops < 1:
            raise ValueError(f"max_loops={max_loops!r} must be an int >= 1")
        return max_loops

    def _rule(self, halting: str | HaltingConfig | None) -> HaltingRule:
        return override_rule(self.halting, self.cfg.halting, halting, self.feature_dim)

    def _inject_input(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The tokenizer's tokens through the prelude, LayerNorm and B̄: (B, S, d)."""
        tokens = self.tokenizer(z[:, : self.cfg.obs_dim + self.cfg.latent_dim], action)  # (B, S, d)
        if self.memory is not None:
            tokens = tokens + self.memory.condition(z[:, -self.cfg.memory_dim :])  # every token sees c
        for block in self.prelude:
            tokens = block(tokens)
        return self.injection.input_gain(self.prelude_norm(tokens))

    def _readout(self, h: torch.Tensor, t: int) -> dict[str, torch.Tensor]:
        """Predictions from loop t's tokens h (n, S, d)."""
        if self.loop_readout is not None:
            scale, shift = self.loop_readout[min(t, self.cfg.loop_cap) - 1]  # (d,) each
            h = h * (1 + scale) + shift
        z = self.coda(h)  # (n, D)
        return {
            "z": z,
            "delta": self.tokenizer.delta(h, self.delta_head(z)),  # (n, O)
            "reward": self.reward_head(z).squeeze(-1),
            "cont_logit": self.cont_head(z).squeeze(-1),
        }

    def _think(
        self,
        e: torch.Tensor,
        cap: int,
        rule: HaltingRule,
        *,
        keep_loops: bool = False,
        drop_halted: bool = True,
        h0_std: float | torch.Tensor = 0.0,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, PerLoop | None]:
        """The depth loop, written once for inference and training: from h0 (0, or Gaussian
        with std ``h0_std``, a float or one per row (B,)), apply a block to Ā h + B̄ e, read
        the predictions out, let the rule halt rows, retire them, repeat."""
        B = e.shape[0]
        active = ActiveSet(B, e.device, drop=drop_halted)
        if torch.is_tensor(h0_std):
            h0_std = h0_std.to(e.dtype)[:, None, None]  # (B, 1, 1)
        random_start = torch.is_tensor(h0_std) or h0_std > 0
        h = torch.randn_like(e) * h0_std if random_start else torch.zeros_like(e)  # (n, S, d): rows still computed
        prev_delta = e.new_zeros(B, self.cfg.obs_dim)  # (n, O)
        state = rule.start(B, e[:, 0, 0])
        loops = torch.full((B,), cap, dtype=torch.long, device=e.device)  # (B,)
        residuals = torch.full((B, cap), math.nan, device=e.device)  # (B, K)
        kept: list[tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]] = []
        for t in range(1, cap + 1):
            h = rule.cut_gradient(t, active.rows, h)
            h_new = self.block_at(t - 1)(self.injection(h, e[active.rows]))  # (n, S, d)
            residuals[active.live, t - 1] = _relative_change(h_new, h)[active.running]
            if not (keep_loops or rule.needs_readout(t, cap)):
                h = h_new  # nothing can halt before the cap: skip the readout
                continue
            fields = self._readout(h_new, t)  # z (n, D), delta (n, O), reward (n,), cont_logit (n,)
            change = fields["delta"] - prev_delta  # (n, O)
            needs_features = rule.trainable or keep_loops
            features = halting_features(fields["z"], change, t, self.cfg.loop_cap) if needs_features else None
            halt, emitted = rule.decide(t, cap, LoopReadout(**fields, change=change, features=features), state)
            halt = halt | (t >= cap)  # (n,)
            loops[active.emit(halt, emitted)] = t
            if keep_loops:
                kept.append((active.live, {**fields, "features": features}, active.running))
            (h, prev_delta), state = active.advance(halt, h_new, fields["delta"], state=state)
            if not active.any():
                break
        per_loop = PerLoop.scatter(kept, B) if keep_loops else None
        return active.outputs, loops, residuals, per_loop


def _relative_change(h_new: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """|h_new - h| / |h_new| per row (n,): the convergence curve the dashboards draw."""
    with torch.no_grad():
        return (h_new - h).flatten(1).norm(dim=-1) / (h_new.flatten(1).norm(dim=-1) + 1e-6)

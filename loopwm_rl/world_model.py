"""Looped and stacked latent world models behind one set of verbs.

Verbs (all that planners, losses and tools call):

- ``encode(obs) -> z``                           (B, O) -> (B, D)
- ``step(z, action) -> StepOut``                 one env step at adaptive depth
- ``imagine(z0, actions) -> Rollout``            actions (H, B, A) or (H, B); the one loop over time
- ``loss(batch) -> (loss, metrics)``             multi-step training loss

The latent z = [o_hat (O), features (latent_dim)] carries the model's normalised estimate of
the current observation beside learned features, so the next observation is predicted as a
delta on an estimate that is exact after ``encode`` (no reconstruction error is amplified by
the small scale of the delta). One env step: z and the action become S = slots + 2 tokens,
a light prelude and a LayerNorm give the injected input e, and the depth loop runs
``h <- Block_t(Ā h + B̄ e)`` (``= Ā h + B̄ e + R̄(h, e)``) from h = 0, re-injecting e every loop.
After every loop a coda pools the tokens into the next latent and linear heads decode the
next-observation delta, the reward and the continuation, so each loop's prediction is usable
and a halting rule can stop any sample early. Halted samples leave the active set.

``LoopedWorldModel`` uses one shared block for every loop; ``StackedWorldModel`` uses L
distinct blocks run once each. Everything else is shared code.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch
from torch import nn

from .blocks import StateInjection, TransformerBlock
from .config import ConfigError, HaltingConfig, WorldModelConfig
from .halting import EMITTED, FixedHalting, HaltingRule, LoopReadout, make_halting


@dataclasses.dataclass
class PerLoop:
    """Every loop's (normalised) predictions, kept for per-loop supervision. Leading (K, B)."""

    z: torch.Tensor  # (K, B, D) next latent features (without the observation estimate)
    delta: torch.Tensor  # (K, B, O)
    reward: torch.Tensor  # (K, B)
    cont_logit: torch.Tensor  # (K, B)
    features: torch.Tensor  # (K, B, F) detached
    valid: torch.Tensor  # (K, B) bool: the sample ran this loop


@dataclasses.dataclass
class StepOut:
    """The result of one env step for a batch of B samples."""

    z: torch.Tensor  # (B, O + D) next latent
    obs: torch.Tensor  # (B, O) predicted next observation
    reward: torch.Tensor  # (B,)
    cont: torch.Tensor  # (B,) probability that the episode continues
    loops: torch.Tensor  # (B,) int64, loops this step used
    residuals: torch.Tensor  # (B, K) relative latent change per loop, NaN after halting
    delta: torch.Tensor  # (B, O) normalised next-observation delta
    per_loop: PerLoop | None = None


@dataclasses.dataclass
class Rollout:
    """StepOuts stacked over time: every tensor gains a leading H."""

    z: torch.Tensor  # (H, B, O + D)
    obs: torch.Tensor  # (H, B, O)
    reward: torch.Tensor  # (H, B)
    cont: torch.Tensor  # (H, B)
    loops: torch.Tensor  # (H, B)
    residuals: torch.Tensor  # (H, B, K)
    delta: torch.Tensor  # (H, B, O)
    per_loop: list[PerLoop] | None = None

    @classmethod
    def stack(cls, steps: list[StepOut]) -> Rollout:
        fields = [f.name for f in dataclasses.fields(StepOut) if f.name != "per_loop"]
        stacked = {name: torch.stack([getattr(s, name) for s in steps]) for name in fields}
        per_loop = [s.per_loop for s in steps] if steps[0].per_loop is not None else None
        return cls(**stacked, per_loop=per_loop)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Training depth per sample: run ``stop_at`` loops, cut gradients entering loop
    ``detach_at + 1`` (truncated backprop through the last loops)."""

    stop_at: torch.Tensor  # (B,) int64
    detach_at: torch.Tensor  # (B,) int64


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
        self.num_tokens = cfg.slots + 2
        self.encoder = nn.Sequential(
            nn.Linear(O, cfg.encoder_hidden),
            nn.LayerNorm(cfg.encoder_hidden),
            nn.GELU(),
            nn.Linear(cfg.encoder_hidden, D),
            nn.LayerNorm(D),
        )
        if cfg.discrete:
            self.action_embed: nn.Module = nn.Embedding(cfg.num_actions, d)
        else:
            self.action_embed = nn.Linear(cfg.action_dim, d)
        self.state_token = nn.Linear(cfg.state_dim, d)
        self.slot_tokens = nn.Parameter(torch.randn(cfg.slots, d) * 0.02)
        self.pos = nn.Parameter(torch.randn(self.num_tokens, d) * 0.02)
        self.prelude = nn.ModuleList(TransformerBlock(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.prelude_layers))
        self.prelude_norm = nn.LayerNorm(d)
        self.injection = StateInjection(d)
        self.coda = nn.Sequential(nn.LayerNorm(d), nn.Flatten(-2), nn.Linear(self.num_tokens * d, D), nn.LayerNorm(D))
        self.delta_head = self._head(D, O)
        self.reward_head = self._head(D, 1)
        self.cont_head = self._head(D, 1)
        self.feature_dim = D + O + 1
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

    def block_at(self, t: int) -> nn.Module:
        """The block applied at loop t (0-based)."""
        raise NotImplementedError("block_at(t) -> nn.Module")

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
        """Observation (B, O) -> latent z (B, O + D): [normalised obs, encoder features]."""
        self.check_obs(obs)
        obs_n = self.normalize_obs(obs)
        return torch.cat([obs_n, self.encoder(obs_n)], -1)

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
        if z.dim() != 2 or z.shape[-1] != self.cfg.state_dim:
            raise ValueError(f"latent has shape {tuple(z.shape)}, expected (B, {self.cfg.state_dim})")
        self.check_action(action, B)
        cap = self._cap(max_loops)
        rule = self._rule(halting)
        e = self._inject_input(z, action)  # (B, S, d)
        out, loops, residuals, per_loop = self._think(
            e, cap, rule, schedule=schedule, keep_loops=keep_loops, drop_halted=drop_halted
        )
        O = self.cfg.obs_dim
        obs_n = z[:, :O] + out["delta"] * (self.delta_scale / self.obs_scale)  # (B, O)
        return StepOut(
            z=torch.cat([obs_n, out["z"]], -1),  # (B, O + D)
            obs=self.obs_loc + self.obs_scale * obs_n,
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

    def loss(self, batch, generator: torch.Generator | None = None):
        """Multi-step training loss on a :class:`~loopwm_rl.batch.SequenceBatch`."""
        from .objective import sequence_loss

        return sequence_loss(self, batch, generator=generator)

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

    # ------------------------------------------------------------------ internals

    def _cap(self, max_loops: int | None) -> int:
        if max_loops is None:
            return self.cfg.loop_cap
        if not isinstance(max_loops, int) or max_loops < 1:
            raise ValueError(f"max_loops={max_loops!r} must be an int >= 1")
        return max_loops

    def _rule(self, halting: str | HaltingConfig | None) -> HaltingRule:
        """The configured rule, or an override: a rule name without trained parameters
        (``fixed``, ``convergence``), or a HaltingConfig (new thresholds for the trained rule)."""
        if halting is None or halting == self.halting.name:
            return self.halting
        if isinstance(halting, HaltingConfig):
            if halting.rule == self.halting.name:
                rule = copy.copy(self.halting)  # shares the trained head, not the thresholds
                rule.cfg = halting
                return rule
            if halting.rule in ("fixed", "convergence"):
                return make_halting(halting, self.feature_dim)
            halting = halting.rule
        if halting not in ("fixed", "convergence"):
            raise ValueError(
                f"halting={halting!r} cannot override the trained rule {self.halting.name!r}; "
                "expected 'fixed' or 'convergence' (rules without trained parameters)"
            )
        return make_halting(dataclasses.replace(self.cfg.halting, rule=halting), self.feature_dim)

    def _inject_input(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Tokens [state, action, slots...] through the prelude, LayerNorm and B̄: (B, S, d)."""
        B = z.shape[0]
        tokens = (
            torch.cat(
                [
                    self.state_token(z)[:, None],  # (B, 1, d)
                    self.action_embed(action)[:, None],  # (B, 1, d)
                    self.slot_tokens.expand(B, -1, -1),  # (B, M, d)
                ],
                dim=1,
            )
            + self.pos
        )  # (B, S, d)
        for block in self.prelude:
            tokens = block(tokens)
        return self.injection.input_gain(self.prelude_norm(tokens))

    def _readout(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.coda(h)  # (n, D)
        return {
            "z": z,
            "delta": self.delta_head(z),
            "reward": self.reward_head(z).squeeze(-1),
            "cont_logit": self.cont_head(z).squeeze(-1),
        }

    def _think(
        self,
        e: torch.Tensor,
        cap: int,
        rule: HaltingRule,
        *,
        schedule: Schedule | None = None,
        keep_loops: bool = False,
        drop_halted: bool = True,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, PerLoop | None]:
        """The depth loop, written once for inference and training."""
        B = e.shape[0]
        if schedule is not None:
            rule = FixedHalting(HaltingConfig())
            cap = int(schedule.stop_at.max())
        idx = torch.arange(B, device=e.device)  # rows computed this loop
        running = torch.ones(B, dtype=torch.bool, device=e.device)  # masked mode only
        h = torch.zeros_like(e)
        prev_delta = e.new_zeros(B, self.cfg.obs_dim)
        state = rule.start(B, e[:, 0, 0])
        final = {k: None for k in EMITTED}
        loops = torch.full((B,), cap, dtype=torch.long, device=e.device)
        residuals = torch.full((B, cap), math.nan, device=e.device)
        kept: list[tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]] = []
        lazy = isinstance(rule, FixedHalting) and schedule is None and not keep_loops
        for t in range(1, cap + 1):
            if schedule is not None:
                cut = (schedule.detach_at[idx] == t - 1)[:, None, None]
                h = torch.where(cut, h.detach(), h)
            h_new = self.block_at(t - 1)(self.injection(h, e[idx]))  # (n, S, d)
            with torch.no_grad():
                residual = (h_new - h).flatten(1).norm(dim=-1) / (h_new.flatten(1).norm(dim=-1) + 1e-6)
            if lazy and t < cap:  # nothing can halt before the cap: skip the per-loop readout
                residuals[:, t - 1] = residual
                h = h_new
                continue
            fields = self._readout(h_new)
            change = fields["delta"] - prev_delta
            if rule.trainable or keep_loops:
                features = torch.cat(
                    [fields["z"], change, torch.full_like(change[:, :1], t / self.cfg.max_loops)], -1
                ).detach()
            else:
                features = change[:, :0]
            readout = LoopReadout(**fields, change=change, features=features)
            halt, emitted = rule.decide(t, cap, readout, state)
            halt = halt | (t >= cap)
            if schedule is not None:
                halt = halt | (schedule.stop_at[idx] <= t)
            newly = halt & running
            rows = idx[newly]
            for key in EMITTED:
                if final[key] is None:
                    final[key] = emitted[key].new_zeros(B, *emitted[key].shape[1:])
                final[key] = final[key].index_copy(0, rows, emitted[key][newly])
            loops[rows] = t
            residuals[idx[running], t - 1] = residual[running]
            if keep_loops:
                kept.append((idx[running], {**fields, "features": features}, running))
            if drop_halted:
                keep = ~halt
                idx, h, prev_delta = idx[keep], h_new[keep], fields["delta"][keep]
                state = {k: v[keep] for k, v in state.items()}
                running = running[keep]
            else:
                running = running & ~halt
                h, prev_delta = h_new, fields["delta"]
            if not bool(running.any()):
                break
        per_loop = self._assemble(kept, B) if keep_loops else None
        return final, loops, residuals, per_loop

    @staticmethod
    def _assemble(kept, B: int) -> PerLoop:
        """Scatter each loop's rows back into dense (K, B, ...) tensors."""
        cols: dict[str, list[torch.Tensor]] = {k: [] for k in (*EMITTED, "features")}
        valid = []
        for rows, fields, running in kept:
            for key in cols:
                value = fields[key][running]
                cols[key].append(value.new_zeros(B, *value.shape[1:]).index_copy(0, rows, value))
            mask = torch.zeros(B, dtype=torch.bool, device=rows.device)
            mask[rows] = True
            valid.append(mask)
        return PerLoop(**{k: torch.stack(v) for k, v in cols.items()}, valid=torch.stack(valid))


class LoopedWorldModel(WorldModel):
    """LoopWM: ONE shared transformer block applied up to ``max_loops`` times per env step.

    Its parameter count does not depend on ``max_loops``. Training runs each sequence to
    ``max_loops`` (``train_loops: max``) or to a loop count drawn from Poisson(``mu_rec``)
    (clamped to [1, max_loops]), backpropagates through the last ``mu_bwd`` loops and
    supervises every one of them.
    """

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__(cfg)
        self.block = TransformerBlock(cfg.token_dim, cfg.heads, cfg.mlp_ratio)
        self._blocks = nn.ModuleList([self.block])

    def block_at(self, t: int) -> nn.Module:
        return self.block

    def depth_blocks(self) -> nn.ModuleList:
        return self._blocks

    def train_schedule(self, batch_size, generator=None):
        if self.cfg.train_loops == "max":
            stop = torch.full((batch_size,), self.cfg.max_loops, dtype=torch.long)
        else:
            rate = torch.full((batch_size,), float(self.cfg.mu_rec))
            stop = torch.poisson(rate, generator=generator).long().clamp(1, self.cfg.max_loops)
        detach = (stop - self.cfg.mu_bwd).clamp_min(0)
        device = self.pos.device
        return Schedule(stop_at=stop.to(device), detach_at=detach.to(device))

    def supervised(self, per_loop_valid, schedule):
        K = per_loop_valid.shape[0]
        loop = torch.arange(1, K + 1, device=per_loop_valid.device)[:, None]  # (K, 1)
        return per_loop_valid & (loop > schedule.detach_at[None, :])


class StackedWorldModel(WorldModel):
    """The same model with ``blocks`` distinct transformer blocks, each run once.

    A parameter-matched baseline is ``blocks: 1`` (one block, one pass); a compute-matched one
    sets ``blocks`` to the looped model's mean loops. Only the ``fixed`` halting rule applies,
    and only the last block's prediction is supervised, as in an ordinary deep network.
    """

    def __init__(self, cfg: WorldModelConfig) -> None:
        if cfg.halting.rule != "fixed":
            raise ConfigError(
                f"halting.rule={cfg.halting.rule!r}: the stacked model runs all {cfg.blocks} blocks; expected 'fixed'"
            )
        super().__init__(cfg)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.token_dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.blocks)
        )

    def block_at(self, t: int) -> nn.Module:
        return self.blocks[t]

    def depth_blocks(self) -> nn.ModuleList:
        return self.blocks

    def _cap(self, max_loops):
        cap = super()._cap(max_loops)
        if cap > self.cfg.blocks:
            raise ValueError(f"max_loops={cap} exceeds the stacked model's {self.cfg.blocks} blocks")
        return cap

    def train_schedule(self, batch_size, generator=None):
        device = self.pos.device
        stop = torch.full((batch_size,), self.cfg.blocks, dtype=torch.long, device=device)
        return Schedule(stop_at=stop, detach_at=torch.zeros_like(stop))

    def supervised(self, per_loop_valid, schedule):
        K = per_loop_valid.shape[0]
        loop = torch.arange(1, K + 1, device=per_loop_valid.device)[:, None]
        return per_loop_valid & (loop == schedule.stop_at[None, :])


def build_world_model(cfg: WorldModelConfig) -> WorldModel:
    """Build the model ``cfg.kind`` names from a resolved config."""
    cls = {"looped": LoopedWorldModel, "stacked": StackedWorldModel}[cfg.kind]
    return cls(cfg)

"""The two world models behind the verbs of :class:`~loopwm_rl.world_model.WorldModel`: looped
(one weight-tied block applied up to ``max_loops`` times) and stacked (L distinct blocks, each
run once). They differ only in which block runs at loop t, how training depth is drawn and which
loops the loss supervises."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .blocks import TransformerBlock
from .config import ConfigError, WorldModelConfig
from .halting import Schedule
from .world_model import WorldModel


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
        # per-loop adaLN of the shared block (cfg.loop_conditioning); zero: the plain block
        conditioned = cfg.loop_conditioning == "adaln"
        self.loop_modulation = nn.Parameter(torch.zeros(cfg.max_loops, 4, cfg.token_dim)) if conditioned else None

    def block_at(self, t: int) -> Callable[[torch.Tensor], torch.Tensor]:
        if self.loop_modulation is None:
            return self.block
        modulation = self.loop_modulation[min(t, self.cfg.max_loops - 1)]  # (4, d): past the cap, the last loop's
        return lambda x: self.block(x, modulation)

    def depth_blocks(self) -> nn.ModuleList:
        return self._blocks

    def train_schedule(self, batch_size, generator=None):
        if self.cfg.train_loops == "max":
            stop = torch.full((batch_size,), self.cfg.max_loops, dtype=torch.long)
        else:
            rate = torch.full((batch_size,), float(self.cfg.mu_rec))
            stop = torch.poisson(rate, generator=generator).long().clamp(1, self.cfg.max_loops)
        detach = (stop - self.cfg.mu_bwd).clamp_min(0)
        device = self.obs_loc.device
        init_std = None
        if self.cfg.loop_init_std > 0:  # a share of the rows starts from a random state
            chosen = torch.rand(batch_size, generator=generator) < self.cfg.loop_init_share
            init_std = (chosen.float() * self.cfg.loop_init_std).to(device)
        local = self.cfg.loop_gradient == "local"
        return Schedule(stop_at=stop.to(device), detach_at=detach.to(device), init_std=init_std, local=local)

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
        device = self.obs_loc.device
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

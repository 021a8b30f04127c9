"""How one env step enters the depth loop as tokens, and how per-token outputs leave it.

Three tokenizers (``model.tokenizer``):

- ``state``: the whole latent z as one token beside the action token and learned slots.
- ``objects``: one token per object, from the observation indices each object owns
  (``model.objects``, declared by suite envs as their ``objects`` attribute), plus one token
  for the latent's learned features. Each object token predicts its own next-state delta, so
  attention over objects is one round of interaction per loop.
- ``dims``: ``objects`` with every observation dimension its own object (FT-Transformer
  style): works for any vector observation.
- ``auto``: ``objects`` when the config holds an object layout, else ``state``.

Object tokens share one value projection and one delta head (objects of one kind obey the same
physics, as in Interaction Networks and GNS); a learned per-object embedding tells them apart.
Objects of different sizes are zero-padded to the largest.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ConfigError, WorldModelConfig


def object_groups(cfg: WorldModelConfig) -> tuple[tuple[int, ...], ...]:
    """The observation indices of each token's object, validated against ``obs_dim``."""
    if cfg.tokenizer == "dims":
        return tuple((i,) for i in range(cfg.obs_dim))
    if cfg.tokenizer == "state" or (cfg.tokenizer == "auto" and not cfg.objects):
        return ()
    if not cfg.objects:
        raise ConfigError(
            "model.tokenizer='objects' needs the object layout model.objects (observation indices per object); "
            "suite envs declare it and train/fit fill it in, other envs can use model.tokenizer=dims"
        )
    flat = [i for group in cfg.objects for i in group]
    if any(not group for group in cfg.objects):
        raise ConfigError(f"model.objects={cfg.objects}: every object needs at least one observation index")
    if any(not 0 <= i < cfg.obs_dim for i in flat):
        raise ConfigError(f"model.objects={cfg.objects} names indices outside the observation's {cfg.obs_dim} dims")
    if len(set(flat)) != len(flat):
        raise ConfigError(f"model.objects={cfg.objects}: an observation index belongs to two objects")
    return cfg.objects


class Tokenizer(nn.Module):
    """Tokens in (:meth:`forward`) and the next-state delta out (:meth:`delta`)."""

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        d, O = cfg.token_dim, cfg.obs_dim
        self.obs_dim = O
        groups = object_groups(cfg)
        self.num_objects = len(groups)
        if cfg.discrete:
            self.action_embed: nn.Module = nn.Embedding(cfg.num_actions, d)
        else:
            self.action_embed = nn.Linear(cfg.action_dim, d)
        self.slot_tokens = nn.Parameter(torch.randn(cfg.slots, d) * 0.02)
        if groups:
            width = max(len(g) for g in groups)
            # index O points at an appended zero column: the padding of smaller objects
            index = torch.full((len(groups), width), O, dtype=torch.long)
            for j, group in enumerate(groups):
                index[j, : len(group)] = torch.tensor(group)
            self.register_buffer("index", index)  # (N, w)
            self.register_buffer("covered", index[index < O])  # (n_covered,) in token order
            self.register_buffer("real", (index < O).flatten())  # (N * w,)
            self.object_value = nn.Linear(width, d)
            self.object_embed = nn.Parameter(torch.randn(len(groups), d) * 0.02)
            self.feature_token = nn.Linear(cfg.latent_dim, d)
            self.object_delta = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, width))
        else:
            self.state_token = nn.Linear(cfg.obs_dim + cfg.latent_dim, d)
        # objects, then the features (or whole-state) token, the action token and the slots
        self.num_tokens = self.num_objects + 2 + cfg.slots
        self.pos = nn.Parameter(torch.randn(self.num_tokens, d) * 0.02)

    def forward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Latent z (B, O + D) and action -> tokens (B, S, d), S = objects + 1 + 1 + slots."""
        B = z.shape[0]
        tail = [self.action_embed(action)[:, None], self.slot_tokens.expand(B, -1, -1)]  # (B, 1 + M, d)
        if not self.num_objects:
            head = [self.state_token(z)[:, None]]  # (B, 1, d)
        else:
            padded = torch.cat([z[:, : self.obs_dim], z.new_zeros(B, 1)], -1)  # (B, O + 1)
            values = padded[:, self.index]  # (B, N, w)
            objects = self.object_value(values) + self.object_embed  # (B, N, d)
            head = [objects, self.feature_token(z[:, self.obs_dim :])[:, None]]
        return torch.cat([*head, *tail], dim=1) + self.pos

    def delta(self, h: torch.Tensor, pooled_delta: torch.Tensor) -> torch.Tensor:
        """The normalised next-state delta (n, O): object tokens' own predictions where they
        own the dimension, the pooled head's elsewhere."""
        if not self.num_objects:
            return pooled_delta
        own = self.object_delta(h[:, : self.num_objects]).flatten(1)[:, self.real]  # (n, n_covered)
        return pooled_delta.index_copy(1, self.covered, own)

    def zero_delta(self) -> None:
        """Start at "no change": zero the last layer of the per-object delta head."""
        if self.num_objects:
            nn.init.zeros_(self.object_delta[-1].weight)
            nn.init.zeros_(self.object_delta[-1].bias)

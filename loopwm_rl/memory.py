"""What a world model remembers of an episode: a recurrent context filtered from real transitions.

One observation does not show everything that drives the next one: a hidden zone's gravity,
an unknown mass, a velocity the sensor omits. With ``model.memory: context`` the latent z
carries, after the observation estimate and the encoder's features, a context c (C dims) that
``WorldModel.observe`` updates with every real transition, like the context encoders of
context-aware dynamics models:

    c_t = GRU([ô_{t-1}, a_{t-1}, Δ_t], c_{t-1}),   Δ_t = (o_t - ô_{t-1}) / delta_scale

``encode`` starts an episode with c = 0; ``step`` holds c fixed while imagining (an episode's
hidden parameters do not change inside a plan's horizon), and ``condition(c)`` is added to every
token of the depth loop, so the looped block can use what the context has inferred.

:func:`filter_latents` runs ``encode``/``observe`` along logged transitions, so that a score or a
calibration of a model with memory sees what the model would have seen in that episode.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import WorldModelConfig


class ContextFilter(nn.Module):
    """The GRU context of ``memory: context``: transitions in (:meth:`forward`), token
    conditioning out (:meth:`condition`)."""

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        O, C = cfg.obs_dim, cfg.context_dim
        self.num_actions = cfg.num_actions
        width = 2 * O + (cfg.num_actions or cfg.action_dim)
        self.inp = nn.Sequential(nn.Linear(width, 2 * C), nn.LayerNorm(2 * C), nn.GELU())
        self.cell = nn.GRUCell(2 * C, C)
        self.to_tokens = nn.Linear(C, cfg.token_dim)
        # zero: a fresh model with memory predicts exactly as one without; c still trains the
        # projection from the first update, and through it the GRU
        nn.init.zeros_(self.to_tokens.weight)
        nn.init.zeros_(self.to_tokens.bias)

    def forward(self, prev: torch.Tensor, action: torch.Tensor, delta: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """prev (B, O) normalised observation before the step, action (B, A) or (B,), delta
        (B, O) the normalised observed change, c (B, C) -> the next context (B, C)."""
        if self.num_actions:
            action = F.one_hot(action, self.num_actions).to(prev.dtype)  # (B, A)
        # a teleport's delta can be hundreds of delta-scales: keep the GRU's input in range
        x = torch.cat([prev, action, delta.clamp(-10.0, 10.0)], -1)  # (B, 2O + A)
        return self.cell(self.inp(x), c)

    def condition(self, c: torch.Tensor) -> torch.Tensor:
        """Context (B, C) -> an offset (B, 1, d) added to every token."""
        return self.to_tokens(c)[:, None]


def filter_prefix(
    model, obs: torch.Tensor, actions: torch.Tensor, steps: int, restart: torch.Tensor | None = None
) -> torch.Tensor:
    """The latent (B, S) after the first ``steps`` transitions of time-major sequences (obs
    (T + 1, B, O), actions (T, B, ...)): ``encode(obs[0])``, then ``observe`` step by step.
    Rows whose ``restart`` (B,) equals t start afresh at step t: their context is emptied, which
    is what ``encode(obs[t])`` would give (``observe`` encodes ``obs[t]`` anyway)."""
    z = model.encode(obs[0])
    C = model.cfg.memory_dim
    for t in range(1, steps + 1):
        z = model.observe(z, actions[t - 1], obs[t])
        if restart is not None and C:
            context = torch.where((restart == t)[:, None], torch.zeros_like(z[:, -C:]), z[:, -C:])  # (B, C)
            z = torch.cat([z[:, :-C], context], -1)
    return z


@torch.no_grad()
def filter_latents(model, obs: torch.Tensor, actions: torch.Tensor, episode: np.ndarray) -> torch.Tensor:
    """The latent before each of N time-ordered transitions (N, state_dim): ``encode`` where a
    new episode starts (``episode`` changes), ``observe`` with the previous row's action
    otherwise. The episodes run side by side, one ``observe`` per time step.

    Args:
        obs: (N, O) each transition's observation, rows in time order within each episode.
        actions: (N, A) or (N,) each transition's action.
        episode: (N,) episode id per row; rows of one episode are contiguous.
    """
    N = obs.shape[0]
    if model.cfg.memory == "none" or N == 0:
        return model.encode(obs)
    episode = np.asarray(episode)
    if episode.shape != (N,):
        raise ValueError(f"episode has shape {episode.shape}, expected ({N},) like the observations")
    starts = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1]])  # (E,)
    lengths = np.diff(np.r_[starts, N])
    seg = np.repeat(np.arange(len(starts)), lengths)  # (N,) segment of each row
    t = np.arange(N) - starts[seg]  # (N,) step within its segment
    T, E = int(lengths.max()), len(starts)
    grid = torch.as_tensor(np.minimum(starts[None, :] + np.arange(T)[:, None], N - 1))  # (T, E): padded by repeats
    z = model.encode(obs[grid[0]])  # (E, S)
    out = obs.new_empty(T, E, model.cfg.state_dim)
    out[0] = z
    for step in range(1, T):
        z = model.observe(z, actions[grid[step - 1]], obs[grid[step]])
        out[step] = z
    return out[torch.as_tensor(t), torch.as_tensor(seg)]  # (N, S)

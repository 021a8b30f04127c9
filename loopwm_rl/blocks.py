"""Building blocks of the dynamics core: a pre-norm transformer block and the contractive
state injection of LoopWM/Parcae (``LOOPWM_SPEC.md`` §1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``.

    Attention runs over the S tokens of one sample; samples never attend to each other, which
    is what lets halted samples leave a batch without changing the others' outputs.

    Args:
        dim: token width d.
        heads: attention heads (d must be divisible by it).
        mlp_ratio: MLP hidden width as a multiple of d.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, modulation: torch.Tensor | None = None) -> torch.Tensor:
        """x (n, S, d) -> (n, S, d). ``modulation`` (4, d): scale and shift of the two
        normalised inputs (adaLN), how a weight-tied block is told which loop it runs."""
        n, S, d = x.shape
        a = self.norm1(x)
        if modulation is not None:
            a = a * (1 + modulation[0]) + modulation[1]
        qkv = self.qkv(a).view(n, S, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (n, heads, S, d/heads)
        att = F.scaled_dot_product_attention(q, k, v)  # (n, heads, S, d/heads)
        x = x + self.proj(att.transpose(1, 2).reshape(n, S, d))
        b = self.norm2(x)
        if modulation is not None:
            b = b * (1 + modulation[2]) + modulation[3]
        return x + self.mlp(b)


class StateInjection(nn.Module):
    """``Ā h + B̄ e`` with ``Ā = exp(-Δ·exp(a))`` (every entry in (0, 1)) and ``B̄ = Δ·B``.

    Parcae initialisation: ``a = 0``, ``Δ = softplus(dt_bias)`` with ``exp(-Δ) = sqrt(1/5)``,
    ``B = I``. The recurrent block applied after this adds the nonlinearity ``R̄``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        dt0 = 0.5 * math.log(5.0)  # exp(-dt0) = sqrt(1/5)
        self.a_log = nn.Parameter(torch.zeros(dim))
        self.dt_bias = nn.Parameter(torch.full((dim,), math.log(math.expm1(dt0))))
        self.B = nn.Parameter(torch.eye(dim))

    @property
    def dt(self) -> torch.Tensor:
        return F.softplus(self.dt_bias)

    def retention(self) -> torch.Tensor:
        """Ā, shape (d,)."""
        return torch.exp(-self.dt * torch.exp(self.a_log))

    def input_gain(self, e: torch.Tensor) -> torch.Tensor:
        """``B̄ e``; computed once per step because e is re-injected unchanged every loop."""
        return self.dt * (e @ self.B.T)

    def forward(self, h: torch.Tensor, gained_e: torch.Tensor) -> torch.Tensor:
        return self.retention() * h + gained_e

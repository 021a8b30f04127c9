"""The rows of a batch that are still looping, and the outputs of those that have halted.

Halted samples leave the active set (``drop=True``) so that a batch costs what its realised
loops cost; with ``drop=False`` they stay in the tensors, masked, which gives the same outputs
(attention never mixes samples) at the full cost.
"""

from __future__ import annotations

import torch


class ActiveSet:
    """Bookkeeping of the depth loop for a batch of B samples.

    ``rows`` (n,) maps each computed row to its batch row; ``running`` (n,) marks the rows not
    yet halted (all of them when halted rows are dropped).
    """

    def __init__(self, batch: int, device: torch.device, *, drop: bool = True) -> None:
        self.batch, self.drop = batch, drop
        self.rows = torch.arange(batch, device=device)  # (n,)
        self.running = torch.ones(batch, dtype=torch.bool, device=device)  # (n,)
        self.outputs: dict[str, torch.Tensor] = {}

    @property
    def live(self) -> torch.Tensor:
        """Batch rows still looping (k,)."""
        return self.rows[self.running]

    def any(self) -> bool:
        return bool(self.running.any())

    def emit(self, halt: torch.Tensor, emitted: dict[str, torch.Tensor]) -> torch.Tensor:
        """Store the outputs of the rows that halt now; returns their batch rows."""
        newly = halt & self.running  # (n,)
        rows = self.rows[newly]
        for key, value in emitted.items():
            dense = self.outputs.get(key)
            if dense is None:
                dense = value.new_zeros(self.batch, *value.shape[1:])
            self.outputs[key] = dense.index_copy(0, rows, value[newly])  # (B, ...)
        return rows

    def advance(self, halt: torch.Tensor, *tensors: torch.Tensor, state: dict[str, torch.Tensor]):
        """Retire the rows that halted; returns ``tensors`` and ``state`` for the next loop."""
        if not self.drop:
            self.running = self.running & ~halt
            return tensors, state
        keep = ~halt
        self.rows, self.running = self.rows[keep], self.running[keep]
        return tuple(x[keep] for x in tensors), {k: v[keep] for k, v in state.items()}

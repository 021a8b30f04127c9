"""A tiny numpy raster for ``render_mode="rgb_array"`` (no pygame needed on headless machines)."""

from __future__ import annotations

import numpy as np


class Canvas:
    """An RGB image of the box ``[lo, hi]^2`` with y pointing up."""

    def __init__(self, size: int = 128, lo: float = 0.0, hi: float = 1.0, background=(245, 245, 245)) -> None:
        self.size, self.lo, self.hi = size, lo, hi
        self.image = np.empty((size, size, 3), dtype=np.uint8)
        self.image[:] = background
        centers = (np.arange(size) + 0.5) / size * (hi - lo) + lo
        self._x = centers[None, :]
        self._y = centers[::-1, None]

    def circle(self, x: float, y: float, r: float, color) -> Canvas:
        mask = (self._x - x) ** 2 + (self._y - y) ** 2 <= r * r
        self.image[mask] = color
        return self

    def rect(self, x0: float, y0: float, x1: float, y1: float, color) -> Canvas:
        mask = (self._x >= x0) & (self._x <= x1) & (self._y >= y0) & (self._y <= y1)
        self.image[mask] = color
        return self

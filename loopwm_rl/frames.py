"""Frames beside loops: what the model found hard, as pictures.

An evaluation episode of an env that renders (``render_mode="rgb_array"``) keeps the frame
each step started from. :func:`filmstrip` picks the steps with the most and the fewest loops,
:func:`annotate` draws a step's loop count on its frame (a bar along the bottom edge, a red
border on hard steps), and :func:`write_gif` makes the episode a clip that ``wandb.Video``
logs without a video encoder. Pillow encodes the images (PNG for the report, GIF for wandb).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

BAR = 6  # pixels of the loop bar at the bottom of an annotated frame
RED, BLUE, GREY = (214, 39, 40), (31, 119, 180), (225, 225, 225)


def filmstrip(loops: Sequence[int], k: int = 8) -> tuple[list[int], list[int]]:
    """The indices of the ``k`` steps with the most loops and the ``k`` with the fewest (no
    step in both; ties go to the earlier step), each list in episode order."""
    loops = np.asarray(loops)
    order = np.lexsort((np.arange(len(loops)), -loops))  # most loops first, then earlier
    top = sorted(order[:k].tolist())
    rest = [i for i in np.lexsort((np.arange(len(loops)), loops)).tolist() if i not in set(top)]
    return top, sorted(rest[:k])


def annotate(frame: np.ndarray, loops: int, cap: int, hard: bool) -> np.ndarray:
    """A copy of ``frame`` (H, W, 3) uint8 with a bar of ``loops / cap`` of its width along the
    bottom edge and, on a hard step, a red border."""
    out = np.array(frame, dtype=np.uint8, copy=True)
    H, W = out.shape[:2]
    out[H - BAR :, :] = GREY
    out[H - BAR :, : max(1, round(W * min(loops, cap) / cap))] = BLUE
    if hard:
        out[:3], out[:, :3], out[:, W - 3 :] = RED, RED, RED
    return out


def png_base64(frame: np.ndarray) -> str:
    """``frame`` (H, W, 3) uint8 as a base64 PNG for an ``<img src="data:image/png;base64,...">``."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: int = 10) -> Path:
    """An animated GIF of ``frames`` (each (H, W, 3) uint8) at ``fps``."""
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return Path(path)

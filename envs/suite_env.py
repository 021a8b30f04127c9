"""Common base of the suite: seeding, action checking, ``info["hard"]``/``info["events"]``,
the object layout and rendering."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .canvas import Canvas


def check_param(
    name: str, value: Any, low: float, high: float, *, integer: bool = False, open_low: bool = False, open_high=False
):
    """A constructor argument of the right type (an int, or a real number; never a bool or a
    string) inside ``[low, high]`` (either end open with ``open_low``/``open_high``), or a
    TypeError or ValueError naming it."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool | np.bool_) or not isinstance(value, kinds):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{name}={value!r} must be {kind}, not {type(value).__name__}")
    if (
        not np.isfinite(value)
        or value < low
        or value > high
        or (open_low and value == low)
        or (open_high and value == high)
    ):
        raise ValueError(
            f"{name}={value!r} must lie in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        )
    return int(value) if integer else float(value)


class SuiteEnv(gym.Env):
    """Base class. Subclasses set the spaces, ``hard_event`` and ``objects``, and implement
    ``_random_state``, ``_transition(action) -> (reward, terminated, info)`` (info holds
    ``hard`` and ``events``, the number of sub-step events the step resolved, with
    ``hard == events > 0``) and ``_draw``.

    The physical state lives in ``self.state``; ``_observe`` maps it to the observation.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    hard_event = ""
    canvas_box = (0.0, 1.0)
    objects: tuple[tuple[int, ...], ...] = ()
    """The object layout: the observation indices of each object, in order. It is the one
    place an env declares it; ``model.tokenizer: objects`` reads it (through ``make_env``)."""

    def __init__(self, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}; expected None or one of {self.metadata['render_modes']}")
        self.render_mode = render_mode

    # subclass hooks -------------------------------------------------------------
    def _random_state(self) -> np.ndarray:
        raise NotImplementedError("_random_state() -> state")

    def _transition(self, action) -> tuple[float, bool, dict[str, Any]]:
        raise NotImplementedError("_transition(action) -> (reward, terminated, info)")

    def _draw(self, canvas: Canvas) -> None:
        raise NotImplementedError("_draw(canvas)")

    def _observe(self) -> np.ndarray:
        return self.state.astype(np.float32)

    def _reset_extras(self, options: dict[str, Any]) -> None:
        """Per-episode randomisation beyond the state (hidden layouts)."""

    # gymnasium API --------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        self._reset_extras(options)
        if "state" in options:
            state = np.asarray(options["state"], dtype=np.float64)
            if state.shape != self._random_state().shape:
                raise ValueError(f"options['state'] has shape {state.shape}, expected {self.state.shape}")
            self.state = state
        else:
            self.state = self._random_state()
        return self._observe(), {"hard": False, "events": 0}

    def step(self, action):
        action = self._check_action(action)
        reward, terminated, info = self._transition(action)
        return self._observe(), float(reward), bool(terminated), False, info

    def _check_action(self, action):
        if isinstance(self.action_space, spaces.Discrete):
            if not self.action_space.contains(np.int64(action) if np.isscalar(action) else action):
                raise ValueError(f"action {action!r} is not in {self.action_space}")
            return int(action)
        action = np.asarray(action, dtype=np.float64).reshape(self.action_space.shape)
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action {action!r} is not finite")
        return np.clip(action, self.action_space.low, self.action_space.high)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        canvas = Canvas(128, *self.canvas_box)
        self._draw(canvas)
        return canvas.image

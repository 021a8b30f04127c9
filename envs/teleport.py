"""Grid-free navigation with discrete moves and stochastic teleporters."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from .canvas import Canvas
from .suite_env import SuiteEnv, check_param

MOVES = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0], [1.0, 0.0]])


class TeleportEnv(SuiteEnv):
    """
    ## Description
    An agent walks in the unit square with discrete moves of length ``step_size`` (plus small
    Gaussian slip). Four teleporter pads (discs of radius ``pad_radius``) each send the agent to
    a fixed exit with probability ``teleport_prob`` whenever a step ends on them. The
    task is to reach the goal disc. A transition is **hard** (``info["hard"] = True``) when a
    teleport happens inside the step. Teleports are stochastic: the observation shows that the
    agent may land on a pad, not whether the pad fires.

    ## Action Space
    ``Discrete(5)``: 0 stay, 1 up, 2 down, 3 left, 4 right. Any other value raises
    ``ValueError``.

    ## Observation Space
    ``Box(0, 1, (2,), float32)``: the agent's position.

    ## Rewards
    ``-|p - goal|`` per step, plus 10 when the goal is reached.

    ## Starting State
    Uniform in ``[0.05, 0.95]^2``, outside the pads and at least 0.3 from the goal.

    ## Episode End
    Termination when the agent is within 0.08 of the goal ``(0.9, 0.9)``. Truncation after
    200 steps.

    ## Arguments
    ``gymnasium.make("LoopWM/Teleport-v0", step_size=0.08, pad_radius=0.15,
    teleport_prob=0.8, slip=0.01, render_mode=None)``. ``reset(options={"state": [x, y]})``.

    ## Hard transitions
    About 6 % of steps under a uniformly random policy
    (``python benchmarks/env_hard_fraction.py``).

    ## Version History
    * v0: initial version.
    """

    hard_event = "a teleporter pad fires (stochastically) when a step ends on it"
    objects = ((0, 1),)
    goal = np.array([0.9, 0.9])
    goal_radius = 0.08
    pads = np.array([[0.25, 0.25], [0.7, 0.3], [0.3, 0.7], [0.62, 0.62]])
    exits = np.array([[0.8, 0.7], [0.1, 0.5], [0.5, 0.1], [0.2, 0.1]])

    def __init__(
        self,
        step_size: float = 0.08,
        pad_radius: float = 0.15,
        teleport_prob: float = 0.8,
        slip: float = 0.01,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode)
        self.step_size = check_param("step_size", step_size, 0.0, 0.5, open_low=True)
        self.pad_radius = check_param("pad_radius", pad_radius, 0.0, 0.5, open_low=True)
        self.teleport_prob = check_param("teleport_prob", teleport_prob, 0.0, 1.0)
        self.slip = check_param("slip", slip, 0.0, 0.5)
        self.observation_space = spaces.Box(0.0, 1.0, (2,), dtype=np.float32)
        self.action_space = spaces.Discrete(5)
        self.state = np.zeros(2)

    def _on_pad(self, pos: np.ndarray) -> int:
        d = np.linalg.norm(self.pads - pos, axis=-1)
        return int(np.argmin(d)) if d.min() <= self.pad_radius else -1

    def _random_state(self) -> np.ndarray:
        while True:
            pos = self.np_random.uniform(0.05, 0.95, 2)
            if self._on_pad(pos) < 0 and np.linalg.norm(pos - self.goal) > 0.3:
                return pos

    def _transition(self, action: int):
        pos = self.state + self.step_size * MOVES[action] + self.slip * self.np_random.normal(size=2)
        pos = np.clip(pos, 0.0, 1.0)
        pad = self._on_pad(pos)
        hard = False
        if pad >= 0 and self.np_random.random() < self.teleport_prob:
            pos, hard = self.exits[pad].copy(), True
        self.state = pos
        reached = bool(np.linalg.norm(pos - self.goal) <= self.goal_radius)
        reward = -float(np.linalg.norm(pos - self.goal)) + 10.0 * reached
        return reward, reached, {"hard": hard, "events": int(hard)}

    def _draw(self, canvas: Canvas) -> None:
        canvas.circle(*self.goal, self.goal_radius, (60, 170, 60))
        for pad, exit_ in zip(self.pads, self.exits, strict=True):
            canvas.circle(*pad, self.pad_radius, (150, 120, 220))
            canvas.circle(*exit_, 0.03, (90, 60, 170))
        canvas.circle(*self.state, 0.03, (200, 50, 50))

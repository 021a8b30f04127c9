"""A row of balls on a track: one push can set off a chain of collisions inside one step."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from .billiards import COLORS
from .canvas import Canvas
from .suite_env import SuiteEnv, check_param

MAX_EVENTS = 200  # a guard: an exact 1-D chain resolves far fewer per step


class CradleEnv(SuiteEnv):
    """
    ## Description
    A Newton's cradle laid flat: ``n_balls`` equal balls of radius ``radius`` slide without
    friction on the track ``[0, 1]`` between two walls and collide elastically (equal masses
    swap velocities). The agent pushes the leftmost ball; the task is to drive the rightmost
    ball to the right wall. Motion inside a step is simulated exactly, event by event, so a
    ball striking a closely spaced row passes its velocity down the row in one step: a chain
    of collisions. ``info["events"]`` counts the collisions (ball-ball and ball-wall) a step
    resolved, from 0 to about ``n_balls``; a transition is **hard** when ``events > 0``.
    Predicting a chain of k events needs k rounds of interaction between neighbouring balls,
    so this env grades difficulty.

    ## Action Space
    ``Box(-1, 1, (1,), float32)``: acceleration of the leftmost ball, scaled by ``thrust``.
    Actions outside the box are clipped to it; a NaN action raises ``ValueError``.

    ## Observation Space
    ``Box(-v_max, v_max, (2 * n_balls,), float32)`` with ``v_max = 2`` (positions lie in
    ``[radius, 1 - radius]``): ``x, v`` of each ball from left to right. ``objects``: one
    object per ball.

    ## Rewards
    ``x_last - 1 - 0.01 a^2``: the rightmost ball's distance from the right wall, negated.

    ## Starting State
    The balls in order with random gaps (together ``1 - 2 radius n_balls``, split uniformly at
    random), velocities uniform in ``[-1, 1]``.

    ## Episode End
    No termination. Truncation after 200 steps.

    ## Arguments
    ``gymnasium.make("LoopWM/Cradle-v0", n_balls=5, radius=0.06, thrust=2.0, dt=0.05,
    render_mode=None)``. ``reset(options={"state": [...]})`` takes ``2 * n_balls`` numbers.

    ## Hard transitions
    About 74 % of steps under a uniformly random policy: 40 % with one event, 22 % with two,
    12 % with three or more (``python benchmarks/env_hard_fraction.py``).

    ## Version History
    * v0: initial version.
    """

    hard_event = "a collision (ball-ball or ball-wall) within the step; info['events'] counts a chain"
    v_max = 2.0

    def __init__(
        self,
        n_balls: int = 5,
        radius: float = 0.06,
        thrust: float = 2.0,
        dt: float = 0.05,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode)
        n_balls = check_param("n_balls", n_balls, 2, len(COLORS), integer=True)
        radius = check_param("radius", radius, 0.0, 0.5, open_low=True)
        thrust = check_param("thrust", thrust, 0.0, 20.0)
        dt = check_param("dt", dt, 0.0, 0.2, open_low=True)
        if not 0 < 2 * radius * n_balls < 1:
            raise ValueError(f"radius={radius}: {n_balls} balls of that size do not fit on the unit track")
        self.n, self.radius, self.thrust, self.dt = n_balls, radius, thrust, dt
        self.observation_space = spaces.Box(-self.v_max, self.v_max, (2 * n_balls,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.state = np.zeros(2 * n_balls)
        self.objects = tuple((2 * i, 2 * i + 1) for i in range(n_balls))

    def _random_state(self) -> np.ndarray:
        rng = self.np_random
        free = 1.0 - 2 * self.radius * self.n
        gaps = rng.dirichlet(np.ones(self.n + 1)) * free  # n + 1 gaps: wall, between balls, wall
        x = self.radius + np.cumsum(gaps[: self.n]) + 2 * self.radius * np.arange(self.n)
        v = rng.uniform(-1.0, 1.0, self.n)
        return np.stack([x, v], -1).reshape(-1)

    def _next_event(self, x: np.ndarray, v: np.ndarray) -> tuple[float, int]:
        """Time to the next collision and who collides: pair (i, i+1) as i, the left wall as
        -1, the right wall as n - 1 (by convention, distinct from any pair index < n - 1)."""
        r = self.radius
        best, who = np.inf, -2
        if v[0] < 0:
            best, who = max(x[0] - r, 0.0) / -v[0], -1
        if v[-1] > 0:
            t = max(1.0 - r - x[-1], 0.0) / v[-1]
            if t < best:
                best, who = t, self.n - 1
        closing = v[:-1] - v[1:]  # (n - 1,)
        gap = np.maximum(x[1:] - x[:-1] - 2 * r, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_pair = np.where(closing > 0, gap / closing, np.inf)
        i = int(np.argmin(t_pair))
        if t_pair[i] < best:
            best, who = float(t_pair[i]), i
        return best, who

    def _transition(self, action: np.ndarray) -> tuple[float, bool, dict]:
        balls = self.state.reshape(self.n, 2).copy()
        x, v = balls[:, 0], balls[:, 1]
        v[0] = np.clip(v[0] + self.dt * self.thrust * float(action[0]), -self.v_max, self.v_max)
        left, events = self.dt, 0
        while events < MAX_EVENTS:
            t, who = self._next_event(x, v)
            if t > left:
                x += left * v
                break
            x += t * v
            left -= t
            events += 1
            if who == -1:
                v[0] = abs(v[0])
            elif who == self.n - 1:
                v[-1] = -abs(v[-1])
            else:
                v[who], v[who + 1] = v[who + 1], v[who]
        # floating-point drift only: keep the order and the walls exact
        x[:] = np.clip(x, self.radius, 1 - self.radius)
        for i in range(1, self.n):
            x[i] = max(x[i], x[i - 1] + 2 * self.radius)
        self.state = balls.reshape(-1)
        reward = float(x[-1] - 1.0) - 0.01 * float(action[0] ** 2)
        return reward, False, {"hard": events > 0, "events": events}

    def _draw(self, canvas: Canvas) -> None:
        for i, (x, _) in enumerate(self.state.reshape(self.n, 2)):
            canvas.circle(x, 0.5, self.radius, COLORS[i])

"""Several balls with elastic collisions; every collision is a hard transition."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from .canvas import Canvas
from .suite_env import SuiteEnv, check_param

COLORS = [(220, 60, 60), (40, 90, 200), (230, 170, 30), (120, 60, 160), (40, 160, 120)]


class BilliardsEnv(SuiteEnv):
    """
    ## Description
    ``n_balls`` equal discs of radius ``radius`` slide without friction in the unit box and
    collide elastically with each other and with the walls. The agent thrusts the red cue ball
    (ball 0); the task is to bring the blue ball (ball 1) to the goal at ``(0.8, 0.8)``. A
    transition is **hard** (``info["hard"] = True``) when any ball hits another ball or a wall
    inside the step; ``info["events"]`` counts those hits. Collisions are deterministic and
    visible in the observation. ``objects``: one object per ball (its ``x, y, vx, vy``).

    ## Action Space
    ``Box(-1, 1, (2,), float32)``: acceleration of the cue ball along x and y, scaled by
    ``thrust``. Actions outside the box are clipped to it; a NaN action raises ``ValueError``.

    ## Observation Space
    ``Box(-v_max, v_max, (4 * n_balls,), float32)`` (positions lie in ``[radius, 1 - radius]``):
    ``x, y, vx, vy`` of each ball in order, cue ball first; speeds are capped at ``v_max = 2``.

    ## Rewards
    ``-|p_1 - goal| - 0.01 |a|^2``.

    ## Starting State
    Balls at random non-overlapping positions, velocities uniform in ``[-0.5, 0.5]^2``.

    ## Episode End
    No termination. Truncation after 200 steps.

    ## Arguments
    ``gymnasium.make("LoopWM/Billiards-v0", n_balls=3, radius=0.07, thrust=2.0, dt=0.05,
    render_mode=None)``. ``reset(options={"state": [...]})`` takes ``4 * n_balls`` numbers.

    ## Hard transitions
    About 16 % of steps under a uniformly random policy with 3 balls
    (``python benchmarks/env_hard_fraction.py``).

    ## Version History
    * v0: initial version.
    """

    hard_event = "a ball hits another ball or a wall within the step"
    v_max = 2.0
    goal = np.array([0.8, 0.8])

    def __init__(
        self,
        n_balls: int = 3,
        radius: float = 0.07,
        thrust: float = 2.0,
        dt: float = 0.05,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode)
        self.n = check_param("n_balls", n_balls, 2, len(COLORS), integer=True)
        self.radius = check_param("radius", radius, 0.0, 0.15, open_low=True, open_high=True)
        self.thrust = check_param("thrust", thrust, 0.0, 20.0)
        self.dt = check_param("dt", dt, 0.0, 0.2, open_low=True)
        self.observation_space = spaces.Box(-self.v_max, self.v_max, (4 * n_balls,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.state = np.zeros(4 * n_balls)
        self.objects = tuple(tuple(range(4 * i, 4 * i + 4)) for i in range(n_balls))

    def _random_state(self) -> np.ndarray:
        rng = self.np_random
        pos = []
        while len(pos) < self.n:
            p = rng.uniform(self.radius, 1 - self.radius, 2)
            if all(np.linalg.norm(p - q) > 2.2 * self.radius for q in pos):
                pos.append(p)
        vel = rng.uniform(-0.5, 0.5, (self.n, 2))
        return np.concatenate([np.stack(pos), vel], -1).reshape(-1)

    def _transition(self, action: np.ndarray) -> tuple[float, bool, dict]:
        balls = self.state.reshape(self.n, 4).copy()
        pos, vel = balls[:, :2], balls[:, 2:]
        vel[0] += self.dt * self.thrust * action
        pos += self.dt * vel
        events = 0
        lo, hi = self.radius, 1 - self.radius
        for axis in range(2):
            below, above = pos[:, axis] < lo, pos[:, axis] > hi
            hit = below | above
            pos[:, axis] = np.where(below, 2 * lo - pos[:, axis], np.where(above, 2 * hi - pos[:, axis], pos[:, axis]))
            vel[:, axis] = np.where(hit, -vel[:, axis], vel[:, axis])
            events += int(hit.sum())
        for i in range(self.n):
            for j in range(i + 1, self.n):
                d = pos[j] - pos[i]
                dist = float(np.linalg.norm(d))
                if dist >= 2 * self.radius or dist == 0.0:
                    continue
                normal = d / dist
                approach = float((vel[i] - vel[j]) @ normal)
                if approach > 0:  # equal masses: swap the normal velocity components
                    vel[i] -= approach * normal
                    vel[j] += approach * normal
                overlap = 2 * self.radius - dist
                pos[i] -= 0.5 * overlap * normal
                pos[j] += 0.5 * overlap * normal
                events += 1
        pos[:] = np.clip(pos, lo, hi)
        speed = np.linalg.norm(vel, axis=-1, keepdims=True)
        vel *= np.minimum(1.0, self.v_max / np.maximum(speed, 1e-9))
        self.state = balls.reshape(-1)
        reward = -float(np.linalg.norm(pos[1] - self.goal)) - 0.01 * float(action @ action)
        return reward, False, {"hard": events > 0, "events": events}

    def _draw(self, canvas: Canvas) -> None:
        canvas.circle(*self.goal, 0.04, (60, 170, 60))
        for i, (x, y, _, _) in enumerate(self.state.reshape(self.n, 4)):
            canvas.circle(x, y, self.radius, COLORS[i])

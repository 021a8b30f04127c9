"""A thrust-driven ball under gravity in a box; bounces are the hard transitions."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from .canvas import Canvas
from .suite_env import SuiteEnv, check_param


class BouncingBallEnv(SuiteEnv):
    """
    ## Description
    A ball moves in the unit box under gravity and is pushed by a 2-D thrust. Walls and floor
    reflect it with restitution ``restitution`` (velocity component reversed and scaled). The
    task is to hold the ball at a target point. A transition is **hard**
    (``info["hard"] = True``) when the ball bounces off a wall or the floor inside the step:
    the next state is then a reflected, damped copy of what free flight predicts. Bounces are
    deterministic and visible in the observation (position and velocity).

    ## Action Space
    ``Box(-1, 1, (2,), float32)``: thrust along x and y, scaled by ``thrust``. Actions outside
    the box are clipped to it; a NaN action raises ``ValueError``.

    | index | action   | min | max |
    |-------|----------|-----|-----|
    | 0     | thrust x | -1  | 1   |
    | 1     | thrust y | -1  | 1   |

    ## Observation Space
    ``Box((0, 0, -v_max, -v_max), (1, 1, v_max, v_max), (4,), float32)``: position ``x, y``
    and velocity ``vx, vy`` (clipped to ``v_max = 5``).

    ## Rewards
    ``-|p - target| - 0.01 |a|^2`` with ``target = (0.5, 0.75)``: at most 0 per step.

    ## Starting State
    Position uniform in ``[0.2, 0.8]^2``, velocity uniform in ``[-2, 2]^2``.

    ## Episode End
    No termination. Truncation after 200 steps (``max_episode_steps`` of the registration).

    ## Arguments
    ``gymnasium.make("LoopWM/BouncingBall-v0", gravity=2.0, thrust=6.0, restitution=0.8,
    dt=0.05, render_mode=None)``. ``reset(options={"state": [x, y, vx, vy]})`` starts from a
    given state.

    ## Hard transitions
    About 10 % of steps under a uniformly random policy
    (``python benchmarks/env_hard_fraction.py``).

    ## Version History
    * v0: initial version.
    """

    hard_event = "the ball bounces off a wall or the floor within the step"
    objects = ((0, 1, 2, 3),)
    v_max = 5.0
    target = np.array([0.5, 0.75])

    def __init__(
        self,
        gravity: float = 2.0,
        thrust: float = 6.0,
        restitution: float = 0.8,
        dt: float = 0.05,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode)
        self.gravity = check_param("gravity", gravity, 0.0, 20.0)
        self.thrust = check_param("thrust", thrust, 0.0, 20.0)
        self.restitution = check_param("restitution", restitution, 0.0, 1.0)
        self.dt = check_param("dt", dt, 0.0, 0.2, open_low=True)
        v = self.v_max
        self.observation_space = spaces.Box(
            np.array([0, 0, -v, -v], np.float32), np.array([1, 1, v, v], np.float32), dtype=np.float32
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.state = np.zeros(4)

    def _random_state(self) -> np.ndarray:
        rng = self.np_random
        return np.concatenate([rng.uniform(0.2, 0.8, 2), rng.uniform(-2, 2, 2)])

    def _transition(self, action: np.ndarray) -> tuple[float, bool, dict]:
        pos, vel = self.state[:2].copy(), self.state[2:].copy()
        vel = vel + self.dt * (self.thrust * action + np.array([0.0, -self.gravity]))
        pos = pos + self.dt * vel
        low, high = pos < 0.0, pos > 1.0
        bounced = low | high
        pos = np.where(low, -pos, np.where(high, 2.0 - pos, pos))
        pos = np.clip(pos, 0.0, 1.0)  # a bounce faster than one box width per step stays inside
        vel = np.where(bounced, -self.restitution * vel, vel)
        self.state = np.concatenate([pos, np.clip(vel, -self.v_max, self.v_max)])
        reward = -float(np.linalg.norm(pos - self.target)) - 0.01 * float(action @ action)
        events = int(bounced.sum())  # one per axis that bounced
        return reward, False, {"hard": events > 0, "events": events}

    def _draw(self, canvas: Canvas) -> None:
        canvas.circle(*self.target, 0.03, (60, 170, 60))
        canvas.circle(self.state[0], self.state[1], 0.04, (200, 50, 50))

"""A point mass crossing zones whose dynamics and boundaries are hidden from the observation."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from .canvas import Canvas
from .suite_env import SuiteEnv, check_param

# (gravity x, gravity y, friction) of each zone kind
ZONE_KINDS = np.array(
    [
        [0.0, 0.0, 0.2],  # plain floor
        [0.0, -2.5, 0.2],  # gravity down
        [0.0, 2.5, 0.2],  # gravity up
        [2.5, 0.0, 0.2],  # wind to the right
        [0.0, 0.0, 4.0],  # mud: strong friction
    ]
)
ZONE_COLORS = [(235, 235, 235), (200, 215, 240), (240, 215, 200), (215, 240, 215), (200, 180, 150)]


class HiddenZonesEnv(SuiteEnv):
    """
        ## Description
        A point mass moves in the square ``[-1, 1]^2`` under a 2-D thrust. The square is cut into
        ``n_zones`` vertical bands; each band has its own gravity direction or friction. The band
        boundaries and which dynamics each band has are **redrawn at every reset and are not
        observed**, so the agent (and a world model) must infer the current zone from motion. A
        transition is **hard** (``info["hard"] = True``) when the mass crosses into another zone
        inside the step (the dynamics switch) or runs into the outer wall (more than 0.01 past it in
    free flight). Zone crossings are
        not predictable from the observation alone.

        ## Action Space
        ``Box(-1, 1, (2,), float32)``: thrust along x and y, scaled by ``thrust``. Actions outside
        the box are clipped to it; a NaN action raises ``ValueError``.

        ## Observation Space
        ``Box(-v_max, v_max, (6,), float32)`` with ``v_max = 3``: position ``x, y`` (in
        ``[-1, 1]``), velocity ``vx, vy`` and the goal ``gx, gy`` (in ``[-0.8, 0.8]``).

        ## Rewards
        ``-|p - goal| - 0.01 |a|^2``.

        ## Starting State
        Position uniform in ``[-0.8, 0.8]^2``, velocity uniform in ``[-1, 1]^2``, goal uniform in
        ``[-0.8, 0.8]^2``; ``n_zones - 1`` boundaries uniform in ``[-0.8, 0.8]`` (sorted) and a zone
        kind per band drawn without two equal neighbours.

        ## Episode End
        No termination. Truncation after 200 steps.

        ## Arguments
        ``gymnasium.make("LoopWM/HiddenZones-v0", n_zones=4, thrust=3.0, dt=0.05,
        render_mode=None)``. ``reset(options={"state": [x, y, vx, vy, gx, gy],
        "boundaries": [...], "kinds": [...]})`` fixes the state and the hidden layout.

        ## Hard transitions
        About 13 % of steps under a uniformly random policy
        (``python benchmarks/env_hard_fraction.py``).

        ## Version History
        * v0: initial version.
    """

    hard_event = "the mass crosses a hidden zone boundary (the dynamics switch) or runs into the wall"
    objects = ((0, 1, 2, 3), (4, 5))  # the mass, the goal
    v_max = 3.0
    canvas_box = (-1.0, 1.0)

    def __init__(self, n_zones: int = 4, thrust: float = 3.0, dt: float = 0.05, render_mode: str | None = None):
        super().__init__(render_mode)
        self.n_zones = check_param("n_zones", n_zones, 2, 8, integer=True)
        self.thrust = check_param("thrust", thrust, 0.0, 20.0)
        self.dt = check_param("dt", dt, 0.0, 0.2, open_low=True)
        self.observation_space = spaces.Box(-self.v_max, self.v_max, (6,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.state = np.zeros(6)
        self.boundaries = np.linspace(-0.5, 0.5, n_zones - 1)
        self.kinds = np.arange(n_zones) % len(ZONE_KINDS)

    def _reset_extras(self, options):
        rng = self.np_random
        if "boundaries" in options:
            self.boundaries = np.sort(np.asarray(options["boundaries"], dtype=np.float64))
            if self.boundaries.shape != (self.n_zones - 1,):
                raise ValueError(f"options['boundaries'] must hold {self.n_zones - 1} numbers")
        else:
            self.boundaries = np.sort(rng.uniform(-0.8, 0.8, self.n_zones - 1))
        if "kinds" in options:
            self.kinds = np.asarray(options["kinds"], dtype=np.int64)
            if self.kinds.shape != (self.n_zones,) or self.kinds.min() < 0 or self.kinds.max() >= len(ZONE_KINDS):
                raise ValueError(f"options['kinds'] must hold {self.n_zones} ints in [0, {len(ZONE_KINDS)})")
        else:
            kinds = [int(rng.integers(len(ZONE_KINDS)))]
            while len(kinds) < self.n_zones:
                k = int(rng.integers(len(ZONE_KINDS) - 1))
                kinds.append(k if k < kinds[-1] else k + 1)  # never equal to the neighbour
            self.kinds = np.array(kinds)

    def zone(self, x: float) -> int:
        return int(np.searchsorted(self.boundaries, x))

    def _random_state(self) -> np.ndarray:
        rng = self.np_random
        return np.concatenate([rng.uniform(-0.8, 0.8, 2), rng.uniform(-1, 1, 2), rng.uniform(-0.8, 0.8, 2)])

    def _transition(self, action):
        pos, vel, goal = self.state[:2].copy(), self.state[2:4].copy(), self.state[4:]
        before = self.zone(pos[0])
        gx, gy, friction = ZONE_KINDS[self.kinds[before]]
        vel = vel + self.dt * (self.thrust * action + np.array([gx, gy]) - friction * vel)
        pos = pos + self.dt * vel
        overshoot = np.abs(pos) - 1.0
        walled = overshoot > 0.0
        pos = np.clip(pos, -1.0, 1.0)
        vel = np.clip(np.where(walled, 0.0, vel), -self.v_max, self.v_max)
        self.state = np.concatenate([pos, vel, goal])
        # resting against a wall is easy to predict; arriving at it with speed is not
        hard = self.zone(pos[0]) != before or bool((overshoot > 0.01).any())
        reward = -float(np.linalg.norm(pos - goal)) - 0.01 * float(action @ action)
        return reward, False, {"hard": hard, "events": int(hard)}

    def _draw(self, canvas: Canvas) -> None:
        edges = [-1.0, *self.boundaries, 1.0]
        for i in range(self.n_zones):
            canvas.rect(edges[i], -1.0, edges[i + 1], 1.0, ZONE_COLORS[self.kinds[i]])
        canvas.circle(self.state[4], self.state[5], 0.06, (60, 170, 60))
        canvas.circle(self.state[0], self.state[1], 0.07, (200, 50, 50))

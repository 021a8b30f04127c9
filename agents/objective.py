"""The planning objective: discounted imagined return of action sequences."""

from __future__ import annotations

import math
import warnings
from typing import Protocol

import torch

from loopwm_rl.outputs import Rollout


class Dynamics(Protocol):
    """What the planner needs of a model: the world-model verbs ``encode`` and ``imagine``."""

    def encode(self, obs: torch.Tensor) -> torch.Tensor: ...

    def imagine(self, z0: torch.Tensor, actions: torch.Tensor, **kwargs) -> Rollout: ...


def discounted_return(reward: torch.Tensor, cont: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_t gamma^t C_t r_t`` over imagined rewards and continuation probabilities (H, N),
    with ``C_t = prod_{s<t} cont_s``; returns it (N,) and ``C`` (H, N)."""
    discount = gamma ** torch.arange(reward.shape[0], dtype=reward.dtype, device=reward.device)
    alive = torch.cumprod(torch.cat([torch.ones_like(cont[:1]), cont[:-1]]), 0)  # (H, N)
    return (discount[:, None] * alive * reward).sum(0), alive


class ImaginedReturn:
    """``V(a_{0:H}) = sum_t gamma^t C_t r_t + gamma^H C_H Q(z_H, pi(z_H))`` where
    ``C_t = prod_{s<t} cont_s`` is the predicted probability of still being alive.

    One batched ``imagine`` call over ``(H, N)`` scores all N candidates. Candidates whose
    imagined values are not finite score ``-inf`` and a warning names the first bad step.

    Compute-aware scoring (``PlannerConfig``):

    - **Multi-fidelity** (``screen_loops`` > 0): every candidate is first scored with at most
      ``screen_loops`` loops per imagined step; the best ``screen_keep`` fraction (never fewer
      than ``keep_min``, the optimiser's elites) is scored again at full depth, and only those
      can be elites (the rest score ``-inf``).
    - **A loop budget** per plan (``start(..., budget=B, calls=I)``): the loops left are shared
      evenly over the calls left, and each call caps its imagined steps so that it cannot spend
      more than its share (at least one loop per step: :meth:`start` rejects a budget below
      that floor). ``spent`` says where the loops went.

    Args:
        model: a world model (or anything with its ``encode``/``imagine`` verbs).
        gamma: discount.
        value: optional ``value(z) -> (N,)`` terminal value (e.g. ``ActorCritic.value``).
        max_loops: loop cap of imagined steps (default: the model's).
        screen_loops, screen_keep, keep_min: multi-fidelity settings (0: off).
        halting: ``"fixed"`` or ``"convergence"`` instead of the model's trained rule.
    """

    def __init__(
        self,
        model: Dynamics,
        gamma: float = 0.99,
        value=None,
        max_loops: int | None = None,
        *,
        screen_loops: int = 0,
        screen_keep: float = 0.25,
        keep_min: int = 1,
        halting: str | None = None,
    ) -> None:
        self.model, self.gamma, self.value, self.max_loops = model, gamma, value, max_loops
        self.screen_loops, self.screen_keep, self.keep_min = screen_loops, screen_keep, keep_min
        self.halting = halting
        self.z0: torch.Tensor | None = None
        self.loops: list[torch.Tensor] = []
        self.spent = {"screen": 0, "full": 0}
        self._left: int | None = None  # loops left in this plan's budget (None: no budget)
        self._calls_left = 1

    @property
    def cap(self) -> int | None:
        """The loop cap of a full-depth imagined step (None when the model does not say)."""
        return self.max_loops or getattr(getattr(self.model, "cfg", None), "loop_cap", None)

    def _kept(self, n: int) -> int:
        return min(n, max(self.keep_min, math.ceil(self.screen_keep * n)))

    def floor(self, n: int, horizon: int) -> int:
        """Loops one call over ``n`` candidates costs at the least (one loop per step)."""
        return n * horizon + (self._kept(n) * horizon if self.screen_loops else 0)

    def start(self, z0: torch.Tensor, budget: int | None = None, calls: int = 1, n: int = 0, horizon: int = 0) -> None:
        """Plan from the current latent (1, S), once per plan; ``budget`` loops for ``calls``
        objective calls over ``n`` candidates of ``horizon`` steps.

        Raises:
            ValueError: a budget below one loop per imagined step, or a model with no loop cap.
        """
        self.z0 = z0
        self.loops = []
        self.spent = {"screen": 0, "full": 0}
        self._left, self._calls_left = budget, max(1, calls)
        if budget is not None:
            if self.cap is None:
                raise ValueError("a loop budget needs planner.max_loops for a model without a loop cap")
            least = calls * self.floor(n, horizon)
            if budget < least:
                raise ValueError(
                    f"planner.loop_budget={budget} is below the {least} loops one plan needs at one loop per "
                    f"imagined step ({calls} iterations x {n} candidates x {horizon} steps"
                    + (", plus the re-scored ones)" if self.screen_loops else ")")
                )

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        H, N = actions.shape[:2]
        share = None if self._left is None else self._left // self._calls_left
        if not self.screen_loops:
            cap = self.cap if share is None else min(self.cap, share // (N * H))
            values = self._score(actions, cap, "full")
        else:
            keep = self._kept(N)
            low_cap = self.screen_loops if self.cap is None else min(self.screen_loops, self.cap)
            full_cap = self.cap
            if share is not None:  # screening first at up to its cap, the rest to the kept ones
                low_cap = max(1, min(low_cap, (share - keep * H) // (N * H)))
                full_cap = min(self.cap, (share - N * H * low_cap) // (keep * H))
            low = self._score(actions, low_cap, "screen")
            idx = low.topk(keep).indices
            values = torch.full_like(low, -torch.inf)
            values[idx] = self._score(actions[:, idx], full_cap, "full")
        self._calls_left = max(1, self._calls_left - 1)
        return values

    def _score(self, actions: torch.Tensor, cap: int | None, stage: str) -> torch.Tensor:
        H, N = actions.shape[:2]
        kwargs = {} if cap is None else {"max_loops": cap}
        if self.halting is not None:
            kwargs["halting"] = self.halting
        roll = self.model.imagine(self.z0.expand(N, -1), actions, **kwargs)
        self.loops.append(roll.loops)  # (H, N)
        spent = int(roll.loops.sum())
        self.spent[stage] += spent
        if self._left is not None:
            self._left -= spent
        values, alive = discounted_return(roll.reward, roll.cont, self.gamma)  # (N,), (H, N)
        if self.value is not None:
            values = values + self.gamma**H * alive[-1] * roll.cont[-1] * self.value(roll.z[-1])
        bad = ~torch.isfinite(values)
        if bool(bad.any()):
            finite_steps = torch.isfinite(roll.reward) & torch.isfinite(roll.z).all(-1)  # (H, N)
            first = int((~finite_steps[:, bad]).float().argmax(0).min())
            warnings.warn(
                f"imagined rollouts gave non-finite values for {int(bad.sum())} of {N} candidates, "
                f"first at imagined step {first}; they are ranked last",
                RuntimeWarning,
                stacklevel=3,
            )
            values = values.masked_fill(bad, -torch.inf)
        return values

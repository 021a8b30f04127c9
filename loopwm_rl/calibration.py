"""Set a halting rule's threshold from a compute budget on held-out transitions.

A budget is the mean loops per step as a fraction of the loop cap. The threshold is the
candidate whose mean loops on the given transitions lands closest to it, so rules and models
are compared at equal compute (``benchmarks/depth_vs_difficulty.py`` reports the loops each
calibrated rule realised on fresh data).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch

from .config import ConfigError, HaltingConfig
from .world_model import WorldModel

# (rule, objective) -> (HaltingConfig field, candidates). Each field moves mean loops
# monotonically; a grid (not bisection) keeps that true for either direction. The upper tails
# reach gains and changes far above a trained model's: early in online training they are large.
THRESHOLDS = {
    ("learned", "gain"): ("tau", np.concatenate([np.geomspace(1e-6, 3.0, 65), np.geomspace(3.8, 1e3, 25)])),
    ("learned", "improve"): ("tau", np.linspace(0.02, 0.98, 49)),
    ("learned", "ponder"): ("tau", np.linspace(0.02, 0.98, 49)),
    ("convergence", None): ("tol", np.concatenate([np.geomspace(1e-4, 3.0, 49), np.geomspace(3.7, 1e2, 15)])),
    ("act", None): ("act_eps", np.linspace(0.0, 0.98, 50)),
}


def threshold_field(halting: HaltingConfig) -> tuple[str, np.ndarray]:
    """The field a budget sets for this rule, and its candidate values."""
    key = (halting.rule, halting.objective if halting.rule == "learned" else None)
    if key not in THRESHOLDS:
        raise ConfigError(
            f"halting rule {halting.rule!r} has no threshold to calibrate; expected one of convergence, learned, act"
        )
    return THRESHOLDS[key]


def threshold_of(halting: HaltingConfig) -> float:
    """The value of the threshold a budget sets for this rule (``depth/threshold``)."""
    field, _ = threshold_field(halting)
    return getattr(halting, field)


def calibrate(
    model: WorldModel,
    obs: torch.Tensor,
    actions: torch.Tensor,
    budget: float,
    rule: str | None = None,
    z: torch.Tensor | None = None,
) -> tuple[HaltingConfig, float]:
    """Threshold of ``rule`` (default: the model's) whose mean loops on (obs (N, O), actions)
    is closest to ``budget * loop_cap``. Returns the halting config and the mean loops it gives.
    ``z`` (N, S) replaces ``encode(obs)``: a model with memory passes its filtered latents.

    ``convergence`` compares two loops, so it cannot go below 2 loops per step.
    """
    if not 0.0 < budget <= 1.0:
        raise ConfigError(f"budget={budget} must lie in (0, 1]: mean loops as a fraction of the loop cap")
    base = model.cfg.halting if rule is None else dataclasses.replace(model.cfg.halting, rule=rule)
    field, candidates = threshold_field(base)
    target = budget * model.cfg.loop_cap
    best: tuple[HaltingConfig, float] | None = None
    with model.evaluating(), torch.no_grad():
        z = model.encode(obs) if z is None else z  # (N, S): the same for every candidate
        for value in candidates:
            cfg = dataclasses.replace(base, **{field: float(value)})
            loops = float(model.step(z, actions, halting=cfg).loops.float().mean())
            if best is None or abs(loops - target) < abs(best[1] - target):
                best = (cfg, loops)
    if abs(best[1] - target) > max(0.5, 0.1 * target):
        warnings.warn(
            f"halting budget {budget} asks for {target:.2f} mean loops; the closest {base.rule} threshold "
            f"({field}={getattr(best[0], field):.3g}) gives {best[1]:.2f}",
            stacklevel=2,
        )
    return best


def set_halting(model: WorldModel, halting: HaltingConfig) -> None:
    """Make ``halting`` the model's rule settings (saved with it); the rule itself must not change."""
    trained = model.cfg.halting
    if (halting.rule, halting.objective) != (trained.rule, trained.objective):
        raise ValueError(
            f"the model was trained with halting.rule={trained.rule!r} (objective {trained.objective!r}); "
            f"cannot switch its saved rule to {halting.rule!r} (objective {halting.objective!r})"
        )
    model.cfg = dataclasses.replace(model.cfg, halting=halting)
    model.halting.cfg = halting

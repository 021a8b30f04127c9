"""The configuration of a whole run: env, model, planner, training and logging.

Experiment presets live in ``configs/*.yaml``. Inside a section, ``preset: NAME`` (or a list)
first loads ``configs/{group}/NAME.yaml`` for that section (groups: ``env``, ``model``,
``agent`` for the planner), then the section's other keys apply on top. Presets compose left
to right; ``key=value`` overrides (``model.max_loops=4``, ``train.total_steps=500``) come last.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from loopwm_rl.agents.config import PlannerConfig

from .config import (
    ConfigError,
    WorldModelConfig,
    available_presets,
    from_mapping,
    merge_dicts,
    parse_overrides,
    read_preset,
)

GROUPS = {"env": "env", "model": "model", "planner": "agent"}


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    id: str = "Pendulum-v1"
    """A Gymnasium id (``loopwm-rl envs`` lists the suite)."""
    max_episode_steps: int = 0
    """Overrides the registered episode length when > 0."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    total_steps: int = 10_000
    """Env steps of the whole run."""
    seed_steps: int = 1_000
    """Random-action steps before planning starts; the model is pretrained on them."""
    pretrain_updates: int = 500
    """World-model updates on the seed data before planning starts."""
    utd: float = 1.0
    """World-model updates per env step after the seed phase."""
    batch_size: int = 64
    horizon: int = 3
    """Transitions per training sequence."""
    lr: float = 1e-3
    grad_clip: float = 1.0
    buffer_size: int = 100_000
    critic: bool = True
    """Learn a latent actor-critic for the planner's terminal value."""
    critic_hidden: int = 128
    eval_every: int = 1_000
    eval_episodes: int = 3
    checkpoint_every: int = 1_000
    threads: int = 2
    """torch threads; oversubscribing 2 cores was measured to slow a step 25-fold."""
    device: str = "cpu"
    runs_dir: str = "runs"


@dataclasses.dataclass(frozen=True)
class WandbConfig:
    mode: str = "offline"
    """``offline`` (default; online when WANDB_API_KEY is set), ``online`` or ``disabled``."""
    project: str = "loopwm-rl"
    group: str = ""
    tags: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        if self.mode not in ("offline", "online", "disabled"):
            raise ConfigError(f"wandb.mode={self.mode!r} is not one of ['offline', 'online', 'disabled']")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    preset: str = ""
    """Derived: the experiment presets this run was composed from."""
    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    model: WorldModelConfig = dataclasses.field(default_factory=WorldModelConfig)
    planner: PlannerConfig = dataclasses.field(default_factory=PlannerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    wandb: WandbConfig = dataclasses.field(default_factory=WandbConfig)

    def __post_init__(self) -> None:
        t = self.train
        if t.total_steps < 1 or t.seed_steps < 1 or t.seed_steps > t.total_steps:
            raise ConfigError(f"train.seed_steps={t.seed_steps} must lie in [1, train.total_steps={t.total_steps}]")
        if t.horizon < 1 or t.batch_size < 1 or t.utd < 0:
            raise ConfigError("train.horizon and train.batch_size must be >= 1 and train.utd >= 0")


def _expand_sections(data: Mapping[str, Any]) -> dict[str, Any]:
    """Replace ``section: {preset: NAME, ...}`` with the group preset merged under the keys."""
    out = dict(data)
    for section, group in GROUPS.items():
        value = out.get(section)
        if isinstance(value, Mapping) and "preset" in value:
            names = value["preset"]
            names = [names] if isinstance(names, str) else list(names)
            merged: dict[str, Any] = {}
            for name in names:
                merged = merge_dicts(merged, read_preset(group, name))
            out[section] = merge_dicts(merged, {k: v for k, v in value.items() if k != "preset"})
    return out


def experiment_presets() -> list[str]:
    return available_presets(".")


def apply_overrides(cfg: RunConfig, overrides: Iterable[str]) -> RunConfig:
    """A copy of ``cfg`` with ``key=value`` overrides applied (as :func:`load_run_config` does)."""
    data = merge_dicts(dataclasses.asdict(cfg), _expand_sections(parse_overrides(overrides)))
    return from_mapping(RunConfig, data)


def load_run_config(presets: Iterable[str] = (), overrides: Iterable[str] = ()) -> RunConfig:
    """Compose experiment presets (``configs/*.yaml``) and ``key=value`` overrides."""
    presets = list(presets)
    data: dict[str, Any] = {}
    for name in presets:
        preset = read_preset(".", name)
        if "preset" in preset:
            raise ConfigError(f"preset {name!r} may not set the derived key 'preset'")
        data = merge_dicts(data, _expand_sections(preset))
    data = merge_dicts(data, _expand_sections(parse_overrides(overrides)))
    data["preset"] = "+".join(presets) or "default"
    return from_mapping(RunConfig, data)

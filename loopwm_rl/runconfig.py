"""The configuration of a whole run, online (``train``) or offline (``fit``, ``compare``): env,
model, planner, online training, offline fitting, comparison and logging. One schema, saved as
the run directory's ``config.yaml`` by :mod:`loopwm_rl.rundir`.

Experiment presets live in ``configs/*.yaml``. Inside a section, ``preset: NAME`` (or a list)
first loads ``configs/{group}/NAME.yaml`` for that section (groups: ``env``, ``model``,
``agent`` for the planner), then the section's other keys apply on top. Presets compose left
to right; ``key=value`` overrides (``model.max_loops=4``, ``fit.updates=500``) come last.
``fit`` and ``compare`` also take model presets by bare name (``fit ... stacked small``): a
name found in ``configs/model/`` is a model preset there, any other an experiment preset.
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
COMMANDS = ("train", "fit", "compare")


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    id: str = "Pendulum-v1"
    """A Gymnasium id (``loopwm-rl envs`` lists the suite)."""
    max_episode_steps: int = 0
    """Overrides the registered episode length when > 0."""
    action_repeat: int = 1
    """Env steps per agent decision (rewards summed). Step budgets, evaluation and checkpoint
    intervals still count env steps."""
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Arguments of the env's constructor (``env.kwargs.thrust=1.5``); unknown ones are an
    error naming the valid ones."""


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
    """World-model updates per agent decision after the seed phase (per env step without
    ``env.action_repeat``)."""
    batch_size: int = 64
    horizon: int = 3
    """Transitions per training sequence."""
    lr: float = 1e-3
    grad_clip: float = 1.0
    max_bad_updates: int = 20
    """Updates in a row with a non-finite loss or gradient (each skipped, weights kept) after
    which the run stops with an error; the last checkpoint stays as it was."""
    buffer_size: int = 100_000
    critic: bool = True
    """Learn a latent actor-critic for the planner's terminal value."""
    critic_hidden: int = 128
    critic_tau: float = 0.01
    """Polyak rate of the critic's target Q. It also bounds how fast values grow: after n
    updates a value can reach at most about ``(1 - gamma ** (n * critic_tau)) / (1 - gamma)``
    times the reward rate, so at 0.01 and 5k updates a state that never fails is valued
    like one that fails ~50 steps on (CartPole; BENCHMARKS.md). At 0.05 CartPole's critic
    saturated near 100 instead, no better for the plan; with ``terminal_fraction`` 0.25
    beside it two seeds reached 500 and the third fell (mean 407 at 5k against 404). The
    ``cartpole`` preset uses 0.05 with twenty-step plans; every other preset keeps 0.01."""
    critic_n_step: int = 1
    """Steps of replayed reward in the critic's TD target before it bootstraps (at most
    ``horizon``): a value reaches ``critic_n_step`` steps further back per update."""
    critic_steps: str = "first"
    """Replayed steps the critic learns on: ``first`` (after the burn-in) or ``all`` of each
    sequence. Sequences start anywhere but in an episode's last ``horizon - 1`` steps, so
    with ``first`` and one-step targets a termination never reaches the critic."""
    terminal_fraction: float = 0.0
    """Fraction of each replayed batch's sequences that end on a termination (0: uniform
    sampling, where about 1 / episode length do), and with it every terminating step of a
    batch becomes a one-step critic row. For tasks that end when the agent fails (Hopper):
    the continuation head and the critic learn where episodes end."""
    terminal_priority: float = 0.0
    """With ``terminal_fraction``: draw those terminations by the model's error on them, with
    probability proportional to ``(error + 1e-3) ** terminal_priority`` (0: uniformly). The
    error is the continuation the model still predicts at the termination, imagined along
    the replayed slice under its actions, re-scored every 50 updates (``trainer.PRIORITY_EVERY``; new
    ones count as missed until then). A rare kind of ending the model has not learned is
    then drawn about as often as a common one it has (CartPole: 3 track exits among 34
    terminations at 5k; BENCHMARKS.md)."""
    greedy_episodes: float = 0.0
    """Fraction of the training episodes that plan as evaluation does: no exploration noise,
    the planner's ``eval_action`` (steps of the seed phase still act randomly). Picked evenly by
    episode index, so a resumed run picks the same ones. Their data shows the model the states
    its own noise-free plan drives to, which noisy episodes may never visit. Off in every
    preset: on MountainCar it did not prevent the stall it was tried against (BENCHMARKS.md)."""
    eval_every: int = 1_000
    calibrate_every: int = 0
    """Env steps between resets of the halting threshold to ``model.halting.budget`` on the
    latest replayed transitions (0: ``eval_every``). Its own schedule, so that when or whether
    a run evaluates (``eval_at``, ``eval_episodes``) never changes how it trains."""
    eval_at: tuple[int, ...] = ()
    """Env steps to evaluate at instead of every ``eval_every`` (a benchmark's budget points,
    e.g. ``train.eval_at=1000,2000,5000``)."""
    eval_episodes: int = 3
    frames: str = "auto"
    """Record the frames of each evaluation's first episode (``render_mode="rgb_array"``) for
    the report's filmstrip and a wandb video: ``auto`` for suite envs (they render in numpy),
    ``always`` for any env that can render (others are skipped with a warning), ``never``."""
    checkpoint_every: int = 1_000
    threads: int = 0
    """torch threads; 0: one, measured best for these model sizes (:mod:`loopwm_rl.cores`)."""
    device: str = "cpu"
    runs_dir: str = "runs"

    def __post_init__(self) -> None:
        if self.calibrate_every < 0:
            raise ConfigError(f"train.calibrate_every={self.calibrate_every} must be >= 0 (0: train.eval_every)")


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Offline fitting of a world model on a dataset (``fit``, and each model of ``compare``)."""

    data: str = ""
    """The dataset ``.npz`` (``--data`` sets it)."""
    updates: int = 2000
    batch_size: int = 128
    horizon: int = 3
    """Transitions per training sequence."""
    lr: float = 1e-3
    max_bad_updates: int = 20
    """Updates in a row with a non-finite loss or gradient (each skipped) that stop the fit."""
    val_fraction: float = 0.1
    """Fraction of whole episodes held out for validation and calibration."""
    eval_every: int = 250
    """Updates between validations."""
    seed: int = 0
    threads: int = 0
    """torch threads; 0: one (:mod:`loopwm_rl.cores`)."""
    budget: float | None = None
    """Overrides ``model.halting.budget`` for this fit; an error for the ``fixed`` rule."""
    hard_weight: float = 1.0
    """Sampling weight of training sequences that start on a ``hard`` transition, relative to
    the others (1: uniform); needs the dataset's ``hard`` column."""

    def __post_init__(self) -> None:
        if self.hard_weight <= 0:
            raise ConfigError(f"fit.hard_weight={self.hard_weight} must be > 0")
        if min(self.updates, self.batch_size, self.horizon, self.eval_every, self.max_bad_updates) < 1:
            raise ConfigError(
                "fit.updates, fit.batch_size, fit.horizon, fit.eval_every and fit.max_bad_updates must be >= 1"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"fit.val_fraction={self.val_fraction} must lie in [0, 1)")
        if self.budget is not None and not 0.0 < self.budget <= 1.0:
            raise ConfigError(f"fit.budget={self.budget} must lie in (0, 1]: mean loops as a fraction of the cap")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """Looped vs stacked world models fitted on the same data (``compare``)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    """Each model is fitted once per seed (the seed also picks the validation episodes)."""
    steps: int = 20_000
    """Random-policy transitions collected from ``env.id`` when no ``--data`` is given."""
    models: tuple[str, ...] = ("looped", "looped_fixed", "stacked_1", "stacked_compute", "stacked_depth")
    """Models compared (:mod:`loopwm_rl.compare`); ``name+key=value`` adds model overrides."""
    agent: str = ""
    """An experiment preset (``pendulum``): also train that agent with each world model and
    report its final evaluation return (same agent, budget and seeds)."""
    agent_overrides: tuple[str, ...] = ()
    """Overrides of the agent's experiment (``train.total_steps=2000``)."""
    launcher: str = "local"
    """``local`` (in this process, or ``processes`` at once) or ``ray`` (:mod:`loopwm_rl.jobs`)."""
    processes: int = 1
    """Local launcher: jobs at once, each in a fresh process when > 1."""
    ray_address: str = ""
    """Ray: an existing cluster's address; empty starts a local instance."""
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("compare.seeds must name at least one seed")
        if not self.models:
            raise ConfigError("compare.models must name at least one model")
        if self.steps < 1 or self.processes < 1:
            raise ConfigError(f"compare.steps={self.steps} and compare.processes={self.processes} must be >= 1")
        if self.launcher not in ("local", "ray"):
            raise ConfigError(f"compare.launcher={self.launcher!r} is not one of ['local', 'ray']")
        if self.cpus_per_job <= 0 or self.gpus_per_job < 0:
            raise ConfigError("compare.cpus_per_job must be > 0 and compare.gpus_per_job >= 0")


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
    command: str = "train"
    """Derived: the command that wrote this config (``train``, ``fit`` or ``compare``)."""
    preset: str = ""
    """Derived: the presets this run was composed from."""
    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    model: WorldModelConfig = dataclasses.field(default_factory=WorldModelConfig)
    planner: PlannerConfig = dataclasses.field(default_factory=PlannerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    fit: FitConfig = dataclasses.field(default_factory=FitConfig)
    compare: CompareConfig = dataclasses.field(default_factory=CompareConfig)
    wandb: WandbConfig = dataclasses.field(default_factory=WandbConfig)

    @classmethod
    def for_fit(cls, model: WorldModelConfig, *, wandb: str = "disabled", **fit: Any) -> RunConfig:
        """The config of a ``fit`` from Python: ``RunConfig.for_fit(model_cfg, updates=800, seed=1)``."""
        return cls(command="fit", model=model, fit=FitConfig(**fit), wandb=WandbConfig(mode=wandb))

    def __post_init__(self) -> None:
        if self.command not in COMMANDS:
            raise ConfigError(f"command={self.command!r} is not one of {list(COMMANDS)}")
        t = self.train
        if t.total_steps < 1 or t.seed_steps < 1 or t.seed_steps > t.total_steps:
            raise ConfigError(f"train.seed_steps={t.seed_steps} must lie in [1, train.total_steps={t.total_steps}]")
        if t.horizon < 1 or t.batch_size < 1 or t.utd < 0 or t.max_bad_updates < 1:
            raise ConfigError(
                "train.horizon, train.batch_size and train.max_bad_updates must be >= 1 and train.utd >= 0"
            )
        if not 0.0 <= t.terminal_fraction < 1.0:
            raise ConfigError(f"train.terminal_fraction={t.terminal_fraction} must lie in [0, 1)")
        if t.terminal_priority < 0.0:
            raise ConfigError(f"train.terminal_priority={t.terminal_priority} must be >= 0 (0: uniform)")
        if t.terminal_priority > 0.0 and t.terminal_fraction == 0.0:
            raise ConfigError(
                f"train.terminal_priority={t.terminal_priority} weighs the terminations that "
                "train.terminal_fraction oversamples; set train.terminal_fraction > 0 too"
            )
        if not 0.0 <= t.greedy_episodes <= 1.0:
            raise ConfigError(f"train.greedy_episodes={t.greedy_episodes} must lie in [0, 1]")
        if not 0.0 < t.critic_tau <= 1.0:
            raise ConfigError(f"train.critic_tau={t.critic_tau} must lie in (0, 1]")
        if t.critic_steps not in ("first", "all"):
            raise ConfigError(f"train.critic_steps={t.critic_steps!r} is not one of ['first', 'all']")
        if not 1 <= t.critic_n_step <= t.horizon:
            raise ConfigError(
                f"train.critic_n_step={t.critic_n_step} must lie in [1, train.horizon={t.horizon}]: "
                "the target's rewards come from one replayed sequence"
            )
        if self.env.action_repeat < 1:
            raise ConfigError(f"env.action_repeat={self.env.action_repeat} must be >= 1")
        if t.frames not in ("auto", "always", "never"):
            raise ConfigError(f"train.frames={t.frames!r} is not one of ['auto', 'always', 'never']")
        if t.threads < 0 or self.fit.threads < 0:
            raise ConfigError("train.threads and fit.threads must be >= 0 (0: one thread)")


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


def read_experiment(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """An experiment preset with its sections expanded; ``base: NAME`` first loads another
    experiment preset under it (shared settings of a family of presets)."""
    if name in _seen:
        raise ConfigError(f"preset {name!r} is its own base: {' -> '.join((*_seen, name))}")
    preset = read_preset(".", name)
    for derived in ("preset", "command"):
        if derived in preset:
            raise ConfigError(f"preset {name!r} may not set the derived key {derived!r}")
    base = preset.pop("base", None)
    data = read_experiment(base, (*_seen, name)) if base else {}
    return merge_dicts(data, _expand_sections(preset))


def experiment_presets() -> list[str]:
    return available_presets(".")


def apply_overrides(cfg: RunConfig, overrides: Iterable[str]) -> RunConfig:
    """A copy of ``cfg`` with ``key=value`` overrides applied (as :func:`load_run_config` does)."""
    data = merge_dicts(dataclasses.asdict(cfg), _expand_sections(parse_overrides(overrides)))
    return from_mapping(RunConfig, data)


def load_run_config(presets: Iterable[str] = (), overrides: Iterable[str] = (), *, command: str = "train") -> RunConfig:
    """Compose presets and ``key=value`` overrides into the config of ``command``.

    ``train`` takes experiment presets (``configs/*.yaml``). ``fit`` and ``compare`` take
    model presets by bare name as well (``configs/model/*.yaml``; a name there wins).
    """
    presets = list(presets)
    model_presets = available_presets("model") if command != "train" else []
    data: dict[str, Any] = {}
    for name in presets:
        if name in model_presets:
            data = merge_dicts(data, {"model": read_preset("model", name)})
            continue
        data = merge_dicts(data, read_experiment(name))
    data = merge_dicts(data, _expand_sections(parse_overrides(overrides)))
    data["preset"] = "+".join(presets) or "default"
    data["command"] = command
    return from_mapping(RunConfig, data)

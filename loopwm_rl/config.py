"""Typed, frozen configuration and strict YAML/``key=value`` loading.

Presets live in ``configs/`` (installed as ``loopwm_rl.configs``). A preset is a YAML mapping
whose keys must match dataclass fields exactly; unknown keys and values of the wrong type are
errors that name the key, the value and the valid choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

HALTING_RULES = ("fixed", "convergence", "learned", "act")
LEARNED_OBJECTIVES = ("improve", "gain", "ponder")
MODEL_KINDS = ("looped", "stacked")
TRAIN_LOOPS = ("poisson", "max")
TOKENIZERS = ("auto", "state", "objects", "dims")
READOUTS = ("shared", "loop")
LOOP_GRADIENTS = ("chain", "local")
MEMORIES = ("none", "context")
LOOP_CONDITIONING = ("none", "adaln")


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names it and the valid choices."""


def _choice(name: str, value: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {list(choices)}")


@dataclasses.dataclass(frozen=True)
class HaltingConfig:
    """How many loops a step runs (``LOOPWM_SPEC.md`` §2, §7).

    The defaults are the recommended rule: the learned ``gain`` head, thresholded so that mean
    loops are 20 % of the cap (chosen with ``benchmarks/depth_vs_difficulty.py``; BENCHMARKS.md,
    "Depth vs difficulty").
    """

    rule: str = "learned"
    """``fixed`` | ``convergence`` | ``learned`` | ``act``."""
    tol: float = 0.05
    """convergence: halt once the RMS change of the predicted (normalised) delta between two
    loops falls below this."""
    tau: float = 0.01
    """learned: halt when the predicted error reduction of later loops < tau (``gain``), when
    P(a later loop lowers the error by > eps) < tau (``improve``), or when the PonderNet gate
    lambda_t >= tau (``ponder``)."""
    eps: float = 1e-3
    """learned/improve: an improvement smaller than this (normalised MSE) does not count;
    learned/gain: the scale of the log1p regression target."""
    objective: str = "gain"
    """learned: ``gain`` (how-much-will-later-loops-help head), ``improve``
    (will-another-loop-help head) or ``ponder`` (PonderNet gate)."""
    lambda_p: float = 0.3
    """ponder: parameter of the geometric prior over the halting loop."""
    beta: float = 1e-3
    """ponder: KL weight. Must stay well below the per-loop loss improvement."""
    act_eps: float = 0.01
    """act: halt once the cumulative halting probability reaches 1 - act_eps."""
    ponder_cost: float = 1e-3
    """act: weight of the ponder cost N + R."""
    min_loops: int = 1
    """No rule halts before this many loops (convergence needs 2 to compare)."""
    budget: float | None = 0.2
    """Compute budget: mean loops as a fraction of the loop cap. When set, ``fit`` (on its
    held-out episodes) and ``train`` (on recent replay, before every evaluation) set the rule's
    threshold (tol, tau or act_eps) so that mean loops match it; the configured threshold is
    only the starting value. Ignored by ``fixed``."""

    def __post_init__(self) -> None:
        _choice("halting.rule", self.rule, HALTING_RULES)
        _choice("halting.objective", self.objective, LEARNED_OBJECTIVES)
        if self.min_loops < 1:
            raise ConfigError(f"halting.min_loops={self.min_loops} must be >= 1")
        if not 0.0 < self.lambda_p < 1.0:
            raise ConfigError(f"halting.lambda_p={self.lambda_p} must lie in (0, 1)")
        if self.budget is not None and not 0.0 < self.budget <= 1.0:
            raise ConfigError(f"halting.budget={self.budget} must lie in (0, 1]: mean loops as a fraction of the cap")


@dataclasses.dataclass(frozen=True)
class WorldModelConfig:
    """Architecture and loss weights of a looped or stacked latent world model.

    The defaults are the recommended looped model; presets in ``configs/model/`` state only
    what differs from them.

    ``obs_dim``, ``action_dim`` and ``num_actions`` are derived from the environment or the
    dataset by :meth:`resolve`; a checkpoint stores the resolved config so that the model
    rebuilds from the file alone.
    """

    kind: str = "looped"
    """``looped`` (one shared block applied K times) or ``stacked`` (L distinct blocks)."""
    obs_dim: int = 0
    """Derived: observation size O."""
    action_dim: int = 0
    """Derived: continuous action size A (0 for discrete actions)."""
    num_actions: int = 0
    """Derived: number of discrete actions (0 for continuous actions)."""
    tokenizer: str = "auto"
    """How a step enters the loop (:mod:`loopwm_rl.tokenizers`): ``state`` (one token for the
    whole latent), ``objects`` (one token per object of ``objects``, each predicting its own
    delta), ``dims`` (one token per observation dimension) or ``auto`` (``objects`` where the
    env declares an object layout, else ``state``)."""
    objects: tuple[tuple[int, ...], ...] = ()
    """Derived for suite envs (their ``objects`` attribute): the observation indices of each
    object, read by ``tokenizer: objects``."""
    latent_dim: int = 64
    """Learned features D of the latent z; z also carries the O-dim observation estimate."""
    token_dim: int = 64
    """Width d of each token inside the transformer block."""
    heads: int = 4
    """Attention heads of the block."""
    mlp_ratio: int = 4
    """Hidden width of the block's MLP as a multiple of token_dim."""
    slots: int = 4
    """Learned latent slot tokens; with the state and action tokens S = slots + 2."""
    encoder_hidden: int = 128
    """Hidden width of the observation encoder MLP."""
    head_hidden: int = 0
    """Hidden width of the prediction heads; 0 makes them linear so depth lives in the loop."""
    prelude_layers: int = 0
    """Transformer blocks before the loop. Kept light: a heavy prelude makes loops decorative."""
    max_loops: int = 8
    """Hard cap on loops per step (looped). The stacked model always runs ``blocks`` layers."""
    blocks: int = 1
    """Stacked model: the number L of distinct blocks, each run once."""
    train_loops: str = "max"
    """Training depth (looped): ``poisson`` draws each sequence's loop count from
    Poisson(``mu_rec``) clamped to [1, max_loops]; ``max`` runs every sequence to
    ``max_loops``, so every loop a halting rule may stop at is supervised and seen by the
    halting head (``benchmarks/depth_vs_difficulty.py`` measured it)."""
    mu_rec: float = 4.0
    """Training: mean of the per-sequence Poisson loop count (clamped to [1, max_loops])."""
    mu_bwd: int = 8
    """Training: gradients flow through the last ``mu_bwd`` loops of each sequence."""
    loop_conditioning: str = "none"
    """Looped: ``adaln`` gives the shared block a learned per-loop scale and shift of its two
    normalised inputs (4 * token_dim * max_loops parameters, zero-initialised), so one set of
    weights can act differently at loop 1 (a one-pass prediction) and at later loops
    (refinements); ``none`` runs the identical block every loop. Loops past the cap use the
    last loop's."""
    loop_gradient: str = "chain"
    """Training (looped): ``chain`` backpropagates each loop's loss through the last
    ``mu_bwd`` loops; ``local`` detaches the state entering every loop, so each loop learns
    from its own prediction only: loop 1 as a one-pass model from h = 0, later loops as
    refinements of the state they are given."""
    w_obs: float = 1.0
    w_reward: float = 1.0
    w_cont: float = 0.5
    w_consistency: float = 1.0
    loop_weight_power: float = 1.0
    """Per-loop supervision weight t**power for loop t. 0 weighs every loop equally; then a
    shared block served loop 1 as well as the last and extra loops bought nothing
    (``benchmarks/loops_matter.py``). 1 favours later loops, which then lower the error."""
    first_loop_weight: float = 0.0
    """Loop 1's supervision weight as a fraction of the last loop's (``max(1, f * K**power)``);
    0 keeps ``1**power``. Most steps halt at loop 1 under a small budget, so it is the
    prediction most imagined steps get."""
    w_distill: float = 0.0
    """Weight of self-distillation: every earlier loop's predicted delta regresses on the last
    loop's (detached), beside the targets."""
    zero_delta_head: bool = False
    """Zero-initialise the last layer of the delta heads, so the model starts at "no change"."""
    input_noise: float = 0.0
    """Training: std of Gaussian noise added to each sequence's first observation, in units of
    the observation's scale; its target delta is taken from the noisy input, so the model
    learns to correct its input (GNS)."""
    loop_init_std: float = 1.0
    """Training (looped): std of a random initial loop state h0 for ``loop_init_share`` of the rows (0:
    every row from h0 = 0, as at inference). A block that must reach the answer from any start
    predicts easy steps better at loop 1 too: on Billiards (3 seeds) the 1-loop easy-step error
    fell from 3.2x to 1.5x a one-pass model's (BENCHMARKS.md, "The easy-step floor")."""
    loop_init_share: float = 0.5
    """Training: the share of rows that start from the random h0 of ``loop_init_std``; the
    rest start from h = 0, and the halting head learns from those rows only (it halts loops
    that start from 0 at inference; trained on random starts it lost 0.07-0.15 AUROC)."""
    readout: str = "shared"
    """How loop t's tokens are read out: ``shared`` (one coda and one set of heads for every
    loop) or ``loop`` (the same, after a learned per-loop scale and shift of the tokens, so an
    early exit can be decoded differently from the last loop; 2 * token_dim * loop_cap
    parameters). Loops past the cap (test-time depth) use the last loop's."""
    memory: str = "none"
    """What the latent remembers of the episode (:mod:`loopwm_rl.memory`): ``none`` (z is the
    encoded current observation) or ``context`` (z also carries a GRU context of the episode's
    transitions so far, updated by ``observe`` on every real step, held fixed while imagining
    and added to every token, so dynamics that one observation does not show can be inferred)."""
    context_dim: int = 32
    """Size C of the memory's context (``memory: context``); z is then O + D + C wide."""
    burn_in: int = 16
    """Training with memory: transitions before each training sequence that are only filtered
    (no loss); every row restarts its memory at a random point of this prefix, so it learns
    from histories of 0 to ``burn_in`` steps. Sequences are ``burn_in + horizon`` long.
    Offline (``fit``) a prefix that reaches back past the episode start is padded, so every
    step can start a loss window; online, TorchRL's slice sampler keeps whole slices inside
    an episode, so an episode's first ``burn_in`` steps never start one."""
    memory_lr_scale: float = 1.0
    """Learning-rate multiplier of the memory's parameters (the GRU and its token projection)."""
    decode_every: int = 1
    """Deferred decoding (LoopWM-DD, ``LOOPWM_SPEC.md`` §3): observation, reward and
    continuation are supervised only every ``decode_every``-th imagined step of a training
    sequence and at its last, as the error of the estimate the rollout carried there (drift
    included); the steps between are tied to the data only through ``w_consistency`` and the
    contraction hinge. 1: every step is decoded and supervised (per-step decoding)."""
    decode_curriculum: int = 0
    """Deferred decoding's horizon curriculum: the decode interval grows by one every this many
    updates, from 1 to ``decode_every`` (0: ``decode_every`` from the start). The count is not
    checkpointed: a resumed fit starts the curriculum again."""
    contraction_budget: float = 0.0
    """C_max of the contraction hinge ``max(0, sum_k |f_(k+1) - f_k| - H * C_max)`` on the
    features of a training rollout (0: off)."""
    w_contraction: float = 1.0
    """Weight (beta) of the contraction hinge."""
    rho: float = 0.7
    """Weight rho**k of the k-th step of a training sequence."""
    halting: HaltingConfig = dataclasses.field(default_factory=HaltingConfig)

    def __post_init__(self) -> None:
        _choice("model.kind", self.kind, MODEL_KINDS)
        _choice("model.train_loops", self.train_loops, TRAIN_LOOPS)
        _choice("model.tokenizer", self.tokenizer, TOKENIZERS)
        _choice("model.readout", self.readout, READOUTS)
        _choice("model.loop_gradient", self.loop_gradient, LOOP_GRADIENTS)
        _choice("model.loop_conditioning", self.loop_conditioning, LOOP_CONDITIONING)
        _choice("model.memory", self.memory, MEMORIES)
        if self.decode_every < 1 or self.decode_curriculum < 0 or self.contraction_budget < 0 or self.w_contraction < 0:
            raise ConfigError(
                f"model.decode_every={self.decode_every} must be >= 1; model.decode_curriculum="
                f"{self.decode_curriculum}, model.contraction_budget={self.contraction_budget} and "
                f"model.w_contraction={self.w_contraction} >= 0"
            )
        if self.context_dim < 1 or self.burn_in < 0 or self.memory_lr_scale <= 0:
            raise ConfigError(
                f"model.context_dim={self.context_dim} must be >= 1, model.burn_in={self.burn_in} >= 0 "
                f"and model.memory_lr_scale={self.memory_lr_scale} > 0"
            )
        if self.first_loop_weight < 0 or self.w_distill < 0:
            raise ConfigError(
                f"model.first_loop_weight={self.first_loop_weight} and model.w_distill={self.w_distill} must be >= 0"
            )
        if self.input_noise < 0 or self.loop_init_std < 0:
            raise ConfigError(
                f"model.input_noise={self.input_noise} and model.loop_init_std={self.loop_init_std} must be >= 0"
            )
        if not 0.0 <= self.loop_init_share <= 1.0:
            raise ConfigError(f"model.loop_init_share={self.loop_init_share} must lie in [0, 1]")
        if self.max_loops < 1:
            raise ConfigError(f"model.max_loops={self.max_loops} must be >= 1")
        if self.blocks < 1:
            raise ConfigError(f"model.blocks={self.blocks} must be >= 1")
        if self.token_dim % self.heads:
            raise ConfigError(f"model.token_dim={self.token_dim} must be divisible by model.heads={self.heads}")
        if self.mu_bwd < 1 or self.mu_rec <= 0:
            raise ConfigError(f"model.mu_rec={self.mu_rec} and model.mu_bwd={self.mu_bwd} must be > 0")
        if self.action_dim and self.num_actions:
            raise ConfigError("set model.action_dim (continuous) or model.num_actions (discrete), not both")
        if self.halting.min_loops > self.loop_cap:
            raise ConfigError(f"halting.min_loops={self.halting.min_loops} exceeds the loop cap {self.loop_cap}")

    @property
    def loop_cap(self) -> int:
        """Loops a step may run: ``max_loops`` when looped, ``blocks`` when stacked."""
        return self.max_loops if self.kind == "looped" else self.blocks

    @property
    def train_mean_loops(self) -> float:
        """Mean loops per sequence in training: the depth a test-time scale of 1x refers to."""
        if self.kind == "stacked":
            return float(self.blocks)
        if self.train_loops == "max":
            return float(self.max_loops)
        # E[clamp(Poisson(mu_rec), 1, max_loops)], summed exactly over the clamped support
        pmf = [math.exp(-self.mu_rec + k * math.log(self.mu_rec) - math.lgamma(k + 1)) for k in range(self.max_loops)]
        return pmf[0] * 1 + sum(k * pmf[k] for k in range(1, self.max_loops)) + self.max_loops * (1 - sum(pmf))

    @property
    def state_dim(self) -> int:
        """Size of z: the observation estimate (O), ``latent_dim`` features and, with memory,
        the ``context_dim`` context."""
        return self.obs_dim + self.latent_dim + self.memory_dim

    @property
    def memory_dim(self) -> int:
        """Size C of the context at the end of z (0 without memory)."""
        return self.context_dim if self.memory != "none" else 0

    @property
    def sequence_burn_in(self) -> int:
        """Filtered-only transitions before each training sequence (0 without memory)."""
        return self.burn_in if self.memory != "none" else 0

    @property
    def discrete(self) -> bool:
        return self.num_actions > 0

    @property
    def resolved(self) -> bool:
        return self.obs_dim > 0 and (self.action_dim > 0 or self.num_actions > 0)

    def resolve(
        self,
        *,
        obs_dim: int,
        action_dim: int = 0,
        num_actions: int = 0,
        objects: tuple[tuple[int, ...], ...] | None = None,
    ) -> WorldModelConfig:
        """Return a copy with the data-derived sizes (and the env's object layout, when given)
        filled in; the config itself is frozen."""
        if obs_dim < 1 or (action_dim < 1) == (num_actions < 1):
            raise ConfigError(
                f"resolve needs obs_dim >= 1 and exactly one of action_dim/num_actions >= 1, "
                f"got obs_dim={obs_dim}, action_dim={action_dim}, num_actions={num_actions}"
            )
        layout = self.objects if objects is None else tuple(tuple(int(i) for i in g) for g in objects)
        return dataclasses.replace(
            self, obs_dim=obs_dim, action_dim=action_dim, num_actions=num_actions, objects=layout
        )


# --------------------------------------------------------------------------- loading


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML/CLI value to ``annotation`` or raise a ConfigError naming ``where``."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} expects a mapping of {annotation.__name__} fields, got {value!r}")
        return from_mapping(annotation, value, prefix=f"{where}.")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError("; ".join(errors))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}={value!r} is not a bool (true/false)")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}={value!r} is not an int")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}={value!r} is not an int")
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}={value!r} is not a float")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}={value!r} is not a float") from None
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}={value!r} is not a string")
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} expects a mapping, got {value!r}")
        return dict(value)
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        elif not isinstance(value, list | tuple):  # `compare.seeds=3` means one seed
            value = [value]
        (item,) = typing.get_args(annotation)[:1] or (Any,)
        return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    return value


def from_mapping(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build the frozen dataclass ``cls`` from ``data``, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ConfigError(f"unknown key '{prefix}{key}'{hint}; valid keys: {sorted(fields)}")
        kwargs[key] = _convert(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-serialisable dict of a config dataclass."""
    return dataclasses.asdict(config)


def merge_dicts(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """``["halting.rule=learned", "max_loops=4"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw else ""
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override")
        node[leaf] = value
    return out


def config_dir() -> Path:
    """The folder holding the YAML presets (installed as package data)."""
    return Path(str(resources.files("loopwm_rl.configs")))


def available_presets(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def read_preset(group: str, name: str) -> dict[str, Any]:
    """Read ``configs/{group}/{name}.yaml`` or a YAML file path."""
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = config_dir() / group / f"{name}.yaml"
    if not path.exists():
        choices = available_presets(group)
        close = difflib.get_close_matches(name, choices, n=3)
        hint = f" did you mean {close}?" if close else ""
        label = "experiment" if group == "." else group
        raise ConfigError(f"no {label} preset {name!r};{hint} available: {choices}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping, got {type(data).__name__}")
    return data


def load_model_config(presets: Iterable[str] = (), overrides: Iterable[str] = ()) -> WorldModelConfig:
    """Compose model presets left to right, then apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    for name in presets:
        data = merge_dicts(data, read_preset("model", name))
    data = merge_dicts(data, parse_overrides(overrides))
    return from_mapping(WorldModelConfig, data, prefix="model.")

"""Looped vs stacked world models on the same data and seeds.

Five models by default (``compare.models``), sharing encoders, tokens and heads:

- ``looped``: the config's looped model under its halting rule (calibrated to its budget);
- ``looped_fixed``: the same architecture run to ``max_loops`` K every step;
- ``stacked_1``: one block run once (the looped model's parameters);
- ``stacked_compute``: L = the looped model's mean realised loops (``budget * K``, rounded),
  the same compute;
- ``stacked_depth``: L = K distinct blocks, the same depth at K times the block parameters.

A name may carry model overrides after ``+`` (``looped+decode_every=3``) to add a variant.

Each (model, seed) is one job of :mod:`loopwm_rl.jobs`: it fits on that seed's training
episodes and measures on its held-out ones, writing ``jobs/<model>__s<seed>.json``; a re-run
skips finished jobs, and ``compare.launcher=ray`` fans them out over a Ray cluster. Columns:
parameters, FLOPs per transition (``torch.utils.flop_counter`` on held-out data, so halting
counts what it ran), mean and p95 loops, one-step error (all / hard / easy), the 10-step
open-loop error, the AUROC of loops for ``hard``, fit wall time and, when ``compare.agent``
names an experiment preset, the planning return of that agent with only the world model
swapped.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .checkpoint import load_world_model
from .config import ConfigError, WorldModelConfig, from_mapping, merge_dicts, parse_overrides, to_dict
from .dataset import load_dataset, split_episodes
from .depth import auroc
from .jobs import Job, load_results, run_jobs
from .offline import fit, open_loop_error, score, score_transitions
from .runconfig import RunConfig, apply_overrides, load_run_config
from .rundir import write_config

MODELS = ("looped", "looped_fixed", "stacked_1", "stacked_compute", "stacked_depth")
COLUMNS = [
    "model",
    "key",
    "seed",
    "params",
    "block_params",
    "mflops_per_transition",
    "loops_mean",
    "loops_p95",
    "pred_error",
    "pred_error_hard",
    "pred_error_easy",
    "open_loop_10",
    "auroc_hard",
    "return",
    "fit_s",
    "step_ms_per_1k",
]


def compute_matched_depth(cfg: WorldModelConfig) -> int:
    """Blocks of the same-compute stacked model: the looped model's mean realised loops, which
    calibration sets to ``budget * max_loops`` (without a budget: its mean training depth)."""
    budget = cfg.halting.budget if cfg.halting.rule != "fixed" else None
    loops = budget * cfg.max_loops if budget is not None else cfg.train_mean_loops
    return max(1, round(loops))


def variant(cfg: WorldModelConfig, name: str) -> tuple[str, WorldModelConfig]:
    """(label, config) of one model of the comparison, derived from the looped ``cfg``.

    Raises:
        ConfigError: an unknown model name (listing the known ones) or a bad override.
    """
    base, *overrides = name.split("+")
    fixed = dataclasses.replace(cfg.halting, rule="fixed")
    K, L = cfg.max_loops, compute_matched_depth(cfg)
    known = {
        "looped": ("looped (adaptive)", dataclasses.replace(cfg, kind="looped")),
        "looped_fixed": (f"looped (fixed K={K})", dataclasses.replace(cfg, kind="looped", halting=fixed)),
        "stacked_1": ("stacked (L=1, same params)", dataclasses.replace(cfg, kind="stacked", blocks=1, halting=fixed)),
        "stacked_compute": (
            f"stacked (L={L}, same compute)",
            dataclasses.replace(cfg, kind="stacked", blocks=L, halting=fixed),
        ),
        "stacked_depth": (
            f"stacked (L={K}, same depth)",
            dataclasses.replace(cfg, kind="stacked", blocks=K, halting=fixed),
        ),
    }
    if base not in known:
        raise ConfigError(f"compare.models: unknown model {base!r}; known: {list(known)} (with '+key=value' overrides)")
    label, model = known[base]
    if overrides:
        try:
            model = from_mapping(WorldModelConfig, merge_dicts(to_dict(model), parse_overrides(overrides)))
        except (ConfigError, ValueError) as err:
            raise ConfigError(f"compare.models: {name!r}: {err}") from err
        label = f"{label} + {', '.join(overrides)}"
    return label, model


def measure(model, data: dict, idx: np.ndarray) -> dict[str, float]:
    """Every column a fitted model gets on the held-out rows ``idx``."""
    scores = score_transitions(model, data, idx)
    loops, errors = scores.loops, scores.error
    hard = data["hard"][idx] if "hard" in data else np.zeros(len(idx), bool)
    sample = idx[:1000]
    obs = torch.as_tensor(data["observations"][sample])
    act = torch.as_tensor(data["actions"][sample])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.step(model.encode(obs), act)
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(5):
            model.step(model.encode(obs), act)
    step_ms = (time.perf_counter() - start) / 5 * 1e3 * 1000 / len(sample)
    curve = open_loop_error(model, data, idx, steps=10)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "block_params": model.block_parameters(),
        "mflops_per_transition": counter.get_total_flops() / len(sample) / 1e6,
        "loops_mean": float(loops.mean()),
        "loops_p95": float(np.percentile(loops, 95)),
        "pred_error": float(errors.mean()),
        "pred_error_hard": float(errors[hard].mean()) if hard.any() else float("nan"),
        "pred_error_easy": float(errors[~hard].mean()),
        "open_loop_10": float(curve.mean()) if len(curve) == 10 else float("nan"),
        "auroc_hard": auroc(loops, hard) if hard.any() else float("nan"),
        "step_ms_per_1k": step_ms,
    }


def fit_job(data_path: str, run_config: dict, model: str, seed: int, run_dir: str) -> dict:
    """One job: fit ``model`` (a :data:`MODELS` name) on the seed's training episodes, measure
    it on the held-out ones and, when ``compare.agent`` is set, train that agent with it."""
    cfg = from_mapping(RunConfig, run_config)
    data = load_dataset(data_path)
    label, model_cfg = variant(cfg.model, model)
    _, val = split_episodes(data, cfg.fit.val_fraction, seed)
    # one wandb group per comparison, one run per model and seed
    group = cfg.wandb.group or f"compare-{Path(run_dir).parent.parent.name}"
    fit_cfg = dataclasses.replace(
        cfg,
        command="fit",
        model=model_cfg,
        fit=dataclasses.replace(cfg.fit, seed=seed),
        wandb=dataclasses.replace(cfg.wandb, group=group, name=f"{model}__s{seed}"),
    )
    start = time.perf_counter()
    fit(data, fit_cfg, Path(run_dir), progress=False)
    fit_s = time.perf_counter() - start
    fitted, _ = load_world_model(Path(run_dir) / "model.pt")
    row = {"model": label, "key": model, "seed": seed, "fit_s": fit_s, **measure(fitted, data, np.flatnonzero(val))}
    row["return"] = _planning_return(cfg, model_cfg, seed, Path(run_dir) / "agent") if cfg.compare.agent else None
    return row


def _planning_return(cfg: RunConfig, model_cfg: WorldModelConfig, seed: int, runs_dir: Path) -> float:
    """The final evaluation return of ``compare.agent``'s experiment with this world model, on
    the comparison's env unless ``compare.agent_overrides`` names another."""
    from .trainer import Trainer

    # the fitted model's obs and action sizes come from the comparison's data, so the agent's
    # env must be that env (an agent preset written for another env keeps its planner settings)
    agent = load_run_config([cfg.compare.agent], [f"env.id={cfg.env.id}", *cfg.compare.agent_overrides])
    agent = apply_overrides(agent, [f"train.seed={seed}", f"train.runs_dir={runs_dir}", "wandb.mode=disabled"])
    agent = dataclasses.replace(agent, model=model_cfg)
    runs_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(agent, runs_dir, progress=False)
    write_config(runs_dir, agent)
    return float(trainer.run()["eval/return_mean"])


def grid(cfg: RunConfig, out: Path) -> list[Job]:
    """The comparison's jobs: one per (model, seed)."""
    for name in cfg.compare.models:
        variant(cfg.model, name)  # unknown names fail before anything runs
    return [
        Job(
            name=f"{name}__s{seed}",
            fn="loopwm_rl.compare:fit_job",
            kwargs={
                "data_path": cfg.fit.data,
                "run_config": to_dict(cfg),
                "model": name,
                "seed": seed,
                "run_dir": str(out / "runs" / f"{name}__s{seed}"),
            },
            result=out / "jobs" / f"{name}__s{seed}.json",
            threads=max(1, cfg.fit.threads),
        )
        for name in cfg.compare.models
        for seed in cfg.compare.seeds
    ]


def compare(cfg: RunConfig, out: Path, *, log=print) -> list[dict]:
    """Run (or resume) the comparison's jobs with ``compare.launcher`` and aggregate them into
    ``compare.csv``, ``compare.md`` and the looped model's per-transition ``scores.csv``.
    ``cfg.fit.data`` names the dataset. Raises :class:`ConfigError` for unknown models and
    :class:`~loopwm_rl.jobs.LauncherError` when the launcher cannot run, before any job starts."""
    out.mkdir(parents=True, exist_ok=True)
    write_config(out, cfg)
    c = cfg.compare
    jobs = grid(cfg, out)
    report = run_jobs(
        jobs,
        c.launcher,
        processes=c.processes,
        ray_address=c.ray_address or None,
        cpus_per_job=c.cpus_per_job,
        gpus_per_job=c.gpus_per_job,
        log=log,
    )
    log(report.summary())
    rows = load_results(jobs)
    if not rows:
        raise RuntimeError(f"every compare job failed:\n{report.summary()}")
    with (out / "compare.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "compare.md").write_text(markdown(rows))
    if "looped" in c.models:  # the looped model's per-transition depth, for the report's depth views
        score(out / "runs" / f"looped__s{c.seeds[0]}", load_dataset(cfg.fit.data), out / "scores.csv")
    return rows


def markdown(rows: list[dict]) -> str:
    """Mean (and spread over seeds) per model."""
    with_return = any(r.get("return") is not None for r in rows)
    head = "| model | params (block) | MFLOP / transition | loops (p95) | one-step error | hard | easy | 10-step error"
    head += " | AUROC hard | " + ("return | " if with_return else "") + "fit s |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for name in dict.fromkeys(r["model"] for r in rows):
        group = [r for r in rows if r["model"] == name]

        def stat(key, fmt=".4f", group=group):
            values = np.array([np.nan if r.get(key) is None else r[key] for r in group], dtype=float)
            if np.isnan(values).all():
                return "-"
            if len(values) == 1:
                return f"{values[0]:{fmt}}"
            return f"{np.nanmean(values):{fmt}} ± {np.nanstd(values):{fmt}}"

        cells = [
            name,
            f"{group[0]['params']} ({group[0]['block_params']})",
            stat("mflops_per_transition", ".3f"),
            f"{stat('loops_mean', '.2f')} ({stat('loops_p95', '.1f')})",
            stat("pred_error"),
            stat("pred_error_hard"),
            stat("pred_error_easy"),
            stat("open_loop_10"),
            stat("auroc_hard", ".2f"),
            *([stat("return", ".1f")] if with_return else []),
            stat("fit_s", ".0f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nseeds: {sorted({r['seed'] for r in rows})}\n"

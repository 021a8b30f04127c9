"""Looped vs stacked world models on the same data and seeds.

Three models share encoders, tokens and heads: the looped model of the config, a
parameter-matched stacked model (one block) and a compute-matched stacked model
(the looped model's mean training depth in blocks, rounded). Each is fitted with the
same data split, updates and seeds; the table reports parameters, FLOPs per transition (counted
with ``torch.utils.flop_counter`` on held-out data, so adaptive halting counts what it ran),
held-out one-step error (all / hard / easy), loops and wall time.
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
from .config import WorldModelConfig
from .dataset import split_episodes
from .offline import fit, score, score_transitions
from .runconfig import RunConfig
from .rundir import write_config

COLUMNS = [
    "model",
    "seed",
    "params",
    "block_params",
    "mflops_per_transition",
    "pred_error",
    "pred_error_hard",
    "pred_error_easy",
    "loops_mean",
    "fit_s",
    "step_ms_per_1k",
]


def variants(cfg: WorldModelConfig) -> dict[str, WorldModelConfig]:
    fixed = dataclasses.replace(cfg.halting, rule="fixed")
    depth = max(1, round(cfg.train_mean_loops))
    return {
        "looped": dataclasses.replace(cfg, kind="looped"),
        "stacked (param-matched, L=1)": dataclasses.replace(cfg, kind="stacked", blocks=1, halting=fixed),
        f"stacked (compute-matched, L={depth})": dataclasses.replace(cfg, kind="stacked", blocks=depth, halting=fixed),
    }


def measure(model, data: dict, idx: np.ndarray) -> dict[str, float]:
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
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "block_params": model.block_parameters(),
        "mflops_per_transition": counter.get_total_flops() / len(sample) / 1e6,
        "pred_error": float(errors.mean()),
        "pred_error_hard": float(errors[hard].mean()) if hard.any() else float("nan"),
        "pred_error_easy": float(errors[~hard].mean()),
        "loops_mean": float(loops.mean()),
        "step_ms_per_1k": step_ms,
    }


def compare(data: dict, cfg: RunConfig, out: Path, *, progress: bool = True) -> list[dict]:
    """Fit every variant of ``cfg.model`` on ``data`` for each of ``cfg.compare.seeds`` (as
    ``cfg.fit`` says) and measure it on that seed's held-out episodes. Writes ``config.yaml``,
    one fitted run directory per model and seed, ``compare.csv``, ``compare.md`` and the looped
    model's per-transition ``scores.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    write_config(out, cfg)
    rows = []
    for seed in cfg.compare.seeds:
        _, val = split_episodes(data, cfg.fit.val_fraction, seed)
        idx = np.flatnonzero(val)
        for name, variant in variants(cfg.model).items():
            run = out / f"{name.split(' ')[0]}-{variant.blocks if variant.kind == 'stacked' else 'K'}__seed{seed}"
            fit_section = dataclasses.replace(cfg.fit, seed=seed)
            fit_cfg = dataclasses.replace(cfg, command="fit", model=variant, fit=fit_section)
            start = time.perf_counter()
            fit(data, fit_cfg, run, progress=progress)
            fit_s = time.perf_counter() - start
            model, _ = load_world_model(run / "model.pt")
            rows.append({"model": name, "seed": seed, "fit_s": fit_s, **measure(model, data, idx)})
    with (out / "compare.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "compare.md").write_text(markdown(rows))
    # the looped model's per-transition depth, for the report's depth views
    score(out / f"looped-K__seed{cfg.compare.seeds[0]}", data, out / "scores.csv")
    return rows


def markdown(rows: list[dict]) -> str:
    """Mean (and spread over seeds) per model."""
    lines = [
        "| model | params (block) | MFLOP / transition | one-step error | hard | easy | loops | fit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["model"] for r in rows):
        group = [r for r in rows if r["model"] == name]

        def stat(key, fmt=".4f", group=group):
            values = np.array([r[key] for r in group], dtype=float)
            if len(values) == 1:
                return f"{values[0]:{fmt}}"
            return f"{np.nanmean(values):{fmt}} ± {np.nanstd(values):{fmt}}"

        lines.append(
            f"| {name} | {group[0]['params']} ({group[0]['block_params']}) | {stat('mflops_per_transition', '.3f')}"
            f" | {stat('pred_error')} | {stat('pred_error_hard')} | {stat('pred_error_easy')}"
            f" | {stat('loops_mean', '.2f')} | {stat('fit_s', '.0f')} |"
        )
    return "\n".join(lines) + f"\n\nseeds: {sorted({r['seed'] for r in rows})}\n"

"""Run directories: where ``train``, ``fit`` and ``compare`` write, in one layout.

Every run directory holds ``config.yaml``: the resolved :class:`~loopwm_rl.runconfig.RunConfig`
(its ``command`` field says which command wrote it). A run that calibrates its halting threshold
rewrites ``model.halting`` there, so ``config.yaml`` always shows the threshold in force and a
resume reads it from there. Beside it: ``model.pt`` (``fit``) or ``checkpoints/last.pt`` and
``buffer/`` (``train``), ``metrics.jsonl``, ``report.html`` and, for ``compare``, the table and
one fitted run directory per model and seed.
"""

from __future__ import annotations

import dataclasses
import fcntl
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from .atomic import atomic_path
from .checkpoint import CheckpointError
from .config import ConfigError, HaltingConfig, from_mapping, to_dict
from .runconfig import RunConfig

CONFIG = "config.yaml"
CHECKPOINTS = ("model.pt", "checkpoints/last.pt")


LOCK = ".lock"


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir``'s writer lock, or raise a CheckpointError if a live process holds it.

    An advisory ``flock`` on ``run_dir/.lock``: the kernel drops it when its holder exits,
    however it exits, so a lock left by a killed process never blocks a resume.
    """
    path = Path(run_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise CheckpointError(
                f"{run_dir} is being written by another process (pid {holder}); wait for it to finish "
                "or stop it before writing this run directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


def new_run_dir(cfg: RunConfig) -> Path:
    """A fresh ``{runs_dir}/{env}__{preset}__{seed}__{time}`` folder; never an existing one."""
    env = cfg.env.id.replace("/", "-")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.train.runs_dir) / f"{env}__{cfg.preset}__{cfg.train.seed}__{stamp}"
    path, i = base, 1
    while path.exists():  # never reuse (and so never overwrite) an existing run
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    path.mkdir(parents=True)
    return path


def write_config(run_dir: str | Path, cfg: RunConfig, halting: HaltingConfig | None = None) -> Path:
    """Write ``config.yaml`` atomically; ``halting`` (a calibrated threshold) replaces ``model.halting``."""
    if halting is not None:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, halting=halting))
    path = Path(run_dir) / CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def read_config(run_dir: str | Path) -> RunConfig:
    """The config a run was written with (or an error naming what is wrong with the folder)."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a run directory: {CONFIG} is missing")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CheckpointError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a mapping, got {type(data).__name__}")
    try:
        return from_mapping(RunConfig, data)
    except ConfigError as err:
        raise CheckpointError(f"{path} does not fit this version's config schema: {err}") from err


def find_checkpoint(run: str | Path) -> Path:
    """``model.pt`` of a fit run, ``checkpoints/last.pt`` of a training run, or a file."""
    run = Path(run)
    if run.is_file():
        return run
    for name in CHECKPOINTS:
        if (run / name).is_file():
            return run / name
    raise CheckpointError(f"{run} holds no {' or '.join(CHECKPOINTS)}")


def summary(run_dir: Path, metrics: dict[str, float]) -> str:
    """The lines a command prints when a run ends: return, depth, where the files are."""

    def fmt(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"

    lines = [f"run: {run_dir}"]
    if "eval/return_mean" in metrics:
        lines.append(f"eval return: {fmt('eval/return_mean')} (std {fmt('eval/return_std')})")
    if "fit/val_pred_error" in metrics:
        lines.append(f"validation one-step error: {metrics['fit/val_pred_error']:.4f}")
    lines.append(f"mean loops per step: {fmt('depth/loops_mean')} (p95 {fmt('depth/loops_p95')})")
    if "depth/loops_hard_mean" in metrics or "depth/loops_easy_mean" in metrics:
        lines.append(
            f"loops on hard / easy steps: {fmt('depth/loops_hard_mean')} / {fmt('depth/loops_easy_mean')}"
            f" (AUROC {fmt('depth/auroc_hard')})"
        )
    files = [f"config: {run_dir / CONFIG}", f"metrics: {run_dir / 'metrics.jsonl'}"]
    checkpoint = next((run_dir / name for name in CHECKPOINTS if (run_dir / name).is_file()), None)
    if checkpoint is not None:
        files.append(f"checkpoint: {checkpoint}")
    lines.append("; ".join(files))
    if (run_dir / "report.html").is_file():
        lines.append(f"report: {run_dir / 'report.html'} (open it in a browser; no network needed)")
    return "\n".join(lines)

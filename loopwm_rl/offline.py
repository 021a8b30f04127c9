"""The offline path: fit a world model on a dataset, score each transition's depth."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .atomic import atomic_path
from .calibration import calibrate, set_halting, threshold_field
from .checkpoint import CheckpointError, load_world_model, save_world_model
from .config import WorldModelConfig
from .dataset import SequenceSampler, episode_index, split_episodes
from .depth import depth_summary
from .logger import Logger
from .models import build_world_model
from .outputs import Scores
from .update import make_optimizer, update
from .world_model import WorldModel


def dataset_sizes(data: dict) -> dict[str, int]:
    obs_dim = data["observations"].shape[1]
    if data["actions"].ndim == 1:
        return {"obs_dim": obs_dim, "num_actions": int(data["actions"].max()) + 1}
    return {"obs_dim": obs_dim, "action_dim": data["actions"].shape[1]}


def score_transitions(model: WorldModel, data: dict, idx: np.ndarray, batch: int = 4096, **step_kwargs) -> Scores:
    """:meth:`WorldModel.score` over the dataset rows ``idx``, in chunks of ``batch``."""
    parts = []
    for start in range(0, len(idx), batch):
        rows = idx[start : start + batch]
        obs, act, nxt = (torch.as_tensor(data[k][rows]) for k in ("observations", "actions", "next_observations"))
        parts.append(model.score(obs, act, nxt, **step_kwargs))
    return Scores.cat(parts)


def validate(model: WorldModel, data: dict, idx: np.ndarray) -> dict[str, float]:
    """Held-out one-step error and depth metrics of the transitions ``idx``."""
    was_training = model.training
    model.eval()
    scores = score_transitions(model, data, idx)
    model.train(was_training)
    hard = data["hard"][idx] if "hard" in data else None
    return {"fit/val_pred_error": float(scores.error.mean()), **depth_summary(scores.loops, hard, scores.residuals)}


def fit(
    data: dict,
    model_cfg: WorldModelConfig,
    out_dir: Path,
    *,
    updates: int = 2000,
    batch: int = 128,
    horizon: int = 3,
    lr: float = 1e-3,
    val_fraction: float = 0.1,
    eval_every: int = 250,
    seed: int = 0,
    threads: int = 2,
    env_id: str = "",
    wandb_cfg=None,
    progress: bool = True,
    budget: float | None = None,
) -> dict[str, float]:
    """Train a world model on ``data`` with a held-out episode split; writes ``model.pt``.

    ``budget`` (default: the config's ``halting.budget``): afterwards set the halting threshold
    so that mean loops on the held-out split are ``budget * max_loops``
    (:func:`loopwm_rl.calibration.calibrate`); saved with the model.
    """
    if budget is not None:  # an explicit budget that cannot apply fails before training
        threshold_field(model_cfg.halting)
        dataclasses.replace(model_cfg.halting, budget=budget)  # HaltingConfig checks its range
    elif model_cfg.halting.rule != "fixed":
        budget = model_cfg.halting.budget
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_world_model(model_cfg.resolve(**dataset_sizes(data)))
    train_mask, val_mask = split_episodes(data, val_fraction, seed)
    idx = np.flatnonzero(train_mask)
    model.set_normalization(
        torch.as_tensor(data["observations"][idx]),
        torch.as_tensor(data["next_observations"][idx]),
        torch.as_tensor(data["rewards"][idx]),
    )
    sampler = SequenceSampler(data, train_mask, horizon)
    optimizer = make_optimizer(model, lr=lr)
    logger = Logger(out_dir, {"model": model_cfg.__dict__, "updates": updates}, wandb_cfg) if wandb_cfg else None
    val_idx = np.flatnonzero(val_mask) if val_mask.any() else idx[:2048]
    metrics: dict[str, float] = {}
    bar = tqdm(range(1, updates + 1), desc="fit world model", disable=not progress, unit="update")
    for i in bar:
        metrics = update(model, optimizer, sampler.sample(batch, rng))
        if i % eval_every == 0 or i == updates:
            metrics = {**metrics, **validate(model, data, val_idx)}
            bar.set_postfix(val=f"{metrics['fit/val_pred_error']:.4f}", loops=f"{metrics['depth/loops_mean']:.2f}")
            if logger:
                logger.log(metrics, i)
    meta: dict = {}
    if budget is not None:
        model.eval()
        obs = torch.as_tensor(data["observations"][val_idx])
        halting, loops = calibrate(model, obs, torch.as_tensor(data["actions"][val_idx]), budget)
        set_halting(model, dataclasses.replace(halting, budget=budget))
        meta.update(halting_budget=budget, halting_val_mean_loops=loops)
        metrics = {**metrics, **validate(model, data, val_idx)}
        if logger:
            logger.log(metrics, updates)
    if logger:
        logger.close()
    meta.update(
        {
            "env_id": env_id,
            "updates": updates,
            "val_pred_error": metrics.get("fit/val_pred_error", float("nan")),
        }
    )
    if data["actions"].ndim == 2:
        meta["action_low"] = data["actions"].min(0).tolist()
        meta["action_high"] = data["actions"].max(0).tolist()
    save_world_model(out_dir / "model.pt", model.eval(), meta)
    return metrics


def find_checkpoint(run: str | Path) -> Path:
    """``model.pt`` of a fit run, ``checkpoints/last.pt`` of a training run, or a file."""
    run = Path(run)
    if run.is_file():
        return run
    for candidate in (run / "model.pt", run / "checkpoints" / "last.pt"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{run} holds no model.pt or checkpoints/last.pt")


def score(run: str | Path, data: dict, out: Path) -> dict[str, float]:
    """Write ``index, episode, t, loops, pred_error, hard`` per transition to ``out`` (CSV)."""
    model, _ = load_world_model(find_checkpoint(run))
    sizes = dataset_sizes(data)
    if sizes["obs_dim"] != model.cfg.obs_dim:
        raise CheckpointError(
            f"the dataset has {sizes['obs_dim']}-dim observations; the model expects {model.cfg.obs_dim}"
        )
    idx = np.arange(len(data["observations"]))
    scores = score_transitions(model, data, idx)
    loops, errors = scores.loops, scores.error
    episode, t = episode_index(data)
    hard = data.get("hard")
    with atomic_path(out) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "episode", "t", "loops", "pred_error", "hard"])
        for i in idx:
            writer.writerow([i, episode[i], t[i], loops[i], f"{errors[i]:.6g}", "" if hard is None else int(hard[i])])
    return {"fit/pred_error": float(errors.mean()), **depth_summary(loops, hard, scores.residuals)}

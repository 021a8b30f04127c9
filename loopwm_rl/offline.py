"""The offline path: fit a world model on a dataset, score each transition's depth."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import run_setup
from .atomic import atomic_path
from .calibration import threshold_field
from .checkpoint import CheckpointError, load_world_model, save_world_model
from .config import to_dict
from .dataset import SequenceSampler, dataset_meta, episode_index, split_episodes
from .depth import depth_summary
from .logger import Logger
from .memory import filter_latents
from .models import build_world_model
from .outputs import Scores
from .runconfig import RunConfig
from .rundir import find_checkpoint, write_config
from .update import DivergenceGuard, make_optimizer, update
from .world_model import WorldModel


def score_transitions(model: WorldModel, data: dict, idx: np.ndarray, batch: int = 4096, **step_kwargs) -> Scores:
    """:meth:`WorldModel.score` over the dataset rows ``idx``, in chunks of ``batch``. A model
    with memory scores each row from the latent filtered along its episode up to that row."""
    latents = episode_latents(model, data, idx) if model.cfg.memory != "none" else None
    parts = []
    for start in range(0, len(idx), batch):
        rows = idx[start : start + batch]
        obs, act, nxt = (torch.as_tensor(data[k][rows]) for k in ("observations", "actions", "next_observations"))
        z = None if latents is None else latents[start : start + batch]
        parts.append(model.score(obs, act, nxt, z=z, **step_kwargs))
    return Scores.cat(parts)


@torch.no_grad()
def episode_latents(model: WorldModel, data: dict, idx: np.ndarray) -> torch.Tensor:
    """The latent before each dataset row of ``idx`` (len(idx), S), filtered along the whole
    episode it belongs to (:func:`~loopwm_rl.memory.filter_latents`)."""
    episode, _ = episode_index(data)
    rows = np.flatnonzero(np.isin(episode, np.unique(episode[idx])))  # whole episodes, time order
    obs, act = (torch.as_tensor(data[k][rows]) for k in ("observations", "actions"))
    z = filter_latents(model, obs, act, episode[rows])  # (len(rows), S)
    return z[torch.as_tensor(np.searchsorted(rows, idx))]


def validate(model: WorldModel, data: dict, idx: np.ndarray) -> dict[str, float]:
    """Held-out one-step error and depth metrics of the transitions ``idx``."""
    with model.evaluating():
        scores = score_transitions(model, data, idx)
        few = idx[:512]
        act = torch.as_tensor(data["actions"][few])
        contraction = run_setup.check_contraction(model, episode_latents(model, data, few), act)
    hard = data["hard"][idx] if "hard" in data else None
    return {
        "fit/val_pred_error": float(scores.error.mean()),
        **depth_summary(scores.loops, hard, scores.residuals),
        **contraction,
    }


@torch.no_grad()
def open_loop_error(model: WorldModel, data: dict, idx: np.ndarray, steps: int = 10, windows: int = 512, seed: int = 0):
    """(steps,) mean error of the imagined observation after 1..steps steps (squared, in units
    of the model's delta scale, averaged over dimensions) over ``windows`` random windows of
    the rows ``idx`` that stay inside one episode, imagined from a real observation under the
    logged actions. Empty (0,) when no window fits."""
    episode, _ = episode_index(data)
    idx = np.sort(idx)
    ok = idx[(idx + steps - 1 < len(episode))]
    ok = ok[episode[np.minimum(ok + steps - 1, len(episode) - 1)] == episode[ok]]
    ends = data["terminations"] | data["truncations"]
    ok = ok[[not ends[i : i + steps - 1].any() for i in ok]]
    if len(ok) == 0:
        return np.zeros(0)
    start = np.random.default_rng(seed).choice(ok, size=min(windows, len(ok)), replace=False)
    rows = start[None, :] + np.arange(steps)[:, None]  # (T, B)
    obs0 = torch.as_tensor(data["observations"][start])
    actions = torch.as_tensor(data["actions"][rows])  # (T, B, A) or (T, B)
    truth = torch.as_tensor(data["next_observations"][rows])  # (T, B, O)
    roll = model.imagine(model.encode(obs0), actions)
    err = ((roll.obs - truth) / model.delta_scale).pow(2).mean(-1)  # (T, B)
    return err.mean(1).cpu().numpy()


def fit(data: dict, cfg: RunConfig, out_dir: Path, *, progress: bool = True) -> dict[str, float]:
    """Train ``cfg.model`` on ``data`` as ``cfg.fit`` says, with a held-out episode split; writes
    ``config.yaml``, ``metrics.jsonl`` and ``model.pt`` to ``out_dir``.

    Unless the rule is ``fixed``, the halting threshold is then set so that mean loops on the
    held-out split are ``budget * loop_cap`` (``fit.budget``, else ``model.halting.budget``);
    the calibrated threshold is saved with the model and in ``config.yaml``.
    """
    f, model_cfg = cfg.fit, cfg.model
    if f.budget is not None:
        threshold_field(model_cfg.halting)  # a budget that cannot apply fails before training
        model_cfg = dataclasses.replace(model_cfg, halting=dataclasses.replace(model_cfg.halting, budget=f.budget))
    budget = model_cfg.halting.budget if model_cfg.halting.rule != "fixed" else None
    cfg = dataclasses.replace(cfg, model=model_cfg)
    write_config(out_dir, cfg)
    rng = run_setup.start(f.seed, f.threads)
    sizes = run_setup.sizes_from_data(data)
    model = build_world_model(run_setup.resolve_model(model_cfg, sizes, dataset_meta(data)[0]))
    train_mask, val_mask = split_episodes(data, f.val_fraction, f.seed)
    idx = np.flatnonzero(train_mask)
    model.set_normalization(
        torch.as_tensor(data["observations"][idx]),
        torch.as_tensor(data["next_observations"][idx]),
        torch.as_tensor(data["rewards"][idx]),
    )
    # a model with memory filters a burn-in prefix before each training sequence
    sampler = SequenceSampler(
        data, train_mask, f.horizon, hard_weight=f.hard_weight, burn_in=model.cfg.sequence_burn_in
    )
    optimizer = make_optimizer(model, lr=f.lr)
    logger = Logger(out_dir, to_dict(cfg), cfg.wandb)
    val_idx = np.flatnonzero(val_mask) if val_mask.any() else idx[:2048]
    metrics: dict[str, float] = {}
    guard = DivergenceGuard(f.max_bad_updates)
    bar = tqdm(range(1, f.updates + 1), desc="fit world model", disable=not progress, unit="update")
    try:
        for i in bar:
            metrics = update(model, optimizer, sampler.sample(f.batch_size, rng))
            guard.check(metrics)
            if i % f.eval_every == 0 or i == f.updates:
                metrics = {**metrics, **validate(model, data, val_idx)}
                bar.set_postfix(val=f"{metrics['fit/val_pred_error']:.4f}", loops=f"{metrics['depth/loops_mean']:.2f}")
                logger.log(metrics, i)
        if budget is not None:
            model.eval()
            obs, act = (torch.as_tensor(data[k][val_idx]) for k in ("observations", "actions"))
            z = episode_latents(model, data, val_idx)
            metrics = {**metrics, **run_setup.calibrate_to_budget(model, obs, act, budget, z)}
            metrics = {**metrics, **validate(model, data, val_idx)}
            logger.log(metrics, f.updates)
            write_config(out_dir, cfg, halting=model.cfg.halting)
    finally:
        logger.close()
    env_id, low, high = dataset_meta(data)
    meta = {
        **run_setup.action_meta(env_id or cfg.env.id, low=low, high=high),
        "updates": f.updates,
        "val_pred_error": metrics.get("fit/val_pred_error", float("nan")),
    }
    save_world_model(out_dir / "model.pt", model.eval(), meta)
    return metrics


def score(run: str | Path, data: dict, out: Path) -> dict[str, float]:
    """Write ``index, episode, t, loops, pred_error, hard`` per transition to ``out`` (CSV)."""
    model, _ = load_world_model(find_checkpoint(run))
    sizes = run_setup.sizes_from_data(data)
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

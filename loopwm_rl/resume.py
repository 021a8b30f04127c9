"""What a training run writes to resume from, and how it resumes.

``save`` writes the replay buffer into ``buffer.new``, then the checkpoint (weights, optimisers,
critic, counters, RNG states, the buffer's count and SHA-256) atomically over
``checkpoints/last.pt``, then swaps ``buffer.new`` in and rewrites ``config.yaml``. Killed at any
point (:mod:`loopwm_rl.killpoints` names them), the directory holds a complete checkpoint and a
buffer that matches it; ``load`` finds that buffer, restores everything the checkpoint holds,
and drops the log rows written after it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import killpoints, run_setup
from .atomic import atomic_path, replace_dir
from .calibration import set_halting
from .checkpoint import CheckpointError, read_checkpoint, world_model_payload
from .config import HaltingConfig, from_mapping, to_dict
from .rundir import write_config

if TYPE_CHECKING:
    from .trainer import Trainer

TRAIN_FORMAT = "loopwm-rl/train"


def save(trainer: Trainer) -> Path:
    """The buffer into ``buffer.new``, then model, optimisers, critic, counters, RNG state
    and the buffer's count and checksum atomically over ``checkpoints/last.pt``, then
    ``buffer.new`` swapped in, then ``config.yaml`` with the halting threshold in force.

    Killed at any point, the previous checkpoint or the new one is complete, and a buffer
    whose checksum matches it is on disk (:func:`load` picks it). A write that fails (a
    full disk, a read-only folder) raises a CheckpointError naming the path; the previous
    checkpoint and buffer stay."""
    payload = world_model_payload(trainer.model, run_setup.action_meta(trainer.cfg.env.id, trainer.env.action_space))
    payload.update(
        format=TRAIN_FORMAT,
        run_config=to_dict(trainer.cfg),
        optimizer=trainer.optimizer.state_dict(),
        counters={
            "step": trainer.step,
            "episode": trainer.episode,
            "updates": trainer.updates,
            "wall_s": trainer.wall_s(),
            **{f"{k}_s": v for k, v in trainer.time_s.items() if k != "wall"},
        },
        rng={
            "torch": torch.get_rng_state(),
            "planner": trainer.agent.generator.get_state(),
            "eval_planner": trainer.eval_agent.generator.get_state(),
        },
        wandb_id=trainer.wandb_id or "",
        buffer={"count": len(trainer.replay), "checksum": trainer.replay.checksum()},
    )
    if trainer.critic is not None:
        payload["critic"] = trainer.critic.state_dict()
        payload["critic_opt"] = {
            "q": trainer.critic.q_opt.state_dict(),
            "pi": trainer.critic.pi_opt.state_dict(),
        }
    path = trainer.checkpoint_path
    try:
        trainer.replay.save(trainer.run_dir / "buffer.new")
        killpoints.reach("save:buffer")
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
            killpoints.reach("save:model")
        killpoints.reach("save:swap")
        replace_dir(trainer.run_dir / "buffer.new", trainer.run_dir / "buffer")
        killpoints.reach("save:config")
        write_config(trainer.run_dir, trainer.cfg, halting=trainer.model.cfg.halting)
    except OSError as err:
        raise CheckpointError(
            f"cannot write the checkpoint of {trainer.run_dir}: {err.filename or path}: {err.strerror or err}; "
            "the previous checkpoint and buffer are kept"
        ) from err
    return path


def load(trainer: Trainer) -> None:
    payload = read_checkpoint(trainer.checkpoint_path)
    if payload.get("format") != TRAIN_FORMAT:
        raise CheckpointError(f"{trainer.checkpoint_path} is not a training checkpoint")
    try:
        trainer.model.load_state_dict(payload["state_dict"])
        # the threshold in force when the checkpoint was written (config.yaml may be older)
        set_halting(
            trainer.model, from_mapping(HaltingConfig, payload["model_config"]["halting"], prefix="model.halting.")
        )
        trainer.optimizer.load_state_dict(payload["optimizer"])
        if trainer.critic is not None:
            trainer.critic.load_state_dict(payload["critic"])
            trainer.critic.q_opt.load_state_dict(payload["critic_opt"]["q"])
            trainer.critic.pi_opt.load_state_dict(payload["critic_opt"]["pi"])
    except (RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(f"{trainer.checkpoint_path} does not fit this run's config: {err}") from err
    counters = payload["counters"]
    trainer.step, trainer.episode, trainer.updates = counters["step"], counters["episode"], counters["updates"]
    for key in trainer.time_s:
        trainer.time_s[key] = float(counters.get(f"{key}_s", 0.0))
    torch.set_rng_state(payload["rng"]["torch"])
    trainer.agent.generator.set_state(payload["rng"]["planner"])
    if "eval_planner" in payload["rng"]:  # checkpoints before evaluation had its own agent lack it
        trainer.eval_agent.generator.set_state(payload["rng"]["eval_planner"])
    trainer.wandb_id = payload.get("wandb_id") or None
    _load_buffer(trainer, payload.get("buffer"))
    rows = _truncate_jsonl(trainer.run_dir / "metrics.jsonl", trainer.step)
    _truncate_jsonl(trainer.run_dir / "rollouts.jsonl", trainer.step)
    # an evaluation at the checkpoint's own step already ran: the run need not repeat it
    trainer.last_eval = next(
        (r for r in reversed(rows) if r.get("env_step") == trainer.step and "eval/return_mean" in r), {}
    )
    # the env cannot be restored mid-episode: resume starts a fresh episode
    trainer.rng = np.random.default_rng(trainer.cfg.train.seed + trainer.step)
    trainer.env.action_space.seed(trainer.cfg.train.seed + trainer.step)


def _load_buffer(trainer: Trainer, record: dict | None) -> None:
    """The saved buffer whose count and checksum match the checkpoint's ``record``: the
    swapped-in one, or the new or old one a kill mid-save left (checkpoints made before
    records existed take ``buffer``)."""
    for name in ("buffer", "buffer.new", "buffer.old"):
        folder = trainer.run_dir / name
        if not folder.is_dir():
            continue
        # the run's own sampling settings (terminal_fraction too: a fresh default buffer
        # silently dropped the oversampling for the rest of a resumed run)
        replay = trainer.replay.empty_like()
        replay.load(folder)
        if record is None or (len(replay) == record["count"] and replay.checksum() == record["checksum"]):
            trainer.replay = replay
            if name != "buffer":
                replace_dir(folder, trainer.run_dir / "buffer")
            return
        if record is None:
            break
    wanted = "" if record is None else f" matching the checkpoint ({record['count']} transitions)"
    raise CheckpointError(f"{trainer.run_dir} has no replay buffer{wanted}: it cannot be restored")


def _truncate_jsonl(path: Path, step: int) -> list[dict]:
    """Drop the rows logged after env step ``step`` (the part of a killed run its checkpoint
    does not hold), so a resumed run logs those steps once; returns the rows kept."""
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = [json.loads(line) for line in lines]
    kept = [(line, row) for line, row in zip(lines, rows, strict=True) if row.get("env_step", 0) <= step]
    if len(kept) != len(lines):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(f"{line}\n" for line, _ in kept))
    return [row for _, row in kept]

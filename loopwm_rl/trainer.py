"""Online training: act with the planner, store transitions, fit the world model (and the
critic), evaluate, checkpoint. ``loopwm-rl train`` is a thin wrapper over :class:`Trainer`."""

from __future__ import annotations

import math
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import yaml
from gymnasium import spaces
from tqdm import tqdm

from loopwm_rl.agents import ActorCritic, PlanningAgent
from loopwm_rl.envs import EnvError, make_env

from .calibration import calibrate, set_halting, threshold_field
from .checkpoint import CheckpointError, atomic_save, read_checkpoint, world_model_payload
from .config import WorldModelConfig, from_mapping, to_dict
from .depth import depth_summary
from .logger import Logger
from .models import build_world_model
from .replay import SequenceReplay
from .runconfig import RunConfig
from .update import make_optimizer, update

TRAIN_FORMAT = "loopwm-rl/train"


def env_kwargs(cfg: RunConfig) -> dict:
    return {"max_episode_steps": cfg.env.max_episode_steps} if cfg.env.max_episode_steps > 0 else {}


def space_sizes(env: gym.Env) -> dict[str, int]:
    """obs_dim and action_dim/num_actions of an env, or an EnvError naming the space."""
    obs, act = env.observation_space, env.action_space
    if not (isinstance(obs, spaces.Box) and len(obs.shape) == 1):
        raise EnvError(f"observation space {obs} is not supported: expected a 1-D Box")
    if isinstance(act, spaces.Discrete):
        return {"obs_dim": obs.shape[0], "num_actions": int(act.n)}
    if isinstance(act, spaces.Box) and len(act.shape) == 1:
        return {"obs_dim": obs.shape[0], "action_dim": act.shape[0]}
    raise EnvError(f"action space {act} is not supported: expected Discrete(n) or a 1-D Box")


def action_meta(env: gym.Env, env_id: str) -> dict:
    meta = {"env_id": env_id}
    if isinstance(env.action_space, spaces.Box):
        meta["action_low"] = env.action_space.low.tolist()
        meta["action_high"] = env.action_space.high.tolist()
    return meta


class Trainer:
    """Owns the env, world model, optimiser, critic, planner, replay buffer and logger of a run."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, *, progress: bool = True) -> None:
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        t = cfg.train
        torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed)
        self.device = torch.device(t.device)
        self.env = make_env(cfg.env.id, **env_kwargs(cfg))
        self.eval_env = make_env(cfg.env.id, **env_kwargs(cfg))
        self.env.action_space.seed(t.seed)
        model_cfg = cfg.model.resolve(**space_sizes(self.env))
        self.model = build_world_model(model_cfg).to(self.device)
        self.optimizer = make_optimizer(self.model, lr=t.lr)
        self.critic = None
        if t.critic:
            dim = model_cfg.num_actions if model_cfg.discrete else model_cfg.action_dim
            self.critic = ActorCritic(model_cfg.state_dim, dim, discrete=model_cfg.discrete, hidden=t.critic_hidden)
            self.critic.to(self.device)
        self.agent = PlanningAgent(
            self.model, self.env.action_space, cfg.planner, self.critic, seed=t.seed, device=self.device
        )
        self.replay = SequenceReplay(t.buffer_size, t.horizon, t.batch_size, seed=t.seed)
        self.rng = np.random.default_rng(t.seed)
        self.step = self.episode = self.updates = 0
        self._update_credit = 0.0
        self.wall_s = 0.0  # training wall time, carried across resumes
        self.last_eval: dict[str, float] = {}
        self.wandb_id: str | None = None

    # ------------------------------------------------------------------ persistence

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def save(self) -> Path:
        """Model, optimisers, critic, counters and RNG state (atomically), then the buffer."""
        payload = world_model_payload(self.model, action_meta(self.env, self.cfg.env.id))
        payload.update(
            format=TRAIN_FORMAT,
            run_config=to_dict(self.cfg),
            optimizer=self.optimizer.state_dict(),
            counters={"step": self.step, "episode": self.episode, "updates": self.updates, "wall_s": self.wall_s},
            rng={"torch": torch.get_rng_state(), "planner": self.agent.generator.get_state()},
            wandb_id=self.wandb_id or "",
        )
        if self.critic is not None:
            payload["critic"] = self.critic.state_dict()
            payload["critic_opt"] = {
                "q": self.critic.q_opt.state_dict(),
                "pi": self.critic.pi_opt.state_dict(),
            }
        self.replay.save(self.run_dir / "buffer")
        return atomic_save(payload, self.checkpoint_path)

    def load(self) -> None:
        payload = read_checkpoint(self.checkpoint_path)
        if payload.get("format") != TRAIN_FORMAT:
            raise CheckpointError(f"{self.checkpoint_path} is not a training checkpoint")
        try:
            self.model.load_state_dict(payload["state_dict"])
            saved = from_mapping(WorldModelConfig, payload["model_config"], prefix="model.")
            if saved.halting.budget is not None and saved.halting.rule == self.model.cfg.halting.rule:
                set_halting(self.model, saved.halting)  # the threshold calibrated before the stop
            self.optimizer.load_state_dict(payload["optimizer"])
            if self.critic is not None:
                self.critic.load_state_dict(payload["critic"])
                self.critic.q_opt.load_state_dict(payload["critic_opt"]["q"])
                self.critic.pi_opt.load_state_dict(payload["critic_opt"]["pi"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(f"{self.checkpoint_path} does not fit this run's config: {err}") from err
        counters = payload["counters"]
        self.step, self.episode, self.updates = counters["step"], counters["episode"], counters["updates"]
        self.wall_s = float(counters.get("wall_s", 0.0))
        torch.set_rng_state(payload["rng"]["torch"])
        self.agent.generator.set_state(payload["rng"]["planner"])
        self.wandb_id = payload.get("wandb_id") or None
        buffer = self.run_dir / "buffer"
        if not buffer.exists():
            raise CheckpointError(f"{buffer} is missing: the replay buffer cannot be restored")
        self.replay.load(buffer)
        # the env cannot be restored mid-episode: resume starts a fresh episode
        self.rng = np.random.default_rng(self.cfg.train.seed + self.step)
        self.env.action_space.seed(self.cfg.train.seed + self.step)

    # ------------------------------------------------------------------ learning

    def _set_normalization(self) -> None:
        td = self.replay.transitions()
        self.model.set_normalization(td["obs"], td["next_obs"], td["reward"])

    def _update(self) -> dict[str, float]:
        batch = self.replay.sample().to(self.device)
        metrics = update(self.model, self.optimizer, batch, grad_clip=self.cfg.train.grad_clip)
        if self.critic is not None:
            with torch.no_grad():
                z = self.model.encode(batch.obs[0])
                z_next = self.model.encode(batch.obs[1])
            metrics.update(
                self.critic.update(
                    z,
                    batch.actions[0],
                    batch.rewards[0],
                    1.0 - batch.terminated[0].float(),
                    z_next,
                    self.cfg.planner.gamma,
                )
            )
        self.updates += 1
        return metrics

    def _calibrate_halting(self) -> dict[str, float]:
        """Reset the halting threshold to ``halting.budget`` on the latest replayed transitions
        (the model changes as it trains, and so do the thresholds that meet a budget)."""
        halting = self.model.cfg.halting
        if halting.budget is None or halting.rule == "fixed":
            return {}
        obs, action = self.replay.latest(2048)
        calibrated, loops = calibrate(self.model, obs.to(self.device), action.to(self.device), halting.budget)
        set_halting(self.model, calibrated)
        field, _ = threshold_field(calibrated)
        return {"depth/threshold": getattr(calibrated, field), "depth/calibrated_loops_mean": loops}

    def _seed_phase_done(self) -> dict[str, float]:
        self._set_normalization()
        metrics: dict[str, float] = {}
        bar = tqdm(
            range(self.cfg.train.pretrain_updates),
            desc="pretrain world model",
            disable=not self.progress,
            leave=False,
        )
        for _ in bar:
            metrics = self._update()
        return {**metrics, **self._calibrate_halting()}

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Episodes with the evaluation action; also scores the model's one-step depth on
        every real transition (loops, prediction error, hard label)."""
        calibration = self._calibrate_halting()
        returns, loops, hard, errors, residuals, plan = [], [], [], [], [], []
        self.model.eval()
        for ep in range(self.cfg.train.eval_episodes):
            obs, _ = self.eval_env.reset(seed=10_000 + ep)
            self.agent.reset()
            total, done, trace = 0.0, False, []
            while not done:
                action, stats = self.agent.act(obs, eval=True)
                nxt, reward, terminated, truncated, info = self.eval_env.step(action)
                scores = self.model.score(*self._as_batch(obs, action, nxt))
                trace.append(
                    {
                        "step": len(trace),
                        "loops": int(scores.loops[0]),
                        "hard": bool(info.get("hard", False)),
                        "reward": float(reward),
                        "pred_error": float(scores.error[0]),
                    }
                )
                residuals.append(scores.residuals[0])
                plan.append(stats.as_metrics())
                total += reward
                obs, done = nxt, terminated or truncated
            returns.append(total)
            loops += [r["loops"] for r in trace]
            hard += [r["hard"] for r in trace]
            errors += [r["pred_error"] for r in trace]
            if ep == 0:
                self.logger.log_depth_trace(trace, self.step, self.model.cfg.loop_cap)
        self.model.train()
        has_hard = any(hard) or "LoopWM/" in self.cfg.env.id
        cap = self.model.cfg.loop_cap
        metrics = {
            "depth/loops_hist": np.bincount(np.array(loops), minlength=cap + 1)[1:].tolist(),
            "eval/return_mean": float(np.mean(returns)),
            "eval/return_std": float(np.std(returns)),
            "eval/pred_error": float(np.mean(errors)),
            "depth/retention_max": float(self.model.retention().max()),
            **depth_summary(np.array(loops), np.array(hard) if has_hard else None, np.stack(residuals)),
            **{k: float(np.mean([p[k] for p in plan])) for k in plan[0]},
            **calibration,
        }
        self.last_eval = metrics
        return metrics

    def _as_batch(self, obs, action, next_obs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One real transition as the model's batch of 1: obs (1, O), action (1, A) or (1,), next obs (1, O)."""
        as_obs = lambda x: torch.as_tensor(np.asarray(x, np.float32), device=self.device)[None]  # noqa: E731
        act = torch.tensor([int(action)], device=self.device) if self.model.cfg.discrete else as_obs(action)
        return as_obs(obs), act, as_obs(next_obs)

    # ------------------------------------------------------------------ the loop

    def run(self) -> dict[str, float]:
        t = self.cfg.train
        self.logger = Logger(self.run_dir, to_dict(self.cfg), self.cfg.wandb, run_id=self.wandb_id)
        self.wandb_id = self.logger.run_id
        obs, _ = self.env.reset(seed=t.seed + self.episode)
        self.agent.reset()
        ep_return, ep_len, ep_loops = 0.0, 0, []
        start, start_step = time.perf_counter(), self.step
        bar = tqdm(
            total=t.total_steps,
            initial=self.step,
            desc=f"train {self.cfg.env.id}",
            unit="step",
            disable=not self.progress,
        )
        try:
            while self.step < t.total_steps:
                if self.step < t.seed_steps:
                    action = self.env.action_space.sample()
                else:
                    action, stats = self.agent.act(obs)
                    ep_loops.append(stats.loops_mean)
                nxt, reward, terminated, truncated, _ = self.env.step(action)
                self.replay.add(obs, action, reward, nxt, terminated, self.episode)
                self.step += 1
                ep_return += reward
                ep_len += 1
                obs = nxt
                if terminated or truncated:
                    episode_metrics = {
                        "train/return": ep_return,
                        "train/length": ep_len,
                        "train/episode": self.episode,
                    }
                    if ep_loops:
                        episode_metrics["plan/loops_mean"] = float(np.mean(ep_loops))
                    self.logger.log(episode_metrics, self.step)
                    bar.set_postfix(ret=f"{ep_return:.1f}", loops=f"{np.mean(ep_loops) if ep_loops else 0:.2f}")
                    self.episode += 1
                    obs, _ = self.env.reset(seed=t.seed + self.episode)
                    self.agent.reset()
                    ep_return, ep_len, ep_loops = 0.0, 0, []
                metrics: dict[str, float] = {}
                if self.step == t.seed_steps:
                    metrics = self._seed_phase_done()
                elif self.step > t.seed_steps:
                    self._update_credit += t.utd
                    while self._update_credit >= 1.0:
                        metrics = self._update()
                        self._update_credit -= 1.0
                if metrics and self.step % 50 == 0:
                    self.logger.log(
                        {
                            **metrics,
                            "train/updates": self.updates,
                            "train/steps_per_s": (self.step - start_step) / (time.perf_counter() - start),
                        },
                        self.step,
                    )
                if self.step % t.eval_every == 0 and self.step >= t.seed_steps:
                    wall = self.wall_s + time.perf_counter() - start
                    self.logger.log({**self.evaluate(), "train/wall_s": wall}, self.step)
                if self.step % t.checkpoint_every == 0 or self.step == t.total_steps:
                    self.save()
                bar.update(1)
            if not self.last_eval:  # the run ended before its first scheduled evaluation
                self.logger.log(self.evaluate(), self.step)
        finally:
            bar.close()
            self.logger.close()
            self.wall_s += time.perf_counter() - start
        self._write_report()
        return self.last_eval

    def _write_report(self) -> None:
        from .report import ReportError, write_report

        try:
            self.report_path = write_report(self.run_dir)
        except ReportError as err:  # a run stopped before its first evaluation has no depth data yet
            self.report_path = None
            print(f"no report written: {err}")


# ---------------------------------------------------------------------- run directories


def new_run_dir(cfg: RunConfig) -> Path:
    env = cfg.env.id.replace("/", "-")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.train.runs_dir) / f"{env}__{cfg.preset}__{cfg.train.seed}__{stamp}"
    path, i = base, 1
    while path.exists():  # never reuse (and so never overwrite) an existing run
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    path.mkdir(parents=True)
    return path


def save_config(cfg: RunConfig, run_dir: Path) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def read_run_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a run directory: {path.name} is missing")
    data = yaml.safe_load(path.read_text())
    return from_mapping(RunConfig, data)


def summary(run_dir: Path, metrics: dict[str, float]) -> str:
    def fmt(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"

    lines = [
        f"run: {run_dir}",
        f"eval return: {fmt('eval/return_mean')} (std {fmt('eval/return_std')})",
        f"mean loops per step: {fmt('depth/loops_mean')} (p95 {fmt('depth/loops_p95')})",
    ]
    if "depth/loops_hard_mean" in metrics or "depth/loops_easy_mean" in metrics:
        lines.append(
            f"loops on hard / easy steps: {fmt('depth/loops_hard_mean')} / {fmt('depth/loops_easy_mean')}"
            f" (AUROC {fmt('depth/auroc_hard')})"
        )
    lines.append(f"metrics: {run_dir / 'metrics.jsonl'}; checkpoint: {run_dir / 'checkpoints' / 'last.pt'}")
    if (run_dir / "report.html").is_file():
        lines.append(f"report: {run_dir / 'report.html'} (open it in a browser; no network needed)")
    return "\n".join(lines)

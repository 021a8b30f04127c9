"""Online training: act with the planner, store transitions, fit the world model (and the
critic), evaluate, checkpoint. ``loopwm-rl train`` is a thin wrapper over :class:`Trainer`."""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from loopwm_rl.agents import ActorCritic, PlanningAgent
from loopwm_rl.envs import SUITE, make_env

from . import killpoints, resume, run_setup
from .atomic import atomic_path
from .batch import SequenceBatch
from .calibration import threshold_of
from .config import to_dict
from .depth import depth_summary
from .frames import annotate, write_gif
from .logger import Logger
from .memory import filter_latents, filter_prefix
from .models import build_world_model
from .replay import SequenceReplay
from .runconfig import RunConfig
from .rundir import read_config
from .update import DivergenceGuard, make_optimizer, update

# updates between re-scorings of the stored terminations (``train.terminal_priority``): one
# no-grad rollout over them, about the cost of one update's forward pass for a few hundred
PRIORITY_EVERY = 50


def env_kwargs(cfg: RunConfig) -> dict:
    kwargs = dict(cfg.env.kwargs)
    if cfg.env.max_episode_steps > 0:
        kwargs["max_episode_steps"] = cfg.env.max_episode_steps
    return {**kwargs, "action_repeat": cfg.env.action_repeat} if cfg.env.action_repeat != 1 else kwargs


def _eval_env(cfg: RunConfig) -> tuple[gym.Env, bool]:
    """The evaluation env, rendering ``rgb_array`` frames when ``train.frames`` asks for them
    and the env can; returns it and whether it renders."""
    mode = cfg.train.frames
    if mode == "never" or (mode == "auto" and cfg.env.id not in SUITE):
        return make_env(cfg.env.id, **env_kwargs(cfg)), False
    try:
        env = make_env(cfg.env.id, render_mode="rgb_array", **env_kwargs(cfg))
        env.reset(seed=0)
        if not isinstance(env.render(), np.ndarray):
            raise RuntimeError("render() returned no image")
        return env, True
    except Exception as err:  # renderers fail in many ways (no display, no OpenGL, no rgb_array)
        warnings.warn(f"{cfg.env.id} cannot render frames ({err}); evaluation records none", stacklevel=3)
        return make_env(cfg.env.id, **env_kwargs(cfg)), False


class Trainer:
    """Owns the env, world model, optimiser, critic, planner, replay buffer and logger of a run."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, *, progress: bool = True) -> None:
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        t = cfg.train
        run_setup.start(t.seed, t.threads)
        self.device = torch.device(t.device)
        self.env = make_env(cfg.env.id, **env_kwargs(cfg))
        self.eval_env, self.frames = _eval_env(cfg)
        self.env.action_space.seed(t.seed)
        sizes = run_setup.sizes_from_spaces(self.env.observation_space, self.env.action_space)
        model_cfg = run_setup.resolve_model(cfg.model, sizes, self.env)
        self.model = build_world_model(model_cfg).to(self.device)
        self.optimizer = make_optimizer(self.model, lr=t.lr)
        self.critic = None
        if t.critic:
            dim = model_cfg.num_actions if model_cfg.discrete else model_cfg.action_dim
            self.critic = ActorCritic(
                model_cfg.state_dim, dim, discrete=model_cfg.discrete, hidden=t.critic_hidden, tau=t.critic_tau
            )
            self.critic.to(self.device)
        self.agent = PlanningAgent(
            self.model, self.env.action_space, cfg.planner, self.critic, seed=t.seed, device=self.device
        )
        # evaluation plans with its own agent: its warm starts and random draws never leak into
        # the training episode it interrupts (and a resumed run can match an uninterrupted one)
        self.eval_agent = PlanningAgent(
            self.model, self.eval_env.action_space, cfg.planner, self.critic, seed=t.seed + 1, device=self.device
        )
        # a model with memory filters a burn-in prefix before each training sequence
        self.replay = SequenceReplay(
            t.buffer_size,
            t.horizon + model_cfg.sequence_burn_in,
            t.batch_size,
            seed=t.seed,
            terminal_fraction=t.terminal_fraction,
            terminal_priority=t.terminal_priority,
        )
        self.rng = np.random.default_rng(t.seed)
        self.guard = DivergenceGuard(t.max_bad_updates)
        self.step = self.episode = self.updates = 0
        self._update_credit = 0.0
        self._termination_scores: dict[str, float] = {}
        # seconds spent planning (act), stepping the env, updating and evaluating, and the run's
        # wall time; carried across resumes
        self.time_s = dict.fromkeys(("act", "env", "update", "eval", "wall"), 0.0)
        self._run_start: float | None = None
        self.last_eval: dict[str, float] = {}
        self.wandb_id: str | None = None

    # ------------------------------------------------------------------ persistence

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def save(self) -> Path:
        """Checkpoint the run (:func:`loopwm_rl.resume.save`)."""
        return resume.save(self)

    def load(self) -> None:
        """Restore the run from its last complete checkpoint (:func:`loopwm_rl.resume.load`)."""
        resume.load(self)

    @classmethod
    def from_run(cls, run_dir: str | Path) -> Trainer:
        """A finished or stopped run, restored from its saved config and last checkpoint, for
        inspection (no progress bars). Raises :class:`~loopwm_rl.checkpoint.CheckpointError`
        on a missing or corrupt checkpoint, as :meth:`load` does."""
        trainer = cls(read_config(run_dir), run_dir, progress=False)
        trainer.load()
        return trainer

    @contextmanager
    def _timed(self, key: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.time_s[key] += time.perf_counter() - start

    def wall_s(self) -> float:
        """Wall time of the run so far, resumed sessions included."""
        running = time.perf_counter() - self._run_start if self._run_start is not None else 0.0
        return self.time_s["wall"] + running

    # ------------------------------------------------------------------ learning

    def _set_normalization(self) -> None:
        td = self.replay.transitions()
        self.model.set_normalization(td["obs"], td["next_obs"], td["reward"])

    def _update(self) -> dict[str, float]:
        batch = self.replay.sample().to(self.device)
        metrics = update(self.model, self.optimizer, batch, grad_clip=self.cfg.train.grad_clip)
        killpoints.reach("wm_update")
        if self.critic is not None and not metrics["guard/skipped"]:
            metrics.update(self._critic_update(batch))
            killpoints.reach("critic_update")
        # once per update, on the world model's and the critic's metrics together: a good
        # world-model step must not reset the count of a critic that keeps diverging
        self.guard.check(metrics)
        self.updates += 1
        if self.cfg.train.terminal_priority > 0 and self.updates % PRIORITY_EVERY == 0:
            _, _, cont = self.score_terminations()
            if len(cont):
                self._termination_scores = {
                    "train/terminal_cont_mean": float(cont.mean()),
                    "train/terminal_cont_max": float(cont.max()),
                }
        return {**metrics, **self._termination_scores}  # the latest scores ride on every row

    @torch.no_grad()
    def score_terminations(self) -> tuple[torch.Tensor, SequenceBatch, torch.Tensor]:
        """Set each stored termination's sampling priority to the continuation the model
        still predicts there: imagined along its replayed slice (after the burn-in) under
        the slice's actions, at the planner's adaptive depth. Returns the terminations'
        storage indices (N,), their slices (a SequenceBatch of N rows) and the
        continuations (N,)."""
        ends, batch = self.replay.terminal_sequences()
        if not len(ends):
            return ends, batch, torch.zeros(0)
        n = self.model.cfg.sequence_burn_in
        on_device = batch.to(self.device)
        with self.model.evaluating():
            z = filter_prefix(self.model, on_device.obs, on_device.actions, n)  # (N, S)
            cont = self.model.imagine(z, on_device.actions[n:]).cont[-1].cpu()  # (N,) at the terminating step
        self.replay.set_priorities(ends, cont)
        return ends, batch, cont

    def _critic_update(self, batch) -> dict[str, float]:
        """One critic step on the replayed sequences: TD targets from the first step after the
        burn-in (``train.critic_steps=first``) or from every one (``all``: an episode's last
        steps too, the only place a termination shows), each over up to ``critic_n_step``
        replayed rewards, cut where the sequence ends. With ``train.terminal_fraction`` > 0
        every terminating step of the batch is a one-step row too (its target is its reward):
        ``first`` alone never reaches one."""
        t = self.cfg.train
        n, T = self.model.cfg.sequence_burn_in, batch.rewards.shape[0]
        M = t.critic_n_step  # <= train.horizon, so one start always has M steps
        starts = range(n, T) if t.critic_steps == "all" else range(n, n + 1)
        ends = []  # steps past the first whose terminations the rows above miss
        if t.terminal_fraction > 0 and t.critic_steps == "first":
            ends = [k for k in range(n + 1, T) if bool(batch.terminated[k].any())]
        last = max(starts[-1] + M, ends[-1] + 1 if ends else 0)
        with torch.no_grad():
            zs = [filter_prefix(self.model, batch.obs, batch.actions, n)]  # zs[i]: before step n + i
            for k in range(n, min(T, last)):  # replayed steps stay inside one episode
                zs.append(self.model.observe(zs[-1], batch.actions[k], batch.obs[k + 1]))
        cont = 1.0 - batch.terminated.float()  # (T, B)
        parts: dict[str, list[torch.Tensor]] = {"z": [], "a": [], "r": [], "c": [], "z_next": [], "m": []}

        def add_rows(k: int, m: int, rows: torch.Tensor | slice = slice(None)) -> None:
            """Rows starting at replayed step ``k`` with ``m`` steps of reward, for batch ``rows``."""
            pad = (0, 0, 0, M - m)  # (M, rows); n_step_return ignores the entries past ``steps``
            parts["z"].append(zs[k - n][rows])
            parts["a"].append(batch.actions[k][rows])
            parts["r"].append(F.pad(batch.rewards[k : k + m, rows], pad))
            parts["c"].append(F.pad(cont[k : k + m, rows], pad))
            parts["z_next"].append(zs[k - n + m][rows])
            parts["m"].append(torch.full((len(parts["z"][-1]),), m, dtype=torch.long, device=batch.rewards.device))

        for k in starts:
            add_rows(k, min(M, T - k))
        for k in ends:
            add_rows(k, 1, batch.terminated[k])
        c = torch.cat(parts["c"], 1)  # (M, rows)
        metrics = self.critic.update(
            torch.cat(parts["z"]),
            torch.cat(parts["a"]),
            torch.cat(parts["r"], 1),
            c,
            torch.cat(parts["z_next"]),
            self.cfg.planner.gamma,
            steps=torch.cat(parts["m"]),
        )
        if t.terminal_fraction > 0:  # rows whose first step ends the episode (either critic_steps)
            metrics["train/terminal_rows"] = float((c[0] == 0).sum())
        return metrics

    def _recent(self, n: int = 2048) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last ``n`` replayed transitions: observations, actions and the latents filtered
        along their episodes (the first one's history starts inside the window)."""
        obs, action, episode = self.replay.latest(n)
        obs, action = obs.to(self.device), action.to(self.device)
        return obs, action, filter_latents(self.model, obs, action, episode)

    def _calibrate_halting(self, recent: tuple[torch.Tensor, ...] | None = None) -> dict[str, float]:
        """Reset the halting threshold to ``halting.budget`` on the latest replayed transitions
        (the model changes as it trains, and so do the thresholds that meet a budget)."""
        if not self._budgeted():
            return {}
        obs, action, z = recent if recent is not None else self._recent()
        return run_setup.calibrate_to_budget(self.model, obs, action, self.model.cfg.halting.budget, z)

    def _budgeted(self) -> bool:
        """Whether the halting threshold follows ``halting.budget`` (the fixed rule has none)."""
        halting = self.model.cfg.halting
        return halting.budget is not None and halting.rule != "fixed"

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
        # reads the threshold in force and never sets it: evaluating must not change training
        _, action, z = self._recent(512)
        calibration = run_setup.check_contraction(self.model, z, action)
        if self._budgeted():
            calibration["depth/threshold"] = threshold_of(self.model.cfg.halting)
        returns, residuals, plan, all_steps = [], [], [], []
        with self.model.evaluating():
            frames: list[np.ndarray] = []
            for ep in range(self.cfg.train.eval_episodes):
                obs, _ = self.eval_env.reset(seed=10_000 + ep)
                self.eval_agent.reset()
                total, done, trace = 0.0, False, []
                z = None  # the episode's latent as the model filters it (re-encoded without memory)
                while not done:
                    if self.frames and ep == 0:
                        frames.append(self.eval_env.render())  # the frame this step starts from
                    action, stats = self.eval_agent.act(obs, eval=True)
                    nxt, reward, terminated, truncated, info = self.eval_env.step(action)
                    obs_t, act_t, nxt_t = self._as_batch(obs, action, nxt)
                    z = self.model.encode(obs_t) if z is None else z
                    scores = self.model.score(obs_t, act_t, nxt_t, z=z)
                    z = self.model.observe(z, act_t, nxt_t)
                    killpoints.reach("eval")
                    step_record = {
                        "step": len(trace),
                        "loops": int(scores.loops[0]),
                        "hard": bool(info.get("hard", False)),
                        "reward": float(reward),
                        "pred_error": float(scores.error[0]),
                        # the relative latent change at each loop run: the report's convergence by class
                        "residuals": [round(float(r), 5) for r in scores.residuals[0][: int(scores.loops[0])]],
                    }
                    if "events" in info:
                        step_record["events"] = int(info["events"])
                    trace.append(step_record)
                    residuals.append(scores.residuals[0])
                    plan.append(stats.as_metrics())
                    total += reward
                    obs, done = nxt, terminated or truncated
                returns.append(total)
                all_steps += trace
                self.logger.log_depth_trace(trace, self.step, self.model.cfg.loop_cap, episode=ep)
                if ep == 0 and frames:
                    self._save_frames(frames, trace)
        self.logger.log_depth_views(all_steps, self.step)
        loops = np.array([s["loops"] for s in all_steps])
        hard = np.array([s["hard"] for s in all_steps])
        has_hard = hard.any() or "LoopWM/" in self.cfg.env.id
        cap = self.model.cfg.loop_cap
        metrics = {
            "depth/loops_hist": np.bincount(loops, minlength=cap + 1)[1:].tolist(),
            "eval/return_mean": float(np.mean(returns)),
            "eval/return_std": float(np.std(returns)),
            "eval/pred_error": float(np.mean([s["pred_error"] for s in all_steps])),
            "depth/retention_max": float(self.model.retention().max()),
            **depth_summary(loops, hard if has_hard else None, np.stack(residuals)),
            **{k: float(np.mean([p[k] for p in plan])) for k in plan[0]},
            **calibration,
        }
        self.last_eval = metrics
        return metrics

    def _save_frames(self, frames: list[np.ndarray], trace: list[dict]) -> None:
        """The last evaluation's first episode: raw frames for the report's filmstrip
        (``frames/last_eval.npz``) and, annotated with loops, a GIF for wandb."""
        folder = self.run_dir / "frames"
        folder.mkdir(exist_ok=True)
        with atomic_path(folder / "last_eval.npz", suffix=".npz") as tmp:
            np.savez_compressed(tmp, frames=np.stack(frames), env_step=self.step)
        cap = self.model.cfg.loop_cap
        clip = [annotate(f, s["loops"], cap, s["hard"]) for f, s in zip(frames, trace, strict=True)]
        with atomic_path(folder / "last_eval.gif", suffix=".gif") as tmp:
            write_gif(clip, tmp)
        self.logger.log_video(folder / "last_eval.gif", self.step)

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
        self._run_start = start
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
                    action = self.agent.seed_action()
                else:
                    with self._timed("act"):
                        action, stats = self.agent.act(obs, eval=greedy_episode(self.episode, t.greedy_episodes))
                    ep_loops.append(stats.loops_mean)
                with self._timed("env"):
                    nxt, reward, terminated, truncated, info = self.env.step(action)
                killpoints.reach("collect")
                self.replay.add(obs, action, reward, nxt, terminated, self.episode)
                prev = self.step
                taken = int(info.get("env_steps", 1))  # > 1 with env.action_repeat
                self.step += taken
                crossed = lambda every, prev=prev: prev // every != self.step // every  # noqa: E731
                ep_return += reward
                ep_len += taken
                obs = nxt
                if terminated or truncated:
                    episode_metrics = {
                        "train/return": ep_return,
                        "train/length": ep_len,
                        "train/episode": self.episode,
                    }
                    if t.greedy_episodes > 0:  # 1: it planned noise-free (seed-phase steps never do)
                        picked = greedy_episode(self.episode, t.greedy_episodes)
                        episode_metrics["train/greedy"] = float(picked and bool(ep_loops))
                    if ep_loops:
                        episode_metrics["plan/loops_mean"] = float(np.mean(ep_loops))
                    self.logger.log(episode_metrics, self.step)
                    bar.set_postfix(ret=f"{ep_return:.1f}", loops=f"{np.mean(ep_loops) if ep_loops else 0:.2f}")
                    self.episode += 1
                    obs, _ = self.env.reset(seed=t.seed + self.episode)
                    self.agent.reset()
                    ep_return, ep_len, ep_loops = 0.0, 0, []
                metrics: dict[str, float] = {}
                if prev < t.seed_steps <= self.step:
                    with self._timed("update"):
                        metrics = self._seed_phase_done()
                elif self.step > t.seed_steps:
                    self._update_credit += t.utd
                    with self._timed("update"):
                        while self._update_credit >= 1.0:
                            metrics = self._update()
                            self._update_credit -= 1.0
                if metrics and crossed(50):
                    self.logger.log(
                        {
                            **metrics,
                            "train/updates": self.updates,
                            "train/skipped_updates": self.guard.skipped,
                            "train/steps_per_s": (self.step - start_step) / (time.perf_counter() - start),
                        },
                        self.step,
                    )
                if crossed(t.calibrate_every or t.eval_every) and self.step >= t.seed_steps:
                    with self._timed("update"):
                        calibration = self._calibrate_halting()  # {} for the fixed rule: no row
                    if calibration:
                        self.logger.log(calibration, self.step)
                due = any(prev < s <= self.step for s in t.eval_at) if t.eval_at else crossed(t.eval_every)
                if due and self.step >= t.seed_steps:
                    with self._timed("eval"):
                        metrics = self.evaluate()
                    self.logger.log({**metrics, **self.timing()}, self.step)
                if crossed(t.checkpoint_every) or self.step >= t.total_steps:
                    self.save()
                bar.update(taken)
            if not self.last_eval:  # the run ended before its first scheduled evaluation
                self.logger.log(self.evaluate(), self.step)
        finally:
            bar.close()
            self.logger.close()
            self.time_s["wall"] = self.wall_s()
            self._run_start = None
        self._write_report()
        return self.last_eval

    def timing(self) -> dict[str, float]:
        """Where the run's time went: ``train/wall_s`` (evaluations included) and
        ``time/{act,env,update,eval}_s``, cumulative seconds."""
        return {"train/wall_s": self.wall_s(), **{f"time/{k}_s": v for k, v in self.time_s.items() if k != "wall"}}

    def _write_report(self) -> None:
        from .report import ReportError, write_report

        try:
            self.report_path = write_report(self.run_dir)
        except ReportError as err:  # a run stopped before its first evaluation has no depth data yet
            self.report_path = None
            print(f"no report written: {err}")


def greedy_episode(episode: int, fraction: float) -> bool:
    """Whether training episode ``episode`` acts as evaluation does (``train.greedy_episodes``):
    those whose index carries ``fraction * episodes`` past an integer, so that exactly
    ``floor(n * fraction)`` of the first n are, evenly spaced, and a resumed run picks the same."""
    return fraction > 0 and int((episode + 1) * fraction) > int(episode * fraction)

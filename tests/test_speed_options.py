"""The speed options of training and planning: action repeat, warm-start iterations, eval_at."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch

from loopwm_rl.agents.config import PlannerConfig
from loopwm_rl.agents.trajectory import TrajectoryOptimizer
from loopwm_rl.cli import main
from loopwm_rl.config import ConfigError
from loopwm_rl.envs import make_env
from loopwm_rl.envs.repeat import ActionRepeat
from loopwm_rl.runconfig import load_run_config


def test_action_repeat_sums_rewards_and_counts_env_steps():
    plain, repeated = make_env("Pendulum-v1"), make_env("Pendulum-v1", action_repeat=3)
    plain.reset(seed=0)
    repeated.reset(seed=0)
    action = plain.action_space.sample() * 0 + 0.5
    total = sum(plain.step(action)[1] for _ in range(3))
    obs, reward, _, _, info = repeated.step(action)
    assert info["env_steps"] == 3
    assert reward == pytest.approx(total)
    assert obs.dtype == plain.observation_space.dtype


def test_action_repeat_stops_at_the_end_of_an_episode():
    env = ActionRepeat(gym.make("CartPole-v1"), 1000)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(1)  # always pushing right falls over
    assert terminated or truncated
    assert info["env_steps"] == reward < 1000


def test_bad_action_repeat_is_rejected():
    with pytest.raises(ValueError, match="action_repeat must be an integer >= 1"):
        ActionRepeat(gym.make("CartPole-v1"), 0)
    with pytest.raises(ConfigError, match=r"env\.action_repeat=0"):
        load_run_config(["pendulum", "debug"], ["env.action_repeat=0"])
    with pytest.raises(ConfigError, match="warm_iterations=-1"):
        PlannerConfig(warm_iterations=-1)


def test_warm_started_plans_use_warm_iterations():
    cfg = PlannerConfig(horizon=3, samples=16, elites=4, iterations=5, warm_iterations=2)
    opt = TrajectoryOptimizer(cfg, gym.spaces.Box(-1, 1, (2,)))
    calls = []

    def objective(actions):
        calls.append(actions.shape)
        return -actions.pow(2).sum((0, 2))

    opt.plan(objective, torch.Generator().manual_seed(0))
    assert len(calls) == 5  # cold start: the full count
    calls.clear()
    opt.plan(objective, torch.Generator().manual_seed(0))
    assert len(calls) == 2
    opt.reset()
    calls.clear()
    opt.plan(objective, torch.Generator().manual_seed(0))
    assert len(calls) == 5


def test_training_with_action_repeat_counts_env_steps_and_evaluates_at_budgets(tmp_path):
    args = ["train", "pendulum", "debug", f"train.runs_dir={tmp_path}", "--quiet", "env.action_repeat=2"]
    args += ["train.total_steps=240", "train.eval_at=150,240", "train.checkpoint_every=1000"]
    assert main(args) == 0
    (run,) = tmp_path.iterdir()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_step"] for r in rows if "eval/return_mean" in r] == [150, 240]
    evals = [r for r in rows if "eval/return_mean" in r]
    for r in evals:  # the parts add up to less than the whole
        parts = [r[f"time/{k}_s"] for k in ("act", "env", "update", "eval")]
        assert all(p > 0 for p in parts) and sum(parts) <= r["train/wall_s"]
    # episodes of 50 env steps are 25 decisions; their logged length counts env steps
    assert {r["train/length"] for r in rows if "train/length" in r} == {50}

"""benchmarks/plan_search_gap.py: every sequence is scored, and none of the planner's beats the best."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from loopwm_rl import build_world_model, load_model_config
from loopwm_rl.agents import ActorCritic, PlannerConfig, PlanningAgent


@pytest.fixture(scope="module")
def gap(load_benchmark):
    return load_benchmark("plan_search_gap")


def test_all_sequences_are_every_sequence_once_time_major(gap):
    seqs = gap.all_sequences(3, 4)
    assert seqs.shape == (4, 81) and seqs.dtype == torch.int64
    assert len({tuple(c) for c in seqs.T.tolist()}) == 81
    assert int(seqs.min()) == 0 and int(seqs.max()) == 2


def test_the_exhaustive_best_bounds_the_planners_plan_and_splits_by_first_action(gap):
    torch.manual_seed(0)
    cfg = load_model_config(["looped", "debug"], ["halting.rule=fixed"]).resolve(obs_dim=4, num_actions=3)
    model = build_world_model(cfg).eval()
    critic = ActorCritic(cfg.state_dim, 3, hidden=16, discrete=True)
    planner = PlannerConfig(horizon=3, samples=8, elites=2, iterations=2)
    agent = PlanningAgent(model, gym.spaces.Discrete(3), planner, critic, seed=0)
    agent.reset()
    _, stats = agent.act(np.random.randn(4).astype(np.float32), eval=True)
    result = gap.search_gap(agent.objective, gap.all_sequences(3, 3), 3)
    # the planner's candidates are among the 27 sequences, scored by the same objective
    assert result["best_value"] >= stats.plan_value - 1e-5
    assert max(result["best_by_first_action"]) == pytest.approx(result["best_value"])
    assert result["best_sequence"][0] == int(np.argmax(result["best_by_first_action"]))
    assert len(result["best_end_obs"]) == 4


def test_a_planner_that_caps_or_screens_depth_is_refused(gap):
    gap.check_planner(PlannerConfig())  # full depth: accepted
    for planner in (PlannerConfig(loop_budget=10_000), PlannerConfig(screen_loops=2)):
        with pytest.raises(SystemExit, match="full depth"):
            gap.check_planner(planner)

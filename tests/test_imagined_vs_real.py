"""benchmarks/imagined_vs_real.py: real rollouts from a set state, imagined ones weighted by survival."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from loopwm_rl import build_world_model, load_model_config
from loopwm_rl.agents import ActorCritic


@pytest.fixture(scope="module")
def check(load_benchmark):
    return load_benchmark("imagined_vs_real")


def test_a_real_rollout_starts_from_the_state_it_is_given(check):
    env = gym.make("MountainCarContinuous-v0")
    # a full push from 0.4 at rest crests in a dozen steps: +100 less the pushes' cost
    crest = check.real_rollout(env, np.array([0.4, 0.0]), np.ones(1, np.float32), 50, 1.0)
    assert crest["terminated_at"] is not None and crest["return"] > 95
    # no push from the valley floor: nothing is paid, nothing ends
    still = check.real_rollout(env, np.array([-0.5236, 0.0]), np.zeros(1, np.float32), 50, 1.0)
    assert still == {"return": 0.0, "terminated_at": None}
    with pytest.raises(SystemExit, match="need 2 numbers"):
        check.real_rollout(env, np.array([0.4]), np.ones(1, np.float32), 5, 1.0)


def test_the_imagined_return_weights_each_reward_by_the_chance_of_being_alive_before_it(check):
    torch.manual_seed(0)
    cfg = load_model_config(["looped", "debug"], ["halting.rule=fixed"]).resolve(obs_dim=2, action_dim=1)
    model = build_world_model(cfg).eval()
    critic = ActorCritic(cfg.state_dim, 1, hidden=16)
    obs, action = np.array([0.1, -0.2], np.float32), np.full(1, 0.5, np.float32)
    got = check.imagined_rollout(model, critic, obs, action, 4, 0.9)
    with torch.no_grad():  # by hand, one step at a time
        z, alive, total = model.encode(torch.as_tensor(obs)[None]), 1.0, 0.0
        for t in range(4):
            out = model.step(z, torch.as_tensor(action)[None])
            total += 0.9**t * alive * float(out.reward[0])
            alive *= float(out.cont[0])
            z = out.z
    assert got["return"] == pytest.approx(total, rel=1e-5, abs=1e-5)
    assert got["value"] == pytest.approx(float(critic.value(model.encode(torch.as_tensor(obs)[None]))))

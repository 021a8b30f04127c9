"""benchmarks/termination_trace.py: the survival column is a product of continuation probabilities."""

from __future__ import annotations

import itertools

import pytest
import torch

from loopwm_rl import build_world_model, load_model_config
from loopwm_rl.agents import ActorCritic


@pytest.fixture(scope="module")
def trace(load_benchmark):
    return load_benchmark("termination_trace")


def test_survival_is_the_product_of_the_rollouts_continuations_and_never_grows(trace):
    torch.manual_seed(0)
    cfg = load_model_config(["looped", "debug"], ["halting.rule=fixed"]).resolve(obs_dim=4, action_dim=2)
    model = build_world_model(cfg).eval()
    critic = ActorCritic(cfg.state_dim, 2, hidden=16)
    z = model.encode(torch.randn(5, 4))
    alive = [trace.survival(model, critic, z, k) for k in range(4)]
    assert torch.equal(alive[0], torch.ones(5))
    for shorter, longer in itertools.pairwise(alive):
        assert (longer <= shorter + 1e-7).all() and (longer > 0).all()
    with torch.no_grad():  # by hand: one imagined step under the noise-free prior
        first = model.step(z, critic.policy(z, sample=False)).cont.reshape(-1)
    torch.testing.assert_close(alive[1], first)

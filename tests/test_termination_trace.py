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


def test_drift_is_the_open_loop_prediction_under_the_taken_actions_minus_the_real_observation(trace):
    torch.manual_seed(0)
    cfg = load_model_config(["looped", "debug"], ["halting.rule=fixed"]).resolve(obs_dim=3, action_dim=2)
    model = build_world_model(cfg).eval()
    T, k = 6, 3
    seen = torch.randn(T + 1, 3)  # (T + 1, O)
    actions = torch.rand(T, 2) * 2 - 1  # (T, A)
    z = model.encode(seen[:-1])  # (T, S): no memory, so every latent is its observation's
    errors = trace.drift(model, z, actions, seen, k)
    assert errors.shape == (T - k + 1, 3)
    with torch.no_grad():  # by hand from the second start: three steps under actions 1, 2, 3
        zt = z[1:2]
        for a in actions[1:4]:
            out = model.step(zt, a[None])
            zt = out.z
    torch.testing.assert_close(errors[1], out.obs[0] - seen[4])
    with pytest.raises(ValueError, match="between 1"):
        trace.drift(model, z, actions, seen, T + 1)
    with pytest.raises(ValueError, match="observations"):
        trace.drift(model, z, actions, seen[:-1], k)

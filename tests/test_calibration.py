"""Compute-budget calibration of halting thresholds, the ``gain`` head and the training depth."""

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_world_model import O, actions_for, make

from loopwm_rl.calibration import THRESHOLDS, calibrate, set_halting
from loopwm_rl.checkpoint import load_world_model, save_world_model
from loopwm_rl.config import HaltingConfig


def mean_loops(model, obs, act, halting) -> float:
    with torch.no_grad():
        return float(model.step(model.encode(obs), act, halting=halting).loops.float().mean())


def inputs(model, n=256, seed=0):
    torch.manual_seed(seed)
    return torch.randn(n, O) * 2, actions_for(model, n)


@settings(max_examples=8, deadline=None)
@given(budget=st.floats(0.3, 1.0))
def test_convergence_calibration_returns_the_candidate_closest_to_the_budget(budget):
    model = make(overrides=["halting.rule=learned", "max_loops=6"]).eval()
    obs, act = inputs(model)
    halting, loops = calibrate(model, obs, act, budget, rule="convergence")
    assert halting.rule == "convergence"
    assert loops == pytest.approx(mean_loops(model, obs, act, halting))
    target = budget * 6
    for tol in THRESHOLDS[("convergence", None)][1][::6]:
        other = mean_loops(model, obs, act, dataclasses.replace(halting, tol=float(tol)))
        assert abs(loops - target) <= abs(other - target) + 1e-9


def test_gain_calibration_sets_tau_and_survives_a_checkpoint(tmp_path):
    model = make(overrides=["halting.rule=learned", "halting.objective=gain", "max_loops=6"]).eval()
    with torch.no_grad():  # a head whose predicted gain varies across rows and loops
        for p in model.halting.parameters():
            p.add_(torch.randn_like(p))
        obs, act = inputs(model)
        per = model.step(model.encode(obs), act, halting="fixed", keep_loops=True).per_loop
        model.halting.head.net[-1].bias -= model.halting.head(per.features).median()
    halting, loops = calibrate(model, obs, act, 0.5)
    assert halting.rule == "learned" and halting.objective == "gain"
    assert 1.0 < loops < 6.0, "a median-centred head should be able to hit half the cap"
    set_halting(model, halting)
    assert model.cfg.halting.tau == halting.tau and model.halting.cfg.tau == halting.tau
    save_world_model(tmp_path / "m.pt", model)
    loaded, _ = load_world_model(tmp_path / "m.pt")
    assert loaded.cfg.halting.tau == halting.tau
    assert torch.equal(loaded.step(loaded.encode(obs), act).loops, model.step(model.encode(obs), act).loops)


@pytest.mark.parametrize("budget", [0.0, -0.1, 1.5])
def test_budget_outside_unit_interval_is_named(budget):
    model = make(overrides=["halting.rule=learned"])
    obs, act = inputs(model, 8)
    with pytest.raises(ValueError, match=f"budget={budget}"):
        calibrate(model, obs, act, budget)


def test_fixed_rule_has_no_threshold_and_rules_cannot_be_swapped():
    model = make(overrides=["halting.rule=fixed"])
    obs, act = inputs(model, 8)
    with pytest.raises(ValueError, match="no threshold to calibrate"):
        calibrate(model, obs, act, 0.5)
    learned = make(overrides=["halting.rule=learned", "halting.objective=gain"])
    with pytest.raises(ValueError, match="cannot switch its saved rule"):
        set_halting(learned, HaltingConfig(rule="learned", objective="improve"))


def test_gain_targets_are_the_best_later_improvement():
    model = make(overrides=["halting.rule=learned", "halting.objective=gain"])
    losses = torch.tensor([[1.0, 0.5, 0.49, 0.2], [0.3, 0.3, 0.3, 0.3]])
    valid = torch.tensor([[True, True, True, True], [True, True, True, False]])
    _, metrics = model.halting.loss(losses, valid, torch.zeros(2, 4, model.feature_dim))
    # row 0: 1.0-0.2, 0.5-0.2, 0.49-0.2; row 1 (3 valid loops): 0, 0; the last valid loop has no target
    assert metrics["halting/mean_gain"] == pytest.approx((0.8 + 0.3 + 0.29) / 5)


def test_gain_head_learns_to_rank_rows_by_their_gain():
    model = make(overrides=["halting.rule=learned", "halting.objective=gain"])
    torch.manual_seed(0)
    B, K, F = 512, 4, model.feature_dim
    hard = torch.rand(B) < 0.2
    features = torch.randn(B, K, F)
    features[..., 0] = hard[:, None].float() * 2 - 1
    # hard rows: error falls 1.0 -> 0.1 over the loops; easy rows: flat 0.01 plus noise
    losses = torch.where(hard[:, None], torch.linspace(1.0, 0.1, K), 0.01 + 0.001 * torch.rand(B, K))
    valid = torch.ones(B, K, dtype=torch.bool)
    opt = torch.optim.Adam(model.halting.parameters(), lr=3e-3)
    for _ in range(300):
        loss, _ = model.halting.loss(losses, valid, features)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        gain = model.halting.predicted_gain(features[:, 0])
    assert float(gain[hard].min()) > float(gain[~hard].max())


def test_train_loops_max_runs_and_supervises_every_loop():
    model = make(overrides=["max_loops=5", "train_loops=max", "mu_bwd=5"])
    sched = model.train_schedule(64)
    assert torch.all(sched.stop_at == 5) and torch.all(sched.detach_at == 0)
    assert model.cfg.train_mean_loops == 5.0
    per = model.step(model.encode(torch.randn(64, O)), actions_for(model, 64), schedule=sched, keep_loops=True)
    assert bool(model.supervised(per.per_loop.valid, sched).all())


def test_poisson_train_mean_loops_matches_the_schedule():
    model = make(overrides=["max_loops=5", "train_loops=poisson", "mu_rec=3"])
    stop = model.train_schedule(50_000, torch.Generator().manual_seed(0)).stop_at.float()
    assert model.cfg.train_mean_loops == pytest.approx(float(stop.mean()), abs=0.03)


def test_an_unreachable_budget_warns_with_the_loops_it_got():
    model = make(overrides=["halting.rule=learned", "max_loops=6"]).eval()
    obs, act = inputs(model, 64)
    # convergence compares two loops: it cannot average 0.3 loops
    with pytest.warns(UserWarning, match="asks for 0.30 mean loops"):
        _, loops = calibrate(model, obs, act, 0.05, rule="convergence")
    assert loops >= 2.0

"""Halting rules: ACT's weights, the learned heads' targets, training only from detached
losses, and thresholds overridden without touching the trained head."""

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_world_model import O, actions_for, batch_for, make

from loopwm_rl.config import HaltingConfig
from loopwm_rl.halting import LoopReadout, make_halting


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), cap=st.integers(1, 8), bias=st.floats(-4.0, 2.0))
def test_act_weights_sum_to_one_at_the_halting_loop(seed, cap, bias):
    """Per-loop outputs all equal to 1 make ACT's mean field equal to the sum of its weights,
    which must be exactly 1 at the loop where each row halts (h_t before it, R on it)."""
    torch.manual_seed(seed)
    n, F = 16, 6
    rule = make_halting(HaltingConfig(rule="act", act_eps=0.01), F)
    with torch.no_grad():
        rule.head.net[-1].bias.fill_(bias)
    state, total, halted = rule.start(n, torch.zeros(n)), torch.full((n,), float("nan")), torch.zeros(n, dtype=bool)
    for t in range(1, cap + 1):
        ones = torch.ones(n)
        out = LoopReadout(
            z=ones[:, None],
            delta=ones[:, None],
            reward=ones,
            cont_logit=ones,
            change=ones[:, None],
            features=torch.randn(n, F),
        )
        halt, emitted = rule.decide(t, cap, out, state)
        newly = halt & ~halted
        total[newly] = emitted["reward"][newly]
        halted |= halt
    assert bool(halted.all())
    assert torch.allclose(total, torch.ones(n), atol=1e-5), total


def test_act_mean_field_lies_between_the_loops_outputs():
    model = make(overrides=["halting.rule=act", "max_loops=4"])
    with torch.no_grad():
        model.halting.head.net[-1].bias.fill_(-2.0)  # small h: most rows reach the cap
    z = model.encode(torch.randn(8, O))
    a = actions_for(model, 8)
    out = model.step(z, a)
    per = model.step(z, a, halting="fixed", keep_loops=True).per_loop
    # the mean-field delta lies inside the convex hull of the per-loop deltas
    lo, hi = per.delta.min(0).values, per.delta.max(0).values
    assert torch.all(out.delta >= lo - 1e-5) and torch.all(out.delta <= hi + 1e-5)


def test_learned_improve_targets():
    model = make(overrides=["halting.rule=learned", "halting.objective=improve", "halting.eps=0.01"])
    losses = torch.tensor([[1.0, 0.5, 0.49, 0.2], [0.3, 0.3, 0.3, 0.3]])
    valid = torch.tensor([[True, True, True, True], [True, True, True, False]])
    feats = torch.zeros(2, 4, model.feature_dim)
    with torch.no_grad():
        model.halting.head.net[-1].weight.zero_()
        model.halting.head.net[-1].bias.fill_(0.0)
    _, metrics = model.halting.loss(losses, valid, feats)
    # row 0: loops 1-3 each see a later improvement > eps (3 positives); row 1: none (2 negatives)
    assert metrics["halting/target_rate"] == pytest.approx(3 / 5)


@pytest.mark.parametrize("rule", ["learned", "act"])
def test_trainable_rules_learn_only_from_detached_losses(rule):
    model = make(overrides=[f"halting.rule={rule}"])
    batch = batch_for(model)
    loss, _ = model.loss(batch)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.halting.parameters())
    halting_only = model.halting.loss
    model.zero_grad()
    # the halting loss alone must not reach the world model
    per = model.step(model.encode(batch.obs[0]), batch.actions[0], halting="fixed", keep_loops=True).per_loop
    hl, _ = halting_only(per.delta.pow(2).mean(-1).T.detach(), per.valid.T, per.features.transpose(0, 1))
    hl.backward()
    assert all(p.grad is None for p in model.block.parameters())


def test_ponder_objective_trains():
    model = make(overrides=["halting.rule=learned", "halting.objective=ponder"])
    loss, metrics = model.loss(batch_for(model))
    assert torch.isfinite(loss) and "train/halting_kl" in metrics


def test_halting_config_override_changes_thresholds_not_the_trained_head():
    model = make(overrides=["halting.rule=learned", "halting.tau=0.5"])
    z = model.encode(torch.randn(32, O))
    a = actions_for(model, 32)
    never = dataclasses.replace(model.cfg.halting, tau=0.0)  # P(improve) < 0 never holds: run the cap
    always = dataclasses.replace(model.cfg.halting, tau=1.01)  # always holds: halt at min_loops
    assert torch.all(model.step(z, a, halting=never).loops == model.cfg.max_loops)
    assert torch.all(model.step(z, a, halting=always).loops == 1)
    assert model.halting.cfg.tau == 0.5
    conv = dataclasses.replace(model.cfg.halting, rule="convergence", tol=1e9)
    assert torch.all(model.step(z, a, halting=conv).loops == 2)

"""Compute-aware planning: a plan never spends more loops than its budget, and its report adds up."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_agents import BOX, DISCRETE, world_model

from loopwm_rl.agents import ActorCritic, PlannerConfig, PlanningAgent

MODELS = {("box", rule): world_model(BOX, rule) for rule in ("fixed", "convergence")}
MODELS |= {("discrete", rule): world_model(DISCRETE, rule) for rule in ("fixed", "convergence")}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["box", "discrete"]),
    rule=st.sampled_from(["fixed", "convergence"]),
    samples=st.integers(8, 24),
    horizon=st.integers(1, 4),
    iterations=st.integers(1, 3),
    screen=st.sampled_from([0, 1, 2]),
    prior=st.booleans(),
    slack=st.floats(0.0, 3.0),
)
def test_a_plan_never_spends_more_than_its_budget(kind, rule, samples, horizon, iterations, screen, prior, slack):
    space = BOX if kind == "box" else DISCRETE
    model = MODELS[(kind, rule)]
    elites = 4
    keep = max(elites, int(np.ceil(0.25 * samples)))
    prior_samples = 2 if prior else 0
    floor = iterations * (samples * horizon + (keep * horizon if screen else 0) + prior_samples * horizon)
    budget = int(floor * (1 + slack))
    cfg = PlannerConfig(
        horizon=horizon,
        samples=samples,
        elites=elites,
        iterations=iterations,
        loop_budget=budget,
        screen_loops=screen,
        prior_samples=prior_samples,
    )
    critic = None
    if prior:
        dim = space.n if kind == "discrete" else space.shape[0]
        critic = ActorCritic(model.cfg.state_dim, dim, discrete=kind == "discrete", hidden=16)
    agent = PlanningAgent(model, space, cfg, critic, seed=0)
    agent.reset()
    for _ in range(2):
        action, stats = agent.act(np.random.randn(4).astype(np.float32))
        assert space.contains(action)
        assert stats.loops_spent <= budget
        assert stats.loops_spent == stats.loops_screen + stats.loops_full + stats.loops_prior
        imagined = int(sum(x.sum() for x in agent.objective.loops))
        assert imagined == stats.loops_screen + stats.loops_full
        assert stats.loop_budget == budget
        assert (stats.loops_screen > 0) == bool(screen)


def test_a_budget_below_one_loop_per_step_is_rejected():
    cfg = PlannerConfig(horizon=3, samples=16, elites=4, iterations=2, loop_budget=50)
    agent = PlanningAgent(world_model(BOX), BOX, cfg, seed=0)
    with pytest.raises(ValueError, match=r"loop_budget=50 is below the 96 loops"):
        agent.act(np.zeros(4, np.float32))


def test_the_budget_binds_on_a_model_that_would_spend_more():
    model = world_model(BOX, "fixed")  # every imagined step runs the full cap
    cap = model.cfg.loop_cap
    free = PlanningAgent(model, BOX, PlannerConfig(horizon=3, samples=16, elites=4, iterations=2), seed=0)
    _, stats = free.act(np.zeros(4, np.float32))
    assert stats.loops_spent == 2 * 16 * 3 * cap
    tight = PlannerConfig(horizon=3, samples=16, elites=4, iterations=2, loop_budget=2 * 16 * 3 * 2)
    _, stats = PlanningAgent(model, BOX, tight, seed=0).act(np.zeros(4, np.float32))
    assert stats.loops_spent == tight.loop_budget and stats.loops_mean == pytest.approx(2.0)


def test_screening_rescored_candidates_are_the_only_elites():
    model = world_model(BOX, "fixed")
    cfg = PlannerConfig(horizon=2, samples=32, elites=4, iterations=1, screen_loops=1, screen_keep=0.25)
    agent = PlanningAgent(model, BOX, cfg, seed=0)
    _, stats = agent.act(np.zeros(4, np.float32))
    cap = model.cfg.loop_cap
    assert stats.loops_screen == 32 * 2 * 1 and stats.loops_full == 8 * 2 * cap
    low, high = agent.objective.loops
    assert low.shape == (2, 32) and high.shape == (2, 8) and bool((high == cap).all())
    assert torch.isfinite(torch.as_tensor(stats.plan_value))

"""Contract tests of the world-model verbs, the two models and the depth loop."""

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loopwm_rl import SequenceBatch, build_world_model, load_model_config
from loopwm_rl.config import ConfigError, HaltingConfig, WorldModelConfig
from loopwm_rl.halting import Schedule
from loopwm_rl.models import LoopedWorldModel, StackedWorldModel
from loopwm_rl.update import DivergenceGuard, NonFiniteLossError, make_optimizer, update

O, A, N_ACT = 5, 2, 3


def make(presets=("looped", "debug"), overrides=(), discrete=False):
    cfg = load_model_config(presets, overrides)
    cfg = cfg.resolve(obs_dim=O, num_actions=N_ACT) if discrete else cfg.resolve(obs_dim=O, action_dim=A)
    return build_world_model(cfg)


def actions_for(model, *shape):
    if model.cfg.discrete:
        return torch.randint(0, model.cfg.num_actions, shape)
    return torch.rand(*shape, model.cfg.action_dim) * 2 - 1


def batch_for(model, H=3, B=6):
    return SequenceBatch(
        obs=torch.randn(H + 1, B, O),
        actions=actions_for(model, H, B),
        rewards=torch.randn(H, B),
        terminated=torch.zeros(H, B, dtype=torch.bool),
    )


RULES = ["fixed", "convergence", "learned", "act"]


# ----------------------------------------------------------------------------- parameters


def test_looped_parameters_do_not_depend_on_max_loops():
    counts = {k: sum(p.numel() for p in make(overrides=[f"max_loops={k}"]).parameters()) for k in (1, 4, 16)}
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("L", [1, 2, 4])
def test_stacked_has_L_times_the_block_parameters(L):
    looped = make()
    stacked = make(("stacked", "debug"), [f"blocks={L}"])
    assert isinstance(looped, LoopedWorldModel) and isinstance(stacked, StackedWorldModel)
    assert stacked.block_parameters() == L * looped.block_parameters()
    # everything outside the depth loop is shared code with the same sizes (minus halting head)

    def outside(m):
        skip = ("block", "_blocks", "halting")
        return sum(p.numel() for n, p in m.named_parameters() if not n.startswith(skip))

    assert outside(stacked) == outside(looped)


def test_retention_entries_lie_in_open_unit_interval():
    model = make()
    a_bar = model.retention()
    assert a_bar.shape == (model.cfg.token_dim,)
    assert torch.all(a_bar > 0) and torch.all(a_bar < 1)
    assert math.isclose(float(a_bar.detach().mean()), math.sqrt(1 / 5), rel_tol=1e-4)  # Parcae init


@settings(max_examples=30, deadline=None)
@given(a_log=st.floats(-8, 3), dt_bias=st.floats(-8, 3))
def test_retention_stays_contractive_for_any_parameters(a_log, dt_bias):
    model = make()
    with torch.no_grad():
        model.injection.a_log.fill_(a_log)
        model.injection.dt_bias.fill_(dt_bias)
    a_bar = model.retention()
    assert torch.all(a_bar > 0) and torch.all(a_bar < 1)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("kind", ["looped", "stacked"])
def test_verb_shapes(kind, discrete):
    model = make((kind, "debug"), discrete=discrete)
    B, H, D = 7, 4, model.cfg.state_dim
    z = model.encode(torch.randn(B, O))
    assert z.shape == (B, D)
    out = model.step(z, actions_for(model, B))
    cap = model.cfg.loop_cap
    assert out.z.shape == (B, D) and out.obs.shape == (B, O)
    assert out.reward.shape == (B,) and out.cont.shape == (B,)
    assert out.loops.shape == (B,) and out.loops.dtype == torch.int64
    assert out.residuals.shape == (B, cap)
    assert torch.all((out.cont >= 0) & (out.cont <= 1))
    roll = model.imagine(z, actions_for(model, H, B))
    assert roll.z.shape == (H, B, D) and roll.obs.shape == (H, B, O)
    assert roll.reward.shape == (H, B) and roll.loops.shape == (H, B)
    assert roll.residuals.shape == (H, B, cap)


def test_residuals_record_each_loop_and_nan_after_halting():
    model = make(overrides=["halting.rule=convergence", "halting.tol=1e9", "max_loops=4"])
    out = model.step(model.encode(torch.randn(5, O)), actions_for(model, 5))
    assert torch.all(out.loops == 2)  # convergence needs two loops to compare
    assert torch.allclose(out.residuals[:, 0], torch.ones(5), atol=1e-5)  # h starts at 0
    assert torch.all(torch.isfinite(out.residuals[:, :2])) and torch.all(torch.isnan(out.residuals[:, 2:]))


def test_imagine_feeds_each_step_the_previous_latent():
    model = make()
    z0 = model.encode(torch.randn(3, O))
    acts = actions_for(model, 3, 3)
    roll = model.imagine(z0, acts)
    z = z0
    for t in range(3):
        out = model.step(z, acts[t])
        assert torch.allclose(out.z, roll.z[t], atol=1e-6)
        z = out.z


# ----------------------------------------------------------------------------- halting


@settings(max_examples=25, deadline=None)
@given(
    rule=st.sampled_from(RULES),
    max_loops=st.integers(1, 6),
    override=st.one_of(st.none(), st.integers(1, 9)),
    tau=st.floats(0.01, 0.99),
    tol=st.floats(1e-4, 10.0),
    B=st.integers(1, 17),
)
def test_no_rule_exceeds_the_cap(rule, max_loops, override, tau, tol, B):
    model = make(
        overrides=[
            f"halting.rule={rule}",
            f"max_loops={max_loops}",
            f"halting.tau={tau}",
            f"halting.tol={tol}",
        ]
    )
    out = model.step(model.encode(torch.randn(B, O)), actions_for(model, B), max_loops=override)
    cap = override or max_loops
    assert torch.all(out.loops >= 1) and torch.all(out.loops <= cap)
    assert out.residuals.shape == (B, cap)


@pytest.mark.parametrize("rule", RULES)
def test_dropping_halted_rows_equals_masking(rule):
    model = make(overrides=[f"halting.rule={rule}", "max_loops=6"])
    z = model.encode(torch.randn(64, O) * 3)
    a = actions_for(model, 64)
    # vary halting so that rows stop at different loops
    with torch.no_grad():
        for p in model.halting.parameters():
            p.add_(torch.randn_like(p))
        per = model.step(z, a, halting="fixed", keep_loops=True).per_loop
    changes = (per.delta[1:] - per.delta[:-1]).pow(2).mean(-1).sqrt()  # (K - 1, B)
    model.halting.cfg = dataclasses.replace(model.halting.cfg, tol=float(changes.median()))
    if rule == "learned":
        with torch.no_grad():
            model.halting.head.net[-1].bias -= model.halting.head(per.features).median()
            gains = model.halting.predicted_gain(per.features)  # (K, B)
        model.halting.cfg = dataclasses.replace(model.halting.cfg, tau=float(gains[gains > 0].median()))
    dropped = model.step(z, a, drop_halted=True)
    masked = model.step(z, a, drop_halted=False)
    assert torch.equal(dropped.loops, masked.loops)
    if rule != "fixed":
        assert dropped.loops.unique().numel() > 1, "test needs rows that halt at different loops"
    for name in ("z", "obs", "reward", "cont"):
        assert torch.allclose(getattr(dropped, name), getattr(masked, name), atol=1e-5), name
    assert torch.allclose(dropped.residuals, masked.residuals, atol=1e-5, equal_nan=True)


def test_fixed_override_runs_exactly_k_loops_and_k_loops_match_stepwise_unroll():
    model = make(overrides=["halting.rule=learned"])
    z = model.encode(torch.randn(4, O))
    a = actions_for(model, 4)
    for k in (1, 3):
        out = model.step(z, a, max_loops=k, halting="fixed")
        assert torch.all(out.loops == k)
    # k loops equal the first k loops of a longer run's per-loop predictions
    long = model.step(z, a, max_loops=4, halting="fixed", keep_loops=True)
    short = model.step(z, a, max_loops=2, halting="fixed")
    assert torch.allclose(long.per_loop.delta[1], short.delta, atol=1e-6)


# ----------------------------------------------------------------------------- training


def test_gradients_reach_the_shared_block():
    model = make()
    loss, _ = model.loss(batch_for(model))
    loss.backward()
    grads = [p.grad for p in model.block.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert model.injection.a_log.grad is not None and model.injection.B.grad is not None


def test_train_schedule_samples_loops_within_cap():
    model = make(overrides=["max_loops=5", "train_loops=poisson", "mu_rec=3", "mu_bwd=2"])
    sched = model.train_schedule(2000, torch.Generator().manual_seed(0))
    assert sched.stop_at.min() >= 1 and sched.stop_at.max() <= 5
    assert 2.5 < float(sched.stop_at.float().mean()) < 3.3
    assert torch.all(sched.detach_at == (sched.stop_at - 2).clamp_min(0))
    stacked = make(("stacked", "debug"), ["blocks=3"])
    assert torch.all(stacked.train_schedule(10).stop_at == 3)


def loops_reached_by_the_gradient(model, sched: Schedule) -> list[bool]:
    """One step of 3 rows under ``sched``, the final delta backpropagated: per loop, whether
    the state leaving that loop got a non-zero gradient."""
    z = model.encode(torch.randn(3, O)).detach()
    outputs = []

    def keep(_module, _inputs, output):
        output.retain_grad()
        outputs.append(output)

    handle = model.block.register_forward_hook(keep)
    try:
        model.step(z, actions_for(model, 3), schedule=sched).delta.sum().backward()
    finally:
        handle.remove()
    return [out.grad is not None and bool(out.grad.abs().sum() > 0) for out in outputs]


@pytest.mark.parametrize("detach_at", [0, 1, 3])
def test_truncated_backprop_reaches_exactly_the_loops_after_the_cut(detach_at):
    """With ``detach_at = d`` the state leaving loops 1..d gets no gradient and the state
    leaving loops d+1..K does."""
    model = make(overrides=["max_loops=4"])
    sched = Schedule(stop_at=torch.full((3,), 4), detach_at=torch.full((3,), detach_at))
    assert loops_reached_by_the_gradient(model, sched) == [t > detach_at for t in range(1, 5)]


def test_loss_and_step_leave_inputs_unmutated():
    model = make()
    batch = batch_for(model)
    copies = {
        f.name: getattr(batch, f.name).clone() for f in dataclasses.fields(batch) if getattr(batch, f.name) is not None
    }
    model.loss(batch)
    z = model.encode(batch.obs[0])
    z_copy, a = z.clone(), batch.actions[0].clone()
    model.step(z, batch.actions[0])
    model.imagine(z, batch.actions)
    assert torch.equal(z, z_copy) and torch.equal(batch.actions[0], a)
    for name, value in copies.items():
        assert torch.equal(getattr(batch, name), value), name


@pytest.mark.parametrize("training", [True, False])
def test_evaluating_restores_the_mode_it_found_even_on_error(training):
    model = make()
    model.train(training)
    with model.evaluating():
        assert not model.training and not model.halting.training
    assert model.training is training
    with pytest.raises(RuntimeError, match="inside"), model.evaluating():
        raise RuntimeError("inside")
    assert model.training is training and all(m.training is training for m in model.modules())


def test_terminated_steps_mask_the_rest_of_the_sequence():
    batch = SequenceBatch(
        torch.zeros(4, 2, O),
        torch.zeros(3, 2, A),
        torch.zeros(3, 2),
        torch.tensor([[False, True], [True, False], [False, False]]),
    )
    assert batch.alive().tolist() == [[1, 1], [1, 0], [0, 0]]


def test_a_nan_batch_skips_the_update_names_the_term_and_keeps_the_weights():
    model = make()
    opt = make_optimizer(model)
    update(model, opt, batch_for(model))  # a good step first, so the optimiser has state
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {id(p): {k: v.clone() for k, v in st.items()} for p, st in opt.state.items()}
    batch = batch_for(model)
    batch.obs[1, 0, 0] = float("nan")
    metrics = update(model, opt, batch)
    assert metrics["guard/skipped"] == 1.0
    assert metrics["guard/bad"].startswith("world model: ") and "train/wm_loss" in metrics["guard/bad"]
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(moments[id(p)][k], v) for p, st in opt.state.items() for k, v in st.items())
    assert update(model, opt, batch_for(model))["guard/skipped"] == 0.0  # and training goes on


def test_the_divergence_guard_stops_after_n_bad_updates_in_a_row():
    guard = DivergenceGuard(3)
    bad = {"guard/skipped": 1.0, "guard/bad": "critic: train/q_loss"}
    for _ in range(2):
        with pytest.warns(RuntimeWarning, match="critic: train/q_loss"):
            guard.check(bad)
    guard.check({"guard/skipped": 0.0})  # a good update resets the count
    for _ in range(2):
        with pytest.warns(RuntimeWarning):
            guard.check(bad)
    with pytest.raises(NonFiniteLossError, match=r"3 updates in a row were non-finite \(last: critic"):
        guard.check(bad)
    assert guard.skipped == 5
    with pytest.raises(ValueError, match="max_bad"):
        DivergenceGuard(0)


def test_optimizer_does_not_decay_the_injection():
    model = make()
    opt = make_optimizer(model, weight_decay=0.1)
    no_decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert all(id(p) in no_decay for p in model.injection.parameters())


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("make_call", "needle"),
    [
        (lambda m: m.encode(torch.randn(3, O + 1)), f"expected (B, {O})"),
        (lambda m: m.encode(torch.randn(O)), f"expected (B, {O})"),
        (
            lambda m: m.step(m.encode(torch.randn(3, O)), torch.randn(3, A + 1)),
            f"expected a float tensor of shape (3, {A})",
        ),
        (
            lambda m: m.step(m.encode(torch.randn(3, O)), torch.zeros(3, A, dtype=torch.long)),
            "continuous actions",
        ),
        (lambda m: m.step(torch.randn(3, 4), torch.randn(3, A)), "latent has shape"),
        (
            lambda m: m.step(m.encode(torch.randn(3, O)), torch.randn(3, A), max_loops=0),
            "max_loops=0 must be an int >= 1",
        ),
        (
            lambda m: m.step(m.encode(torch.randn(3, O)), torch.randn(3, A), halting="act"),
            "cannot override",
        ),
        (lambda m: m.imagine(m.encode(torch.randn(3, O)), torch.randn(4, 2, A)), "time-major"),
    ],
)
def test_bad_input_is_named(make_call, needle):
    with pytest.raises(ValueError) as err:
        make_call(make())
    assert needle in str(err.value)


def test_discrete_model_rejects_wrong_actions():
    model = make(discrete=True)
    z = model.encode(torch.randn(3, O))
    with pytest.raises(ValueError, match="3 discrete actions"):
        model.step(z, torch.randn(3, 1))
    with pytest.raises(ValueError, match=r"out of range \[0, 3\)"):
        model.step(z, torch.tensor([0, 1, 3]))


def test_unresolved_or_mismatched_configs_are_rejected():
    with pytest.raises(ConfigError, match="no observation/action sizes"):
        build_world_model(load_model_config(["looped"]))
    cfg = load_model_config(["stacked"], ["halting.rule=learned"]).resolve(obs_dim=2, action_dim=1)
    with pytest.raises(ConfigError, match="stacked model runs all"):
        build_world_model(cfg)
    with pytest.raises(ValueError, match="exceeds the stacked model"):
        stacked = make(("stacked", "debug"), ["blocks=2"])
        stacked.step(stacked.encode(torch.randn(1, O)), torch.zeros(1, A), max_loops=3)


def test_the_config_defaults_are_the_recommended_looped_model():
    """Presets state only what differs from the dataclass defaults, so `train` without presets
    and `fit` build the same model."""
    assert load_model_config(["looped"]) == WorldModelConfig()
    assert load_model_config([]) == WorldModelConfig()
    assert WorldModelConfig().halting == HaltingConfig(rule="learned", objective="gain", budget=0.2, tau=0.01)
    assert WorldModelConfig().tokenizer == "auto", "object tokens where the env declares objects (BENCHMARKS.md)"
    recipe = WorldModelConfig()
    assert (recipe.loop_init_std, recipe.loop_init_share) == (1.0, 0.5), "the easy-step floor (BENCHMARKS.md)"


# ----------------------------------------------------------------------------- early exits


def test_loop_weights_follow_the_power_and_the_first_loop_weight():
    from loopwm_rl.loss import loop_weights

    like = torch.zeros(())
    cfg = WorldModelConfig(max_loops=4, loop_weight_power=1.0)
    assert loop_weights(cfg, 4, like).tolist() == [1, 2, 3, 4]
    assert loop_weights(dataclasses.replace(cfg, loop_weight_power=0.0), 4, like).tolist() == [1, 1, 1, 1]
    assert loop_weights(dataclasses.replace(cfg, first_loop_weight=0.5), 4, like).tolist() == [2, 2, 3, 4]


def test_per_loop_readout_starts_as_the_shared_one_and_serves_loops_past_the_cap():
    torch.manual_seed(0)
    shared = make(overrides=["max_loops=3"])
    per_loop = make(overrides=["max_loops=3", "readout=loop"])
    missing = per_loop.load_state_dict(shared.state_dict(), strict=False).missing_keys
    assert missing == ["loop_readout"] and per_loop.loop_readout.shape == (3, 2, per_loop.cfg.token_dim)
    z = shared.encode(torch.randn(4, O))
    a = actions_for(shared, 4)
    assert torch.allclose(shared.step(z, a, halting="fixed").obs, per_loop.step(z, a, halting="fixed").obs)
    with torch.no_grad():
        per_loop.loop_readout.normal_()
    assert not torch.allclose(shared.step(z, a, halting="fixed").obs, per_loop.step(z, a, halting="fixed").obs)
    assert per_loop.step(z, a, halting="fixed", max_loops=6).loops.eq(6).all()


def test_distillation_adds_a_positive_term_that_trains_the_early_loops():
    model = make(overrides=["max_loops=3", "loop_init_std=0"])  # no random starts: two equal passes
    batch = batch_for(model)
    plain, _ = model.loss(batch, torch.Generator().manual_seed(0))
    model.cfg = dataclasses.replace(model.cfg, w_distill=1.0)
    distilled, _ = model.loss(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(distilled) and distilled.item() > plain.item()


@pytest.mark.parametrize(
    "override, needle",
    [("readout=deep", "model.readout"), ("first_loop_weight=-1", "first_loop_weight"), ("w_distill=-1", "w_distill")],
)
def test_early_exit_options_reject_bad_values(override, needle):
    with pytest.raises(ConfigError, match=needle):
        load_model_config(["looped"], [override])


def test_local_loop_gradient_trains_each_loop_on_its_own_prediction():
    """``loop_gradient: local``: the last loop's prediction reaches only the last block output."""
    model = make(overrides=["max_loops=4", "loop_gradient=local"])
    assert model.train_schedule(3).local
    sched = Schedule(stop_at=torch.full((3,), 4), detach_at=torch.zeros(3, dtype=torch.long), local=True)
    assert loops_reached_by_the_gradient(model, sched) == [False, False, False, True]


def test_random_loop_starts_cover_the_configured_share_and_spare_the_halting_head():
    model = make(overrides=["max_loops=3", "loop_init_std=1", "loop_init_share=0.5", "halting.rule=learned"])
    sched = model.train_schedule(4000, torch.Generator().manual_seed(0))
    random_rows = (sched.init_std > 0).float().mean()
    assert 0.45 < float(random_rows) < 0.55 and set(sched.init_std.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(sched.zero_start(), sched.init_std == 0)
    loss, metrics = model.loss(batch_for(model))
    assert torch.isfinite(loss) and "train/halting_mse" in metrics
    assert make(overrides=["loop_init_std=0"]).train_schedule(5).init_std is None
    assert make(("stacked", "debug")).train_schedule(5).init_std is None, "one pass: no loop state to start"


def test_a_loop_that_stops_contracting_is_named_with_its_curve():
    from loopwm_rl.depth import contraction_warning
    from loopwm_rl.run_setup import check_contraction

    assert contraction_warning([1.0, 0.5, 0.2, 0.05]) is None
    assert contraction_warning([1.0, 0.5]) is None  # too few loops to tell
    message = contraction_warning([1.0, 0.3, 0.35, 0.4])
    assert "not contracting" in message and "1, 0.3, 0.35, 0.4" in message and "1.33x loop 2" in message
    model = make(overrides=["max_loops=4"])
    z, a = model.encode(torch.randn(16, O)), actions_for(model, 16)
    metrics = check_contraction(model, z, a)  # an untrained model: either way, a ratio is reported
    assert set(metrics) == {"depth/contraction"} and math.isfinite(metrics["depth/contraction"])


@pytest.mark.parametrize("every, depends", [(1, True), (2, False)])
def test_deferred_decoding_supervises_only_the_terminal_observation(every, depends):
    """With ``decode_every=2`` over two steps only o_2 is a target: the estimate carried through
    step 1 is judged where it lands, so the world-model loss ignores o_1 (per-step decoding
    does not)."""
    model = make(overrides=[f"decode_every={every}", "w_consistency=0"])
    batch = batch_for(model, H=2)
    torch.manual_seed(1)
    a = model.loss(batch)[1]["train/wm_loss"]
    batch.obs[1] += 3.0
    torch.manual_seed(1)
    b = model.loss(batch)[1]["train/wm_loss"]
    assert (a != pytest.approx(b, rel=1e-5)) is depends, (a, b)


def test_deferred_decoding_curriculum_and_contraction_hinge():
    from loopwm_rl.loss import _decoded_steps

    model = make(overrides=["decode_every=3", "decode_curriculum=2", "contraction_budget=0.01"])
    model.train()
    seen = [_decoded_steps(model, 6).tolist() for _ in range(6)]
    assert seen[0] == [True] * 6  # interval 1 for the first two calls, then 2, then 3
    assert seen[2] == [False, True, False, True, False, True]
    assert seen[4] == seen[5] == [False, False, True, False, False, True]
    loss, metrics = model.loss(batch_for(model, H=6))
    assert metrics["train/contraction_hinge"] > 0 and metrics["train/decoded_steps"] == 2
    loss.backward()
    with pytest.raises(ConfigError, match="decode_every"):
        make(overrides=["decode_every=0"])

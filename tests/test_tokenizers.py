"""Contract tests of the tokenizers: shapes, object layouts, dropping vs masking, per-object
deltas, zero-initialised heads, path independence and the training recipe switches."""

import dataclasses

import pytest
import torch

from loopwm_rl import SequenceBatch, build_world_model, load_model_config
from loopwm_rl.config import ConfigError
from loopwm_rl.envs import make_env
from loopwm_rl.run_setup import object_layout

O, A = 8, 2
LAYOUT = ((0, 1, 2, 3), (4, 5), (6,))  # objects of different sizes; index 7 owned by none


def make(tokenizer, overrides=(), objects=LAYOUT):
    cfg = load_model_config(["looped", "debug"], [f"tokenizer={tokenizer}", *overrides])
    return build_world_model(cfg.resolve(obs_dim=O, action_dim=A, objects=objects))


@pytest.mark.parametrize("tokenizer, tokens", [("state", 1), ("objects", 3), ("dims", O)])
def test_token_counts_and_verb_shapes(tokenizer, tokens):
    model = make(tokenizer)
    slots = model.cfg.slots
    # state: [state, action, slots]; objects/dims: [objects..., features, action, slots]
    assert model.num_tokens == (tokens + 2 + slots if tokenizer != "state" else 2 + slots)
    z = model.encode(torch.randn(5, O))
    out = model.step(z, torch.rand(5, A) * 2 - 1, halting="fixed", keep_loops=True)
    assert out.z.shape == (5, model.cfg.state_dim) and out.obs.shape == (5, O)
    assert out.per_loop.delta.shape == (model.cfg.max_loops, 5, O)
    roll = model.imagine(z, torch.rand(3, 5, A) * 2 - 1)
    assert roll.obs.shape == (3, 5, O)


@pytest.mark.parametrize(
    "objects, needle",
    [
        ((), "needs the object layout"),
        (((0, 1), (1, 2)), "belongs to two objects"),
        (((0, 1), (8,)), "outside the observation's 8 dims"),
        (((0, 1), ()), "at least one observation index"),
    ],
)
def test_bad_object_layouts_are_named(objects, needle):
    with pytest.raises(ConfigError, match=needle):
        make("objects", objects=objects)


def test_unknown_tokenizer_is_named():
    with pytest.raises(ConfigError, match=r"model\.tokenizer=.graph. is not one of"):
        load_model_config(["looped"], ["tokenizer=graph"])


@pytest.mark.parametrize("tokenizer", ["objects", "dims"])
def test_dropping_halted_rows_equals_masking(tokenizer):
    model = make(tokenizer, ["halting.rule=convergence", "max_loops=6"])
    z = model.encode(torch.randn(64, O) * 3)
    a = torch.rand(64, A) * 2 - 1
    per = model.step(z, a, halting="fixed", keep_loops=True).per_loop
    changes = (per.delta[1:] - per.delta[:-1]).pow(2).mean(-1).sqrt()
    model.halting.cfg = dataclasses.replace(model.halting.cfg, tol=float(changes.median()))
    dropped, masked = model.step(z, a, drop_halted=True), model.step(z, a, drop_halted=False)
    assert dropped.loops.unique().numel() > 1, "test needs rows that halt at different loops"
    assert torch.equal(dropped.loops, masked.loops)
    for name in ("z", "obs", "reward", "cont"):
        assert torch.allclose(getattr(dropped, name), getattr(masked, name), atol=1e-5), name


def test_each_object_predicts_its_own_dims():
    model = make("objects")
    h = torch.zeros(2, model.num_tokens, model.cfg.token_dim)
    h[:, 1] = torch.randn(model.cfg.token_dim)  # only object 1's token changes
    pooled = torch.full((2, O), 7.0)
    base = model.tokenizer.delta(torch.zeros_like(h), pooled)
    moved = model.tokenizer.delta(h, pooled)
    changed = (moved != base).any(0)
    assert changed[[4, 5]].all() and not changed[[0, 1, 2, 3, 6, 7]].any()
    assert torch.all(moved[:, 7] == 7.0), "a dimension no object owns comes from the pooled head"


@pytest.mark.parametrize("tokenizer", ["state", "objects", "dims"])
def test_zero_delta_head_starts_at_no_change(tokenizer):
    model = make(tokenizer, ["zero_delta_head=true"])
    obs = torch.randn(4, O)
    out = model.step(model.encode(obs), torch.rand(4, A))
    assert torch.allclose(out.obs, obs, atol=1e-5)


def test_path_gap_is_zero_from_the_same_start_and_positive_from_another():
    model = make("objects")
    z, a = model.encode(torch.randn(6, O)), torch.rand(6, A)
    assert torch.all(model.path_gap(z, a, 4, h0_std=0.0) == 0)
    assert torch.all(model.path_gap(z, a, 4, h0_std=1.0) > 0)


def test_random_loop_start_and_input_noise_train_and_inference_stays_deterministic():
    model = make("objects", ["loop_init_std=1.0", "input_noise=0.1"])
    batch = SequenceBatch(torch.randn(4, 6, O), torch.rand(3, 6, A), torch.randn(3, 6), torch.zeros(3, 6, dtype=bool))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    loss1, _ = model.loss(batch, generator=g1)
    torch.manual_seed(1)
    loss2, _ = model.loss(batch, generator=g2)
    assert torch.isfinite(loss1) and loss1 != loss2, "the random loop start should vary the loss"
    loss1.backward()
    assert model.tokenizer.object_value.weight.grad.abs().sum() > 0
    z, a = model.encode(torch.randn(3, O)), torch.rand(3, A)
    assert torch.equal(model.step(z, a).obs, model.step(z, a).obs), "inference starts from h0 = 0"


def test_object_layouts_come_from_the_env():
    env = make_env("LoopWM/Billiards-v0")
    assert object_layout(env, 12) == ((0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11))
    assert object_layout("LoopWM/Cradle-v0", 10) == tuple((2 * i, 2 * i + 1) for i in range(5))
    assert object_layout("Pendulum-v1", 3) == (), "standard tasks declare no objects"
    assert object_layout(env, 8) == (), "a layout that does not fit the data is not used"


def test_auto_uses_objects_where_the_env_declares_them_else_the_state_token():
    assert make("auto").tokenizer.num_objects == len(LAYOUT)
    assert make("auto", objects=()).tokenizer.num_objects == 0


def test_checkpoints_from_before_the_tokenizer_module_still_load(tmp_path):
    from loopwm_rl.checkpoint import load_world_model, save_world_model

    model = make("state")
    path = save_world_model(tmp_path / "new.pt", model)
    payload = torch.load(path, weights_only=True)
    old = {k.replace("tokenizer.", ""): v for k, v in payload["state_dict"].items()}
    assert "pos" in old and "state_token.weight" in old
    payload["state_dict"] = old
    torch.save(payload, tmp_path / "old.pt")
    loaded, _ = load_world_model(tmp_path / "old.pt")
    z, a = model.encode(torch.randn(3, O)), torch.rand(3, A)
    assert torch.equal(loaded.step(z, a).obs, model.eval().step(z, a).obs)

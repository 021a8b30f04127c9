import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopwm_rl.config import (
    ConfigError,
    HaltingConfig,
    WorldModelConfig,
    available_presets,
    load_model_config,
    parse_overrides,
)


def test_presets_compose_left_to_right():
    cfg = load_model_config(["looped", "debug"])
    assert cfg.kind == "looped" and cfg.token_dim == 16 and cfg.max_loops == 4
    assert cfg.halting.rule == "learned"  # from looped.yaml, untouched by debug
    stacked = load_model_config(["stacked", "stacked_param_matched"])
    assert stacked.kind == "stacked" and stacked.blocks == 1


def test_overrides_parse_nested_and_typed():
    cfg = load_model_config(["looped"], ["halting.rule=act", "max_loops=6", "mu_rec=3"])
    assert cfg.halting.rule == "act" and cfg.max_loops == 6 and cfg.mu_rec == 3.0
    assert isinstance(cfg.mu_rec, float)
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


def test_config_is_frozen():
    cfg = WorldModelConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_loops = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["max_loop=3"], "did you mean ['max_loops'"),
        (["halting.rul=act"], "halting.rul"),
        (["max_loops=three"], "max_loops='three' is not an int"),
        (
            ["halting.rule=bogus"],
            "'bogus' is not one of ['fixed', 'convergence', 'learned', 'act']",
        ),
        (["kind=recurrent"], "model.kind='recurrent'"),
        (["max_loops=0"], "max_loops=0 must be >= 1"),
        (["token_dim=10", "heads=4"], "divisible"),
        (["heads=true"], "is not an int"),
        (["max_loops"], "key=value"),
    ],
)
def test_bad_config_names_the_key(overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_model_config(["looped"], overrides)
    assert needle in str(err.value)


def test_unknown_preset_lists_choices():
    with pytest.raises(ConfigError, match=r"available: .*debug"):
        load_model_config(["debgu"])
    assert {"debug", "looped", "stacked"} <= set(available_presets("model"))


def test_resolve_fills_derived_sizes_without_mutating():
    base = WorldModelConfig()
    cfg = base.resolve(obs_dim=3, num_actions=2)
    assert base.obs_dim == 0 and cfg.obs_dim == 3 and cfg.discrete and cfg.state_dim == 3 + cfg.latent_dim
    with pytest.raises(ConfigError, match="exactly one of"):
        base.resolve(obs_dim=3, action_dim=1, num_actions=2)


def test_halting_config_validates():
    with pytest.raises(ConfigError, match="min_loops"):
        HaltingConfig(min_loops=0)
    with pytest.raises(ConfigError, match="exceeds the loop cap"):
        WorldModelConfig(max_loops=2, halting=HaltingConfig(min_loops=3))


@pytest.mark.parametrize(
    ("override", "seeds"), [("compare.seeds=3", (3,)), ("compare.seeds=0,1", (0, 1)), ("compare.seeds=[4, 5]", (4, 5))]
)
def test_tuple_overrides_take_one_value_a_comma_list_or_a_yaml_list(override, seeds):
    from loopwm_rl.runconfig import load_run_config

    assert load_run_config([], [override], command="compare").compare.seeds == seeds


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["fit.updates=0"], "fit.updates"),
        (["fit.val_fraction=1.5"], "fit.val_fraction=1.5"),
        (["fit.budget=2"], "fit.budget=2"),
        (["compare.seeds=[]"], "compare.seeds"),
        (["fit.threads=-1"], "fit.threads"),
        (["fit.updatse=5"], "did you mean ['updates']"),
    ],
)
def test_fit_and_compare_sections_are_checked(overrides, needle):
    from loopwm_rl.runconfig import load_run_config

    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_run_config([], overrides, command="fit")


def test_a_negative_calibration_interval_is_refused_by_name():
    from loopwm_rl.runconfig import load_run_config

    assert load_run_config(["pendulum"], ["train.calibrate_every=500"]).train.calibrate_every == 500
    with pytest.raises(ConfigError, match=re.escape("train.calibrate_every=-1")):
        load_run_config(["pendulum"], ["train.calibrate_every=-1"])


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["train.critic_steps=last"], "train.critic_steps='last'"),
        (["train.critic_n_step=4"], "train.critic_n_step=4 must lie in [1, train.horizon=3]"),
        (["train.critic_n_step=0"], "train.critic_n_step=0"),
        (["train.terminal_fraction=1"], "train.terminal_fraction=1.0 must lie in [0, 1)"),
        (["train.greedy_episodes=1.5"], "train.greedy_episodes=1.5 must lie in [0, 1]"),
        (["train.greedy_episodes=-0.1"], "train.greedy_episodes=-0.1 must lie in [0, 1]"),
        (["train.terminal_priority=-1"], "train.terminal_priority=-1.0 must be >= 0"),
        (["train.terminal_priority=1"], "set train.terminal_fraction > 0 too"),
        (["train.critic_tau=0"], "train.critic_tau=0.0 must lie in (0, 1]"),
        (["train.critic_tau=1.5"], "train.critic_tau=1.5 must lie in (0, 1]"),
    ],
)
def test_critic_target_settings_are_checked(overrides, needle):
    from loopwm_rl.runconfig import load_run_config

    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_run_config(["pendulum"], overrides)
    assert load_run_config(["pendulum"], ["train.critic_n_step=4", "train.horizon=4"]).train.critic_n_step == 4


def test_experiment_presets_compose_through_their_base():
    from loopwm_rl.runconfig import load_run_config

    cfg = load_run_config(["cartpole"])
    assert cfg.planner.method == "mppi" and cfg.planner.samples == 128  # base online, then the preset
    assert cfg.model.latent_dim == 32 and cfg.model.halting.budget == 0.5  # the small model at budget 0.5


def test_a_preset_that_is_its_own_base_is_named(tmp_path, monkeypatch):
    from loopwm_rl import runconfig

    (tmp_path / "a.yaml").write_text("base: b\n")
    (tmp_path / "b.yaml").write_text("base: a\n")
    import yaml

    def read(group, name):
        return yaml.safe_load((tmp_path / f"{name}.yaml").read_text())

    monkeypatch.setattr(runconfig, "read_preset", read)
    with pytest.raises(ConfigError, match="is its own base: a -> b -> a"):
        runconfig.read_experiment("a")


@settings(max_examples=200, deadline=None)
@given(fraction=st.floats(0.0, 1.0), n=st.integers(0, 500))
def test_greedy_episodes_are_the_fraction_of_every_prefix(fraction, n):
    from loopwm_rl.trainer import greedy_episode

    picked = [e for e in range(n) if greedy_episode(e, fraction)]
    assert len(picked) == int(n * fraction)
    if fraction == 0:
        assert not picked


def test_critic_tau_reaches_the_trainers_critic(tmp_path):
    from loopwm_rl.runconfig import load_run_config
    from loopwm_rl.trainer import Trainer

    assert load_run_config(["pendulum"]).train.critic_tau == 0.01  # the default, as measured
    assert load_run_config(["cartpole"]).train.critic_tau == 0.05  # its twenty-step preset
    trainer = Trainer(load_run_config(["cartpole", "debug"], ["train.critic_tau=0.3"]), tmp_path, progress=False)
    assert trainer.critic.tau == 0.3

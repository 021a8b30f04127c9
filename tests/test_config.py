import dataclasses

import pytest

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

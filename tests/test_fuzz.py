"""Hypothesis drives every suite env and ``WorldModelEnv`` with random seeds and action
sequences, edge values included: observations stay finite and in their space, ``hard`` is a
bool and nothing raises. Bad constructor arguments are refused by name."""

import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopwm_rl import build_world_model, load_model_config
from loopwm_rl.checkpoint import save_world_model
from loopwm_rl.envs import SUITE, EnvError, WorldModelEnv, make_env

# finite values at and far beyond the box edges (clipped by the envs), and ordinary ones
EDGE = st.one_of(
    st.sampled_from([-1.0, 1.0, 0.0, -1e6, 1e6, 1e-30, -1e-30, np.nextafter(1.0, 2.0)]),
    st.floats(-5.0, 5.0, allow_nan=False),
)


def action_strategy(space):
    if isinstance(space, spaces.Discrete):
        return st.integers(0, int(space.n) - 1)
    return st.lists(EDGE, min_size=space.shape[0], max_size=space.shape[0]).map(lambda a: np.asarray(a, np.float32))


@pytest.mark.parametrize("env_id", SUITE)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_suite_envs_stay_finite_and_in_their_space_under_any_actions(env_id, data, seed):
    env = make_env(env_id)
    obs, _ = env.reset(seed=seed)
    actions = data.draw(st.lists(action_strategy(env.action_space), min_size=1, max_size=300))
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs), (env_id, obs)
        assert np.isfinite(reward) and isinstance(info["hard"], bool) and isinstance(info["events"], int)
        assert info["hard"] == (info["events"] > 0)
        if terminated or truncated:
            obs, _ = env.reset()


@pytest.fixture(scope="module")
def imagined_checkpoint(tmp_path_factory):
    cfg = load_model_config(["looped", "debug"]).resolve(obs_dim=4, action_dim=2)
    path = tmp_path_factory.mktemp("imagined") / "wm.pt"
    return save_world_model(path, build_world_model(cfg), meta={"env_id": "LoopWM/BouncingBall-v0"})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_world_model_env_stays_finite_under_any_actions(imagined_checkpoint, data, seed):
    env = WorldModelEnv(imagined_checkpoint)
    obs, _ = env.reset(seed=seed)
    for action in data.draw(st.lists(action_strategy(env.action_space), min_size=1, max_size=100)):
        obs, reward, terminated, truncated, info = env.step(action)
        assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs) and np.isfinite(reward)
        assert 1 <= info["loops"] <= 4
        if terminated or truncated:
            obs, _ = env.reset()


def test_world_model_env_refuses_a_nan_action(imagined_checkpoint):
    env = WorldModelEnv(imagined_checkpoint)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not finite"):
        env.step(np.array([np.nan, 0.0], np.float32))


@pytest.mark.parametrize(
    "env_id, kwargs, error, needle",
    [
        ("LoopWM/BouncingBall-v0", {"gravity": "x"}, EnvError, "gravity='x' must be a number"),
        ("LoopWM/BouncingBall-v0", {"restitution": 1.5}, ValueError, r"restitution=1.5 must lie in \[0.0, 1.0\]"),
        ("LoopWM/BouncingBall-v0", {"dt": 0.0}, ValueError, r"dt=0.0 must lie in \(0.0, 0.2\]"),
        ("LoopWM/BouncingBall-v0", {"thrust": True}, EnvError, "thrust=True must be a number"),
        ("LoopWM/Billiards-v0", {"n_balls": 3.5}, EnvError, "n_balls=3.5 must be an int"),
        ("LoopWM/Billiards-v0", {"radius": 0.15}, ValueError, "radius=0.15"),
        ("LoopWM/HiddenZones-v0", {"n_zones": 9}, ValueError, "n_zones=9"),
        ("LoopWM/HiddenZones-v0", {"thrust": float("nan")}, ValueError, "thrust=nan"),
        ("LoopWM/Teleport-v0", {"teleport_prob": -0.1}, ValueError, "teleport_prob=-0.1"),
        ("LoopWM/Teleport-v0", {"step_size": "big"}, EnvError, "step_size='big'"),
        ("LoopWM/Cradle-v0", {"dt": 1.0}, ValueError, "dt=1.0"),
    ],
)
def test_suite_env_constructors_refuse_bad_arguments_by_name(env_id, kwargs, error, needle):
    """Wrong types are TypeErrors of the constructor, which ``make_env`` turns into an
    EnvError listing the valid arguments; wrong values are ValueErrors."""
    with pytest.raises(error, match=needle):
        make_env(env_id, **kwargs)

"""The environment suite, the factory and the imagined environment."""

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

from loopwm_rl import build_world_model, load_model_config
from loopwm_rl.checkpoint import CheckpointError, save_world_model
from loopwm_rl.cli import main
from loopwm_rl.envs import MUJOCO, SUITE, EnvError, WorldModelEnv, describe_suite, make_env
from loopwm_rl.envs.billiards import BilliardsEnv
from loopwm_rl.envs.bouncing_ball import BouncingBallEnv
from loopwm_rl.envs.cradle import CradleEnv
from loopwm_rl.envs.teleport import TeleportEnv
from loopwm_rl.envs.zones import HiddenZonesEnv


@pytest.mark.parametrize("env_id", list(SUITE))
def test_suite_env_passes_the_gymnasium_checker(env_id):
    env = SUITE[env_id](render_mode="rgb_array")
    check_env(env, skip_render_check=False)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8


@pytest.mark.parametrize("env_id", list(SUITE))
def test_same_seed_same_trajectory(env_id):
    def run(seed):
        env = make_env(env_id)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        for _ in range(50):
            obs, reward, *_, info = env.step(env.action_space.sample())
            trace += [obs, [reward, info["hard"]]]
        return np.concatenate([np.ravel(x) for x in trace])

    assert np.array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


@pytest.mark.parametrize("env_id", list(SUITE))
def test_every_step_reports_a_hard_flag(env_id):
    env = make_env(env_id)
    _, info = env.reset(seed=0)
    assert info["hard"] is False
    _, _, _, _, info = env.step(env.action_space.sample())
    assert isinstance(info["hard"], bool)


# ------------------------------------------------------------------ hand-computed hard labels


def step_from(env, state, action, **options):
    env.reset(seed=0, options={"state": state, **options})
    return env.step(np.asarray(action, dtype=np.float32) if not isinstance(action, int) else action)


def test_bouncing_ball_hard_label():
    env = BouncingBallEnv()
    # next to the right wall moving right at 2/s: x = 0.99 + 0.05 * 2 = 1.09 -> reflected
    obs, *_, info = step_from(env, [0.99, 0.5, 2.0, 0.0], [0.0, 0.0])
    assert info["hard"] and obs[2] < 0 and obs[0] == pytest.approx(0.91, abs=1e-5)
    # just above the floor falling: bounces
    _, *_, info = step_from(env, [0.5, 0.01, 0.0, -1.0], [0.0, 0.0])
    assert info["hard"]
    # in the middle: free flight, vy = 0 - 0.05 * 2 (gravity)
    obs, *_, info = step_from(env, [0.5, 0.5, 0.3, 0.0], [0.0, 0.0])
    assert not info["hard"] and obs[0] == pytest.approx(0.515, abs=1e-5) and obs[3] == pytest.approx(-0.1, abs=1e-5)


def test_billiards_hard_label_and_elastic_exchange():
    env = BilliardsEnv(n_balls=3, radius=0.07)
    far = [0.15, 0.85, 0.0, 0.0]
    # cue ball moving right into a resting ball 0.145 away: they touch within the step
    obs, *_, info = step_from(env, [0.4, 0.5, 1.0, 0.0, 0.545, 0.5, 0.0, 0.0, *far], [0.0, 0.0])
    assert info["hard"]
    assert obs[2] == pytest.approx(0.0, abs=1e-6) and obs[6] == pytest.approx(1.0, abs=1e-6)  # velocities swapped
    # separated, slow balls in the middle: nothing happens
    _, *_, info = step_from(env, [0.3, 0.5, 0.1, 0.0, 0.7, 0.5, 0.0, 0.1, *far], [0.0, 0.0])
    assert not info["hard"]
    # a ball next to a wall moving into it
    _, *_, info = step_from(env, [0.3, 0.5, 0.0, 0.0, 0.7, 0.5, 0.0, 0.0, 0.92, 0.2, 1.0, 0.0], [0.0, 0.0])
    assert info["hard"]


def test_hidden_zones_hard_label():
    env = HiddenZonesEnv(n_zones=4)
    layout = {"boundaries": [-0.5, 0.0, 0.5], "kinds": [0, 1, 2, 3]}
    # x = -0.01 moving right at 1/s crosses the boundary at 0
    _, *_, info = step_from(env, [-0.01, 0.0, 1.0, 0.0, 0.5, 0.5], [0.0, 0.0], **layout)
    assert info["hard"]
    # inside a zone, slow: no switch
    obs, *_, info = step_from(env, [0.25, 0.0, 0.1, 0.0, 0.5, 0.5], [0.0, 0.0], **layout)
    assert not info["hard"]
    # zone 2 (x in [0, 0.5)) has kind 2: gravity up, friction 0.2 -> vy = 0.05 * 2.5
    assert obs[3] == pytest.approx(0.125, abs=1e-5)
    # running into the outer wall at speed
    _, *_, info = step_from(env, [0.99, 0.0, 2.0, 0.0, 0.5, 0.5], [0.0, 0.0], **layout)
    assert info["hard"]
    # the layout is hidden: two resets with different seeds differ in boundaries, not in obs size
    env.reset(seed=1)
    b1 = env.boundaries.copy()
    env.reset(seed=2)
    assert not np.allclose(b1, env.boundaries) and env.observation_space.shape == (6,)


def test_teleport_hard_label():
    sure = TeleportEnv(teleport_prob=1.0, slip=0.0)
    pad, exit_ = sure.pads[0], sure.exits[0]
    start = [pad[0] - sure.pad_radius - 0.02, pad[1]]  # just left of the pad
    obs, *_, info = step_from(sure, start, 4)  # move right onto the pad
    assert info["hard"] and np.allclose(obs, exit_)
    never = TeleportEnv(teleport_prob=0.0, slip=0.0)
    obs, *_, info = step_from(never, start, 4)
    assert not info["hard"] and np.allclose(obs, [start[0] + 0.08, start[1]])


def test_teleport_terminates_at_goal():
    env = TeleportEnv(slip=0.0)
    _, reward, terminated, _, _ = step_from(env, [0.9, 0.8], 1)
    assert terminated and reward > 9


# ------------------------------------------------------------------ property tests


@settings(max_examples=20, deadline=None)
@given(
    env_id=st.sampled_from(list(SUITE)),
    seed=st.integers(0, 2**16),
    raw=st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.integers(0, 4)), min_size=1, max_size=60),
)
def test_valid_actions_keep_observations_finite_and_in_space(env_id, seed, raw):
    env = SUITE[env_id]()
    obs, _ = env.reset(seed=seed)
    for ax, ay, k in raw:
        if isinstance(env.action_space, gym.spaces.Discrete):
            action = k
        else:
            action = np.array([ax, ay], np.float32)[: env.action_space.shape[0]]
        obs, reward, terminated, _, _ = env.step(action)
        assert np.all(np.isfinite(obs)) and np.isfinite(reward)
        assert env.observation_space.contains(obs), obs
        if terminated:
            obs, _ = env.reset()


@settings(max_examples=20, deadline=None)
@given(env_id=st.sampled_from([e for e in SUITE if e != "LoopWM/Teleport-v0"]), scale=st.floats(1.0, 100.0))
def test_out_of_box_actions_are_clipped(env_id, scale):
    a, b = SUITE[env_id](), SUITE[env_id]()
    a.reset(seed=1)
    b.reset(seed=1)
    big = np.array([scale, -scale], np.float32)[: a.action_space.shape[0]]
    assert np.array_equal(a.step(big)[0], b.step(np.clip(big, -1, 1))[0])


def test_invalid_actions_are_rejected():
    env = BouncingBallEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not finite"):
        env.step(np.array([np.nan, 0.0]))
    teleport = TeleportEnv()
    teleport.reset(seed=0)
    with pytest.raises(ValueError, match="not in Discrete"):
        teleport.step(7)


# ------------------------------------------------------------------ factory and CLI


def test_factory_makes_standard_tasks_with_agent_wrappers():
    for env_id in ("Pendulum-v1", "MountainCarContinuous-v0"):
        env = make_env(env_id)
        assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
        obs, _ = env.reset(seed=0)
        assert obs.dtype == np.float32
    assert isinstance(make_env("CartPole-v1").action_space, gym.spaces.Discrete)
    assert isinstance(make_env("Acrobot-v1").action_space, gym.spaces.Discrete)


def test_factory_errors_name_the_problem():
    with pytest.raises(EnvError, match=r"Did you mean \['Pendulum-v1'"):
        make_env("Pendulm-v1")
    with pytest.raises(EnvError, match="Valid arguments: \\['gravity'"):
        make_env("LoopWM/BouncingBall-v0", gravty=1.0)
    with pytest.raises(ValueError, match="n_balls=9"):
        make_env("LoopWM/Billiards-v0", n_balls=9)


HAS_MUJOCO = importlib.util.find_spec("mujoco") is not None


@pytest.mark.skipif(not HAS_MUJOCO, reason="needs the mujoco extra (make test installs it)")
@pytest.mark.parametrize("env_id", MUJOCO)
def test_mujoco_tasks_pass_the_checker_through_the_factory(env_id):
    env = make_env(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and env.observation_space.dtype == np.float32
    assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)  # rescaled
    nxt, reward, *_ = env.step(env.action_space.sample())
    assert nxt.shape == obs.shape and np.isfinite(reward)


@pytest.mark.skipif(HAS_MUJOCO, reason="MuJoCo is installed")
def test_mujoco_task_without_the_extra_names_it():
    with pytest.raises(EnvError, match=r"loopwm-rl\[mujoco\]"):
        make_env("HalfCheetah-v5")


def test_gymnasium_make_finds_the_suite_by_module_prefix():
    env = gym.make("loopwm_rl.envs:LoopWM/BouncingBall-v0")
    assert env.spec.max_episode_steps == 200


def test_envs_command_lists_the_suite(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    for row in describe_suite():
        assert row["id"] in out and row["hard"] in out
    assert "LoopWM/Cradle-v0" in out and {r["id"]: r["objects"] for r in describe_suite()}["LoopWM/Cradle-v0"] == "5"


# ------------------------------------------------------------------ imagined environment


@pytest.fixture
def checkpoint(tmp_path):
    cfg = load_model_config(["looped", "debug"], ["halting.rule=convergence", "halting.tol=0.05"])
    model = build_world_model(cfg.resolve(obs_dim=4, action_dim=2))
    return save_world_model(tmp_path / "wm.pt", model, meta={"env_id": "LoopWM/BouncingBall-v0"})


def test_world_model_env_passes_the_checker_and_reports_loops(checkpoint):
    env = WorldModelEnv(checkpoint)
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    for _ in range(5):
        obs, reward, _terminated, _truncated, info = env.step(env.action_space.sample())
        assert 1 <= info["loops"] <= 4 and obs.shape == (4,) and np.isfinite(reward)


def test_world_model_env_through_gymnasium_make(checkpoint, tmp_path):
    starts = np.random.default_rng(0).uniform(0.2, 0.8, (10, 4)).astype(np.float32)
    env = gym.make("LoopWM/Imagined-v0", checkpoint=str(checkpoint), initial_observations=starts, max_loops=2)
    obs, _ = env.reset(seed=1)
    assert any(np.allclose(obs, s) for s in starts)
    _, _, _, _, info = env.step(np.zeros(2, np.float32))
    assert 1 <= info["loops"] <= 2


def test_world_model_env_bad_checkpoints(tmp_path, checkpoint):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        WorldModelEnv(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        WorldModelEnv(corrupt)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        WorldModelEnv(truncated)
    wrong = tmp_path / "wrong.pt"
    torch.save({"model_config": {"max_loops": 0}, "state_dict": {}}, wrong)
    with pytest.raises(CheckpointError, match="incompatible model config"):
        WorldModelEnv(wrong)
    with pytest.raises(CheckpointError, match="the model expects"):
        WorldModelEnv(checkpoint, initial_observations="Pendulum-v1")
    with pytest.raises(CheckpointError, match="the model was built for"):
        WorldModelEnv(checkpoint, initial_observations="CartPole-v1")
    with pytest.raises(CheckpointError, match=r"expects \(N, 4\)"):
        WorldModelEnv(checkpoint, initial_observations=np.zeros((3, 5)))


# ------------------------------------------------------------------ events and the graded env


@pytest.mark.parametrize("env_id", list(SUITE))
def test_events_count_agrees_with_the_hard_label(env_id):
    env = make_env(env_id)
    env.action_space.seed(1)
    _, info = env.reset(seed=1)
    assert info["events"] == 0
    for _ in range(200):
        *_, info = env.step(env.action_space.sample())
        assert isinstance(info["events"], int) and info["events"] >= 0
        assert info["hard"] == (info["events"] > 0)


def test_cradle_hand_computed_chain():
    env = CradleEnv(n_balls=3, radius=0.08)
    # three balls touching in a row, the first moving right at 1: it stops, the last takes
    # its velocity; two collisions in one step, so the step is hard
    obs, *_, info = step_from(env, [0.3, 1.0, 0.46, 0.0, 0.62, 0.0], [0.0])
    assert info["events"] == 2 and info["hard"]
    assert obs[1] == pytest.approx(0.0) and obs[3] == pytest.approx(0.0) and obs[5] == pytest.approx(1.0)
    assert obs[4] == pytest.approx(0.62 + 0.05, abs=1e-6)
    # a gap of 0.02 in front of the row: the collision happens after 0.02 s, then the chain
    obs, *_, info = step_from(env, [0.28, 1.0, 0.46, 0.0, 0.62, 0.0], [0.0])
    assert info["events"] == 2 and obs[4] == pytest.approx(0.62 + 0.03, abs=1e-6)
    # separated, slow balls: nothing happens
    _, *_, info = step_from(env, [0.2, 0.1, 0.5, 0.0, 0.8, -0.1], [0.0])
    assert info["events"] == 0 and not info["hard"]
    # the last ball into the right wall: one event, velocity reversed
    obs, *_, info = step_from(env, [0.2, 0.0, 0.5, 0.0, 0.9, 1.0], [0.0])
    assert info["events"] == 1 and obs[5] == pytest.approx(-1.0)


def test_cradle_grades_difficulty_under_a_random_policy():
    env = make_env("LoopWM/Cradle-v0")
    env.action_space.seed(0)
    env.reset(seed=0)
    events = [env.step(env.action_space.sample())[-1]["events"] for _ in range(2000)]
    counts = np.bincount(events)
    assert len(counts) > 4 and counts[0] > 0 and counts[3] > 0, f"expected chains of 0..4+ events, got {counts}"


def test_cradle_rejects_balls_that_do_not_fit():
    with pytest.raises(ValueError, match="do not fit"):
        CradleEnv(n_balls=5, radius=0.11)

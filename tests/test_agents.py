"""Planner and agent contracts, in the style of TorchRL's planner tests."""

import dataclasses
import warnings
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from known_models import PendulumModel

from loopwm_rl import build_world_model, load_model_config
from loopwm_rl.agents import ActorCritic, PlannerConfig, PlanningAgent
from loopwm_rl.agents.optimizers import elite_weights
from loopwm_rl.config import ConfigError
from loopwm_rl.envs import make_env
from loopwm_rl.outputs import Rollout

FAST = PlannerConfig(horizon=3, samples=32, elites=4, iterations=2)
BOX = gym.spaces.Box(np.array([-1.0, -0.5], np.float32), np.array([1.0, 0.25], np.float32))
DISCRETE = gym.spaces.Discrete(3)


def world_model(space, rule="convergence"):
    cfg = load_model_config(["looped", "debug"], [f"halting.rule={rule}"])
    if isinstance(space, gym.spaces.Discrete):
        cfg = cfg.resolve(obs_dim=4, num_actions=int(space.n))
    else:
        cfg = cfg.resolve(obs_dim=4, action_dim=space.shape[0])
    return build_world_model(cfg).eval()


@pytest.mark.parametrize("space", [BOX, DISCRETE], ids=["box", "discrete"])
@pytest.mark.parametrize("eval_mode", [False, True])
def test_action_shape_and_bounds(space, eval_mode):
    agent = PlanningAgent(world_model(space), space, FAST, seed=0)
    agent.reset()
    for _ in range(5):
        action, stats = agent.act(np.random.randn(4).astype(np.float32) * 3, eval=eval_mode)
        assert space.contains(action), action
    assert stats.imagined_transitions == FAST.horizon * FAST.samples * FAST.iterations
    assert 1 <= stats.loops_mean <= 4 and 1 <= stats.loops_p95 <= 4 and stats.latency_s > 0


def test_inputs_are_not_mutated():
    agent = PlanningAgent(world_model(BOX), BOX, FAST, seed=0)
    obs = np.random.randn(4).astype(np.float32)
    copy = obs.copy()
    agent.act(obs)
    assert np.array_equal(obs, copy)


@pytest.mark.parametrize("space", [BOX, DISCRETE], ids=["box", "discrete"])
def test_deterministic_for_a_fixed_seed(space):
    model = world_model(space)
    obs = [np.random.randn(4).astype(np.float32) for _ in range(4)]

    def run(seed):
        agent = PlanningAgent(model, space, FAST, seed=seed)
        return [np.asarray(agent.act(o)[0]).tolist() for o in obs]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_warm_start_shifts_the_previous_plan():
    agent = PlanningAgent(world_model(BOX), BOX, FAST, seed=0)
    seen = []
    original = agent.trajectory.optimizer.optimize

    def spy(objective, mean, std, *args, **kwargs):
        seen.append(mean.clone())
        return original(objective, mean, std, *args, **kwargs)

    agent.trajectory.optimizer.optimize = spy
    agent.act(np.zeros(4, np.float32))
    first_plan = agent.trajectory.prev.clone()
    agent.act(np.zeros(4, np.float32))
    assert torch.allclose(seen[1][:-1], first_plan[1:])
    centre = (torch.as_tensor(BOX.low) + torch.as_tensor(BOX.high)) / 2
    assert torch.allclose(seen[0], centre.expand(3, -1)) and torch.allclose(seen[1][-1], centre)
    agent.reset()
    agent.act(np.zeros(4, np.float32))
    assert torch.allclose(seen[2], centre.expand(3, -1))


def test_planner_config_errors():
    with pytest.raises(ConfigError, match=r"elites=64 must lie in \[1, samples=32\]"):
        PlannerConfig(samples=32, elites=64)
    with pytest.raises(ConfigError, match="horizon=0 must be >= 1"):
        PlannerConfig(horizon=0)
    with pytest.raises(ConfigError, match="method='ilqr'"):
        PlannerConfig(method="ilqr")
    with pytest.raises(ValueError, match="not supported"):
        PlanningAgent(world_model(BOX), gym.spaces.MultiDiscrete([2, 2]), FAST)


@pytest.mark.parametrize("noise", ["white", "ou"])
def test_exploration_noise_keeps_its_std_and_ou_keeps_its_sign(noise):
    """Seed-phase actions on a wide box (no clipping): both kinds have std ``explore_std``;
    only ``ou`` is correlated from one decision to the next, and ``reset`` restarts it."""
    wide = gym.spaces.Box(-100.0, 100.0, (1,), np.float32)
    cfg = PlannerConfig(horizon=3, samples=32, elites=4, explore_std=0.5, explore_noise=noise, explore_theta=0.1)
    agent = PlanningAgent(world_model(wide), wide, cfg, seed=0)
    wide.seed(0)
    runs = []
    for _ in range(20):
        agent.reset()
        runs.append(np.array([agent.seed_action()[0] for _ in range(200)]))
    x = np.stack(runs)  # (episodes, decisions)
    lag1 = np.corrcoef(x[:, :-1].ravel(), x[:, 1:].ravel())[0, 1]
    if noise == "ou":
        assert abs(x.std() - 0.5) < 0.1 and lag1 > 0.8  # 1 - theta = 0.9 in expectation
        assert abs(np.corrcoef(x[:-1, -1], x[1:, 0])[0, 1]) < 0.5  # reset forgets the last value
    else:
        assert abs(x.std() - 100 / 3**0.5) < 10 and abs(lag1) < 0.1  # the space's own uniform sampler


def test_ou_training_actions_stay_inside_the_box_and_discrete_refuses_it():
    cfg = PlannerConfig(horizon=3, samples=32, elites=4, explore_std=2.0, explore_noise="ou")
    agent = PlanningAgent(world_model(BOX), BOX, cfg, seed=0)
    for _ in range(20):
        assert BOX.contains(agent.seed_action()) and BOX.contains(agent.act(np.zeros(4, np.float32))[0])
    with pytest.raises(ValueError, match="explore_noise='ou' needs a continuous"):
        PlanningAgent(world_model(DISCRETE), DISCRETE, cfg)
    with pytest.raises(ConfigError, match="explore_noise='pink'"):
        PlannerConfig(explore_noise="pink")
    with pytest.raises(ConfigError, match=r"explore_theta=0 lie in \(0, 1\]"):
        PlannerConfig(explore_noise="ou", explore_theta=0)


def test_wrong_observation_shape_is_named():
    agent = PlanningAgent(world_model(BOX), BOX, FAST)
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        agent.act(np.zeros(5, np.float32))


def test_elite_weights_are_stable_for_huge_values():
    w = elite_weights(torch.tensor([1e30, 2e30, -1e30]), 0.5)
    assert torch.all(torch.isfinite(w)) and float(w.sum()) == pytest.approx(1.0)


class NaNAfterStep(PendulumModel):
    """Rewards turn NaN from imagined step 2 on for every candidate after the first call."""

    calls = 0

    def imagine(self, z0, actions, **kwargs):
        roll = super().imagine(z0, actions)
        NaNAfterStep.calls += 1
        if NaNAfterStep.calls > 2:
            roll.reward[2:] = float("nan")
        return roll


def test_non_finite_model_values_warn_and_keep_the_previous_plan():
    NaNAfterStep.calls = 0
    cfg = PlannerConfig(horizon=4, samples=16, elites=4, iterations=2)
    agent = PlanningAgent(NaNAfterStep(), make_env("Pendulum-v1").action_space, cfg, seed=0)
    obs = np.array([1.0, 0.0, 0.0], np.float32)
    agent.act(obs)
    plan = agent.trajectory.prev.clone()
    with pytest.warns(RuntimeWarning, match="first at imagined step 2"):
        action, _ = agent.act(obs, eval=True)
    assert np.all(np.isfinite(action))
    assert np.allclose(action, plan[1].numpy(), atol=1e-6)  # the shifted previous plan


class ChooseTwo:
    """Reward 1 for action 2, 0 otherwise: categorical CEM must find it."""

    def encode(self, obs):
        return obs

    def imagine(self, z0, actions, **_):
        H, N = actions.shape
        reward = (actions == 2).float()
        z = z0.expand(H, N, -1)
        return Rollout(
            z=z,
            obs=z,
            reward=reward,
            cont=torch.ones(H, N),
            loops=torch.ones(H, N, dtype=torch.long),
            residuals=torch.zeros(H, N, 1),
            delta=torch.zeros_like(z),
        )


class EitherWay:
    """Reward |a| per step: pushing hard either way is best, so the elites split into two modes
    whose mean is near the null action, the one action that earns nothing."""

    def encode(self, obs):
        return obs

    def imagine(self, z0, actions, **_):
        H, N, _ = actions.shape
        z = z0.expand(H, N, -1)
        return Rollout(
            z=z,
            obs=z,
            reward=actions.abs().sum(-1),
            cont=torch.ones(H, N),
            loops=torch.ones(H, N, dtype=torch.long),
            residuals=torch.zeros(H, N, 1),
            delta=torch.zeros_like(z),
        )


def test_best_elite_evaluation_action_escapes_a_two_mode_plan():
    space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    obs = np.zeros(2, np.float32)
    chosen = {}
    for rule in ("mean", "best"):
        cfg = dataclasses.replace(FAST, samples=256, elites=32, eval_action=rule)
        agent = PlanningAgent(EitherWay(), space, cfg, seed=0)
        chosen[rule] = [abs(float(agent.act(obs, eval=True)[0][0])) for _ in range(5)]
    assert np.mean(chosen["mean"]) < 0.5, chosen  # the two modes cancel
    assert min(chosen["best"]) > 0.8, chosen
    with pytest.raises(ConfigError, match="eval_action='median'"):
        PlannerConfig(eval_action="median")


@pytest.mark.parametrize("space", [BOX, DISCRETE], ids=["box", "discrete"])
def test_best_elite_evaluation_action_stays_in_the_space(space):
    cfg = dataclasses.replace(FAST, eval_action="best")
    agent = PlanningAgent(world_model(space), space, cfg, seed=0)
    for _ in range(3):
        action, _ = agent.act(np.random.randn(4).astype(np.float32), eval=True)
        assert space.contains(action), action


def test_categorical_cem_finds_the_rewarding_action():
    agent = PlanningAgent(ChooseTwo(), gym.spaces.Discrete(4), FAST, seed=0)
    assert all(agent.act(np.zeros(2, np.float32), eval=True)[0] == 2 for _ in range(5))


@pytest.mark.parametrize("space", [BOX, DISCRETE], ids=["box", "discrete"])
def test_terminal_value_and_prior_samples(space):
    model = world_model(space)
    discrete = isinstance(space, gym.spaces.Discrete)
    dim = int(space.n) if discrete else space.shape[0]
    critic = ActorCritic(model.cfg.state_dim, dim, discrete=discrete, hidden=32)
    cfg = PlannerConfig(horizon=3, samples=32, elites=4, iterations=2, prior_samples=8)
    agent = PlanningAgent(model, space, cfg, critic=critic, seed=0)
    action, stats = agent.act(np.zeros(4, np.float32))
    assert space.contains(action) and np.isfinite(stats.plan_value)


class Scripted:
    """Imagines fixed rewards and continuations (H, N); the last latent holds the candidate's index."""

    def __init__(self, reward: torch.Tensor, cont: torch.Tensor) -> None:
        self.reward, self.cont = reward, cont

    def encode(self, obs):
        return obs

    def imagine(self, z0, actions, **kwargs):
        H, N = actions.shape[:2]
        z = torch.arange(N, dtype=torch.float32)[None, :, None].expand(H, N, 1)  # (H, N, 1)
        loops = torch.ones(H, N, dtype=torch.long)
        return Rollout(z, z, self.reward, self.cont, loops, torch.zeros(H, N, 1), torch.zeros(H, N, 1))


@pytest.mark.parametrize("with_value", [False, True])
def test_imagined_return_is_the_discounted_alive_weighted_sum(with_value):
    """V = sum_t gamma^t C_t r_t + gamma^H C_H Q(z_H) with C_t = prod_{s<t} cont_s, worked out
    by hand for three candidates over H = 3 steps."""
    from loopwm_rl.agents import ImaginedReturn

    reward = torch.tensor([[1.0, 2.0, -1.0], [1.0, 0.5, 3.0], [1.0, 4.0, 0.0]])  # (H, N)
    cont = torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.5, 1.0], [0.8, 1.0, 1.0]])
    value = (lambda z: 10.0 * z[:, 0] + 1.0) if with_value else None  # Q = 1, 11, 21
    objective = ImaginedReturn(Scripted(reward, cont), gamma=0.9, value=value)
    objective.start(torch.zeros(1, 2))
    got = objective(torch.zeros(3, 3, 1))
    # candidate 0: alive 1, 1, 1; C_H = 0.8
    # candidate 1: alive 1, 0.5, 0.25; C_H = 0.25
    # candidate 2: alive 1, 0, 0 (it ended on step 1); C_H = 0
    expected = torch.tensor(
        [1 + 0.9 * 1 + 0.81 * 1, 2 + 0.9 * 0.5 * 0.5 + 0.81 * 0.25 * 4, -1 + 0.0 + 0.0], dtype=torch.float32
    )
    if with_value:
        expected += 0.9**3 * torch.tensor([0.8 * 1, 0.25 * 11, 0.0 * 21])
    assert torch.allclose(got, expected, atol=1e-6), (got, expected)


class PeakAt:
    """Rewards -(a - target)^2 per imagined step; the latent never changes."""

    def __init__(self, target: float) -> None:
        self.target = target

    def encode(self, obs):
        return obs

    def step(self, z, action):
        return SimpleNamespace(z=z)

    def imagine(self, z0, actions, **kwargs):
        H, N = actions.shape[:2]
        reward = -((actions[..., 0] - self.target) ** 2)  # (H, N)
        z = z0[None].expand(H, N, z0.shape[-1])
        ones = torch.ones(H, N)
        return Rollout(z, z, reward, ones, ones.long(), torch.zeros(H, N, 1), torch.zeros(H, N, 1))


def test_prior_samples_compete_with_the_gaussian_candidates():
    """A policy prior that proposes the best action wins one iteration of MPPI against a few
    wide Gaussian samples; without the prior the plan lands far from it."""
    space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    critic = ActorCritic(4, 1, hidden=8)
    with torch.no_grad():  # pi(z) = tanh(atanh(0.7) + exp(-5) * noise): about 0.7 for every z
        last = critic.pi[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([float(np.arctanh(0.7)), -5.0]))
    cfg = PlannerConfig(horizon=2, samples=6, elites=1, iterations=1, prior_samples=2)
    obs = np.zeros(4, np.float32)
    with_prior = PlanningAgent(PeakAt(0.7), space, cfg, critic=critic, seed=0).act(obs, eval=True)[0]
    without = [
        PlanningAgent(PeakAt(0.7), space, PlannerConfig(**{**cfg.__dict__, "prior_samples": 0}), seed=s).act(
            obs, eval=True
        )[0]
        for s in range(5)
    ]
    assert abs(float(with_prior[0]) - 0.7) < 0.02
    assert min(abs(float(a[0]) - 0.7) for a in without) > 0.02


@pytest.mark.parametrize("space", [BOX, DISCRETE], ids=["box", "discrete"])
def test_policy_prior_acts_fast_inside_the_space(space):
    model = world_model(space)
    discrete = isinstance(space, gym.spaces.Discrete)
    critic = ActorCritic(model.cfg.state_dim, int(space.n) if discrete else space.shape[0], discrete=discrete)
    agent = PlanningAgent(model, space, FAST, critic=critic, seed=0)
    for eval_mode in (False, True):
        assert space.contains(agent.act_prior(np.random.randn(4).astype(np.float32) * 3, eval=eval_mode))
    with pytest.raises(ValueError, match="needs an ActorCritic"):
        PlanningAgent(model, space, FAST).act_prior(np.zeros(4, np.float32))


def test_actor_critic_learns_a_constant_value():
    critic = ActorCritic(3, 1, hidden=32, lr=3e-3)
    z = torch.randn(64, 3)
    a = torch.rand(64, 1) * 2 - 1
    for _ in range(300):
        metrics = critic.update(z, a, torch.ones(64), torch.zeros(64), z, gamma=0.9)
    assert metrics["train/q_loss"] < 0.05
    assert torch.allclose(critic.value(z), torch.ones(64), atol=0.2)


def test_n_step_return_discounts_and_stops_at_a_termination():
    reward = torch.tensor([[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]])  # (m=3, N=2)
    cont = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])  # column 1 terminates at step 1
    ret, weight = ActorCritic.n_step_return(reward, cont, gamma=0.5)
    assert torch.allclose(ret, torch.tensor([1 + 0.5 * 2 + 0.25 * 4, 1 + 0.5 * 2]))
    assert torch.allclose(weight, torch.tensor([0.125, 0.0]))  # no bootstrap past the end
    one, w1 = ActorCritic.n_step_return(torch.tensor([3.0]), torch.tensor([0.0]), gamma=0.9)
    assert one.item() == 3.0 and w1.item() == 0.0  # the one-step target, unchanged


def test_n_step_return_ignores_the_steps_past_each_rows_own_length():
    reward = torch.tensor([[1.0, 1.0], [2.0, 5.0], [4.0, 7.0]])
    cont = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    ret, weight = ActorCritic.n_step_return(reward, cont, gamma=0.5, steps=torch.tensor([3, 1]))
    assert torch.allclose(ret, torch.tensor([1 + 0.5 * 2 + 0.25 * 4, 1.0]))
    assert torch.allclose(weight, torch.tensor([0.125, 0.5]))  # row 1 bootstraps after one step


def _chain_critic(starts: torch.Tensor, n: int, updates: int = 200) -> ActorCritic:
    """A critic trained on a 12-step episode paying 1 per step and terminating at its end, on
    replayed 3-step slices as the trainer samples them, with targets of up to ``n`` steps."""
    L = 12
    states, a = torch.eye(L + 1), torch.zeros(L, 1)
    reward, cont = torch.ones(L), torch.ones(L)
    cont[-1] = 0.0
    m = torch.clamp(L - starts, max=n)  # (S,) steps each start's target uses
    steps = (starts[None] + torch.arange(n)[:, None]).clamp(max=L - 1)  # (n, S)
    torch.manual_seed(0)
    critic = ActorCritic(L + 1, 1, hidden=32, lr=3e-3, tau=0.05)
    for _ in range(updates):
        critic.update(states[starts], a[starts], reward[steps], cont[steps], states[starts + m], 0.9, steps=m)
    return critic


def test_a_termination_reaches_the_critic_only_from_the_steps_that_show_it():
    """Slices of 3 never start in an episode's last 2 steps. Learning on each slice's first
    step with one-step targets, the critic never sees the end: three steps before it, its value
    is bootstrapped from states never trained and stays that of a long future. Learning on
    every step, or with 3-step targets, it knows that only three rewards are left."""
    first, every = torch.arange(10), torch.arange(12)  # slice starts 0 .. L - 3, or every step
    third_last = torch.eye(13)[9:10]
    q = {
        name: float(_chain_critic(starts, n).value(third_last))
        for name, starts, n in [("first_1", first, 1), ("all_1", every, 1), ("first_3", first, 3)]
    }
    true = 1 + 0.9 + 0.81
    assert abs(q["first_3"] - true) < 0.4, q  # three real rewards, no bootstrap
    # one-step targets bootstrap through the policy's action, which the data never took: a
    # little above the truth, but nowhere near the first-step-only critic
    assert q["all_1"] < true + 1.0 < q["first_1"] - 2.0, q


def test_a_nan_reward_skips_the_critic_update_and_keeps_its_weights():
    critic = ActorCritic(3, 1, hidden=16)
    z, a = torch.randn(8, 3), torch.rand(8, 1) * 2 - 1
    before = {k: v.clone() for k, v in critic.state_dict().items()}
    reward = torch.ones(8)
    reward[3] = float("nan")
    metrics = critic.update(z, a, reward, torch.ones(8), z, gamma=0.9)
    assert metrics["guard/skipped"] == 1.0 and metrics["guard/bad"] == "critic: train/q_loss"
    assert all(torch.equal(before[k], v) for k, v in critic.state_dict().items())


@pytest.mark.slow
def test_planner_swings_up_the_true_pendulum():
    env = make_env("Pendulum-v1")
    cfg = PlannerConfig(horizon=20, samples=256, elites=32, iterations=4, max_std=1.0)
    agent = PlanningAgent(PendulumModel(), env.action_space, cfg, seed=0)
    returns = []
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        agent.reset()
        total, done = 0.0, False
        while not done:
            action, _ = agent.act(obs, eval=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    # a random policy scores -1112 +- 230 on Pendulum-v1 (python benchmarks/random_policy.py)
    assert np.mean(returns) > -300, returns


def test_world_model_planning_under_warnings_is_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PlanningAgent(world_model(BOX), BOX, FAST).act(np.zeros(4, np.float32))


@pytest.mark.parametrize(("tau", "low", "high"), [(0.01, 2.0, 4.5), (0.2, 20.0, 45.0)])
def test_the_target_rate_bounds_how_fast_a_never_ending_value_grows(tau, low, high):
    """A state that pays 1 per step forever is worth 100 at gamma 0.99. After n updates a
    Polyak target at rate tau has passed about n * tau backups on, so the target sits near
    (1 - gamma ** (n tau)) / (1 - gamma) and Q one backup above it: 3.0 at tau 0.01, 33.8 at
    0.2 (200 updates), however good the fit."""
    torch.manual_seed(0)
    critic = ActorCritic(3, 1, hidden=32, lr=3e-3, tau=tau)
    z, a = torch.randn(32, 3), torch.zeros(32, 1)
    for _ in range(200):
        critic.update(z, a, torch.ones(32), torch.ones(32), z, gamma=0.99)
    value = float(critic.value(z).mean())
    assert low < value < high

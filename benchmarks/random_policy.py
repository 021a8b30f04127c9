"""Returns of simple fixed policies: the floors and ceilings that learning tests compare against.

Policies: ``random`` (uniform actions), ``zero`` (no action), ``up`` (full thrust up on the
bouncing ball, the first action dimension's maximum elsewhere) and ``pd`` (bouncing ball only:
a proportional-derivative controller towards the target with gravity compensation,
``a = clip(4 (target - p) - 1.5 v + (0, g / thrust), -1, 1)``). A learned planner should beat
``up``, which knows only the direction of gravity.

    python benchmarks/random_policy.py --episodes 200 --envs LoopWM/BouncingBall-v0 --lengths 100
"""

from __future__ import annotations

from loopwm_rl import cores  # noqa: F401  (before torch loads: OpenMP reads its wait policy once)

# isort: split
import argparse

import numpy as np

from loopwm_rl.envs import make_env

POLICIES = ("random", "zero", "up", "pd")


def policy(name: str, env):
    """``obs -> action`` for ``name``, or None where the policy is not defined for ``env``."""
    space = env.action_space
    if name == "random":
        return lambda obs: space.sample()
    if name == "zero":
        return lambda obs: np.zeros(space.shape, space.dtype)
    ball = env.unwrapped.spec.id == "LoopWM/BouncingBall-v0"
    if name == "up":
        up = np.zeros(space.shape, space.dtype)
        up[1 if ball else 0] = space.high[1 if ball else 0]
        return lambda obs: up
    if name == "pd" and ball:
        raw = env.unwrapped
        hover = np.array([0.0, raw.gravity / raw.thrust])
        return lambda obs: np.clip(4.0 * (raw.target - obs[:2]) - 1.5 * obs[2:] + hover, -1, 1).astype(np.float32)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["LoopWM/BouncingBall-v0", "Pendulum-v1"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 200], help="episode lengths")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    args = parser.parse_args()
    print(f"# random_policy: {args.episodes} episodes each, reset seeds 10000.., action seed {args.seed}")
    print("| env | episode length | policy | mean | std | best |")
    print("|---|---|---|---|---|---|")
    for env_id in args.envs:
        for length in args.lengths:
            env = make_env(env_id, max_episode_steps=length)
            for name in args.policies:
                act = policy(name, env)
                if act is None:
                    continue
                env.action_space.seed(args.seed)
                returns = []
                for episode in range(args.episodes):
                    obs, _ = env.reset(seed=10_000 + episode)
                    total, done = 0.0, False
                    while not done:
                        obs, reward, terminated, truncated, _ = env.step(act(obs))
                        total += reward
                        done = terminated or truncated
                    returns.append(total)
                mean, std, best = np.mean(returns), np.std(returns), np.max(returns)
                print(f"| {env_id} | {length} | {name} | {mean:.1f} | {std:.1f} | {best:.1f} |", flush=True)


if __name__ == "__main__":
    main()

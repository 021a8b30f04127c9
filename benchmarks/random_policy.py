"""Returns of a uniformly random policy: the floor that learning tests compare against.

python benchmarks/random_policy.py --episodes 20
"""

from __future__ import annotations

from loopwm_rl import cores  # noqa: F401  (before torch loads: OpenMP reads its wait policy once)

# isort: split
import argparse

import numpy as np

from loopwm_rl.envs import make_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["LoopWM/BouncingBall-v0", "Pendulum-v1"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 200], help="episode lengths")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"# random_policy: {args.episodes} episodes each, reset seeds 10000.., action seed {args.seed}")
    print("| env | episode length | mean | std | best |")
    print("|---|---|---|---|---|")
    for env_id in args.envs:
        for length in args.lengths:
            env = make_env(env_id, max_episode_steps=length)
            env.action_space.seed(args.seed)
            returns = []
            for episode in range(args.episodes):
                env.reset(seed=10_000 + episode)
                total, done = 0.0, False
                while not done:
                    _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                    total += reward
                    done = terminated or truncated
                returns.append(total)
            print(f"| {env_id} | {length} | {np.mean(returns):.1f} | {np.std(returns):.1f} | {np.max(returns):.1f} |")


if __name__ == "__main__":
    main()

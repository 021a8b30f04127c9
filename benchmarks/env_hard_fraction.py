"""Fraction of hard transitions in each suite env under a uniformly random policy, and how
the sub-step event counts (``info["events"]``) are distributed.

python benchmarks/env_hard_fraction.py --episodes 50 --seeds 0 1 2
"""

from __future__ import annotations

from loopwm_rl import cores  # noqa: F401  (before torch loads: OpenMP reads its wait policy once)

# isort: split
import argparse

import numpy as np

from loopwm_rl.envs import SUITE, make_env


def hard_fraction(env_id: str, episodes: int, seed: int) -> tuple[float, np.ndarray]:
    """The hard fraction and the share of steps with 0, 1, 2, 3 and 4+ events."""
    env = make_env(env_id)
    env.action_space.seed(seed)
    hard = steps = 0
    events = np.zeros(5)
    for episode in range(episodes):
        env.reset(seed=seed * 10_000 + episode)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            hard += info["hard"]
            events[min(info["events"], 4)] += 1
            steps += 1
            done = terminated or truncated
    return hard / steps, events / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    print(f"# env_hard_fraction: random policy, {args.episodes} episodes per seed, seeds {args.seeds}")
    print("| env | hard fraction (mean) | min | max | share of steps with 0 / 1 / 2 / 3 / 4+ events |")
    print("|---|---|---|---|---|")
    for env_id in SUITE:
        runs = [hard_fraction(env_id, args.episodes, s) for s in args.seeds]
        fractions = np.array([f for f, _ in runs])
        events = np.mean([e for _, e in runs], 0)
        shares = " / ".join(f"{e:.3f}" for e in events)
        print(f"| {env_id} | {fractions.mean():.3f} | {fractions.min():.3f} | {fractions.max():.3f} | {shares} |")


if __name__ == "__main__":
    main()

"""Does the seed phase find the reward? White against Ornstein-Uhlenbeck exploration noise.

Before its world model is trained the agent acts with ``PlanningAgent.seed_action``: uniform
draws from the action space (``planner.explore_noise=white``) or the OU process of
``planner.explore_noise=ou``. On a sparse-reward task the seed data decides whether the model
ever sees the reward. For each noise kind and seed this steps the preset's env (with its action
repeat) for ``train.seed_steps`` env steps and counts the episodes that end at the goal
(``terminated``) and the highest first observation reached (MountainCar: the car's position;
the goal is at 0.45). No world model is trained: only the seed phase's action stream is measured.

    python benchmarks/exploration_noise.py --preset mountain_car --seeds 20
"""

from __future__ import annotations

from loopwm_rl import cores  # noqa: F401  (before torch loads: OpenMP reads its wait policy once)

# isort: split
import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from loopwm_rl.agents import PlanningAgent
from loopwm_rl.envs import make_env
from loopwm_rl.runconfig import load_run_config
from loopwm_rl.trainer import env_kwargs

RESULTS = Path(__file__).resolve().parent / "results" / "exploration_noise.json"


def seed_phase(cfg, noise: str, seed: int) -> dict[str, float]:
    """Goals reached and the highest first observation over one seed phase of ``cfg``."""
    planner = dataclasses.replace(cfg.planner, explore_noise=noise)
    env = make_env(cfg.env.id, **env_kwargs(cfg))
    env.action_space.seed(seed)
    # seed_action never imagines, so the agent needs no world model here
    agent = PlanningAgent(None, env.action_space, planner, seed=seed)
    obs, _ = env.reset(seed=seed)
    agent.reset()
    steps = goals = episodes = 0
    highest = float(obs[0])
    while steps < cfg.train.seed_steps:
        obs, _, terminated, truncated, info = env.step(agent.seed_action())
        steps += int(info.get("env_steps", 1))
        highest = max(highest, float(obs[0]))
        if terminated or truncated:
            goals, episodes = goals + int(terminated), episodes + 1
            obs, _ = env.reset(seed=seed + episodes)
            agent.reset()
    return {"goals": goals, "episodes_ended": episodes, "highest": highest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mountain_car")
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1")
    args = parser.parse_args()
    cfg = load_run_config([args.preset])
    print(
        f"# exploration_noise: preset {args.preset}, {cfg.env.id}, action repeat {cfg.env.action_repeat}, "
        f"{cfg.train.seed_steps} seed steps, explore_std {cfg.planner.explore_std}, "
        f"explore_theta {cfg.planner.explore_theta}, seeds 0-{args.seeds - 1}"
    )
    print("| noise | seeds with a goal | goals per seed phase | highest position (mean) |")
    print("|---|---|---|---|")
    results = {}
    for noise in ("white", "ou"):
        rows = [seed_phase(cfg, noise, s) for s in range(args.seeds)]
        goals = np.array([r["goals"] for r in rows])
        highest = np.array([r["highest"] for r in rows])
        results[noise] = rows
        print(f"| {noise} | {(goals > 0).sum()} / {args.seeds} | {goals.mean():.2f} | {highest.mean():.3f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"preset": args.preset, "seed_steps": cfg.train.seed_steps, **results}, indent=1))
    print(f"# wrote {RESULTS}")


if __name__ == "__main__":
    main()

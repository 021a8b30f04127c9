"""Does the planner find the best plan its own objective allows? (discrete actions)

Plays one evaluation episode of a trained run (``loopwm-rl train``) with its evaluation agent
and, at chosen steps, scores every action sequence of the planner's horizon (``n ** horizon``
of them, at most ``--max-sequences``) with the planner's own objective: imagined rewards
weighted by predicted survival plus the critic's discounted terminal value, from the same
latent. Per step it reports the value of the plan the planner chose (``plan_value``), the
best value any sequence reaches, the best value that starts with each action, and the
observation the model predicts at the end of the best sequence.

A gap near zero says the search is not what limits the agent: an agent that still fails
is limited by what the objective (world model and critic) makes of the state. A large gap
says more samples or iterations would pay. One JSON per run under
``results/plan_search_gap/``.

    python benchmarks/plan_search_gap.py --runs runs/terminal_025/cartpole__s1/<run> \\
        --at 0 100 200 275 290 305 320 335 350
"""

from __future__ import annotations

from loopwm_rl import cores  # noqa: F401  (before torch loads: OpenMP reads its wait policy once)

# isort: split
import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "plan_search_gap"


def all_sequences(n: int, horizon: int) -> torch.Tensor:
    """Every sequence of ``horizon`` actions out of ``n``, time-major (H, n ** H) int64."""
    return torch.tensor(list(itertools.product(range(n), repeat=horizon)), dtype=torch.int64).T.contiguous()


@torch.no_grad()
def search_gap(objective, sequences: torch.Tensor, n: int) -> dict:
    """Score ``sequences`` (H, N) from the latent the objective was last ``start``-ed on."""
    values = objective(sequences)  # (N,)
    best = int(values.argmax())
    rollout = objective.model.imagine(objective.z0, sequences[:, best : best + 1])
    return {
        "best_value": float(values[best]),
        "best_by_first_action": [float(values[sequences[0] == a].max()) for a in range(n)],
        "best_sequence": sequences[:, best].tolist(),
        "best_end_obs": rollout.obs[-1, 0].tolist(),
    }


def check_planner(planner) -> None:
    """The objective's own call is what scores every sequence, so a planner whose call caps or
    screens the depth (a loop budget, multi-fidelity) would score them at another depth than a
    full plan: refuse it rather than compare unlike values."""
    if planner.loop_budget or planner.screen_loops:
        raise SystemExit(
            f"planner.loop_budget={planner.loop_budget}, planner.screen_loops={planner.screen_loops}: this "
            "check scores every sequence at the planner's full depth; run it on a run without either"
        )


@torch.no_grad()
def episode_gaps(run: str, at: list[int], max_sequences: int, reset_seed: int = 10_000) -> dict:
    from loopwm_rl.rundir import read_config
    from loopwm_rl.trainer import Trainer

    check_planner(read_config(run).planner)  # before loading the run's model and replay buffer
    trainer = Trainer.from_run(run)
    cfg = trainer.cfg
    agent, env = trainer.eval_agent, trainer.eval_env
    if not hasattr(env.action_space, "n"):
        raise SystemExit(f"{cfg.env.id}: continuous actions; this check enumerates discrete sequences only")
    n, horizon = int(env.action_space.n), cfg.planner.horizon
    if n**horizon > max_sequences:
        raise SystemExit(f"{n}^{horizon} = {n**horizon} sequences is above --max-sequences {max_sequences}")
    sequences = all_sequences(n, horizon)
    trainer.model.eval()
    obs, _ = env.reset(seed=reset_seed)
    agent.reset()
    rows, t, done, total = [], 0, False, 0.0
    while not done:
        action, stats = agent.act(obs, eval=True)
        if t in at:
            # the objective still holds this step's latent: act() started it there
            rows.append(
                {
                    "step": t,
                    "obs": np.asarray(obs).tolist(),
                    "action": int(action),
                    "plan_value": stats.plan_value,
                    **search_gap(agent.objective, sequences, n),
                }
            )
        obs, reward, terminated, truncated, _ = env.step(action)
        total, t, done = total + float(reward), t + 1, terminated or truncated
    return {
        "run": run,
        "env": cfg.env.id,
        "seed": cfg.train.seed,
        "horizon": horizon,
        "reset_seed": reset_seed,
        "return": total,
        "length": t,
        "terminated": bool(terminated),
        "rows": rows,
    }


def show(result: dict) -> None:
    print(
        f"{result['env']} seed {result['seed']}, horizon {result['horizon']}: return {result['return']:.0f} "
        f"over {result['length']} steps (terminated {result['terminated']})"
    )
    print("| step | observation | chosen | plan value | best of all | best by first action | end of best (model) |")
    print("|---|---|---|---|---|---|---|")
    for row in result["rows"]:
        obs = ", ".join(f"{x:.2f}" for x in row["obs"])
        by_first = " / ".join(f"{v:.2f}" for v in row["best_by_first_action"])
        end = ", ".join(f"{x:.2f}" for x in row["best_end_obs"])
        print(
            f"| {row['step']} | ({obs}) | {row['action']} | {row['plan_value']:.2f} | {row['best_value']:.2f} "
            f"| {by_first} | ({end}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="train run folders (their last checkpoint)")
    parser.add_argument("--at", nargs="+", type=int, required=True, help="episode steps to check")
    parser.add_argument("--reset-seed", type=int, default=10_000, help="the episode (evaluation uses 10000 on)")
    parser.add_argument("--max-sequences", type=int, default=4096)
    args = parser.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for run in args.runs:
        result = episode_gaps(run, sorted(set(args.at)), args.max_sequences, args.reset_seed)
        (RESULTS / f"{Path(run).name}.json").write_text(json.dumps(result, indent=1))
        show(result)


if __name__ == "__main__":
    main()

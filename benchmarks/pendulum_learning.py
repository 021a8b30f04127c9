"""Pendulum-v1: mean evaluation return at 2k, 5k and 10k env steps, and wall time to -200.

Trains ``loopwm-rl train pendulum`` once per seed, ``--jobs`` seeds at a time (one thread each
by default, with OpenMP's passive wait policy: ``loopwm_rl.cores``), then summarises every run
found under ``--runs-dir``.

    python benchmarks/pendulum_learning.py --seeds 0 1 2 --jobs 2 --runs-dir runs/bench
    python benchmarks/pendulum_learning.py --summarize --runs-dir runs/bench
"""

from __future__ import annotations

from loopwm_rl import cores  # before torch loads: OpenMP reads its wait policy once

# isort: split
import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

MILESTONES = (2000, 5000, 10000)


def train(seed: int, steps: int, threads: int, runs_dir: str, extra: list[str]) -> None:
    cmd = [
        sys.executable,
        "-m",
        "loopwm_rl",
        "train",
        "pendulum",
        f"train.seed={seed}",
        f"train.total_steps={steps}",
        f"train.threads={threads}",
        f"train.runs_dir={runs_dir}",
        "wandb.mode=disabled",
        "--quiet",
        *extra,
    ]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=cores.job_environment())


def summarize(runs_dir: Path, target: float) -> None:
    rows = []
    for run in sorted(runs_dir.glob("Pendulum-v1__*")):
        evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        evals = [e for e in evals if "eval/return_mean" in e]
        by_step = {e["env_step"]: e for e in evals}
        seed = run.name.split("__")[2]
        reached = next((e for e in evals if e["eval/return_mean"] >= target), None)
        rows.append((seed, by_step, reached))
    print(
        "| seed | "
        + " | ".join(f"return @ {m // 1000}k" for m in MILESTONES)
        + f" | first eval >= {target:g} (steps, wall min) |"
    )
    print("|---" * (len(MILESTONES) + 2) + "|")
    for seed, by_step, reached in rows:
        cells = [f"{by_step[m]['eval/return_mean']:.0f}" if m in by_step else "-" for m in MILESTONES]
        hit = f"{reached['env_step']}, {reached['train/wall_s'] / 60:.1f}" if reached else "not reached"
        print(f"| {seed} | {' | '.join(cells)} | {hit} |")
    for m in MILESTONES:
        values = [r[1][m]["eval/return_mean"] for r in rows if m in r[1]]
        if values:
            print(
                f"# @{m}: mean {np.mean(values):.0f}, min {np.min(values):.0f}, "
                f"max {np.max(values):.0f} over {len(values)} seeds"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: one (loopwm_rl.cores)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once")
    parser.add_argument("--runs-dir", default="runs/bench")
    parser.add_argument("--target", type=float, default=-200.0)
    parser.add_argument("--summarize", action="store_true", help="only summarise existing runs")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for train")
    args = parser.parse_args()
    if not args.summarize:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # threads only wait on the subprocesses
            runs = [
                pool.submit(train, seed, args.steps, args.threads, args.runs_dir, args.overrides) for seed in args.seeds
            ]
            for run in runs:
                run.result()
    summarize(Path(args.runs_dir), args.target)


if __name__ == "__main__":
    main()

"""Sample efficiency: the looped planning agent against stable-baselines3 on the same env steps.

Each (task, method, seed) is one job (:mod:`loopwm_rl.jobs`) writing
``results/sample_efficiency/<task>__<method>__s<seed>.json`` and skipped when that file exists,
so the grid fills in over several runs. ``looped`` trains ``loopwm-rl train <preset>`` in its
own process (a killed job's run continues with ``--resume``); ``sb3`` trains SAC on continuous
and DQN on discrete actions with stable-baselines3's defaults (DQN with RL-Zoo's CartPole
settings, as the defaults are tuned for Atari). Both evaluate the mean return of 10 episodes
at each budget point and time training alone (evaluation excluded).

    python benchmarks/sample_efficiency.py --tasks pendulum cartpole --seeds 0 1 2
    python benchmarks/sample_efficiency.py --tasks pendulum --methods sb3 --launcher ray
    python benchmarks/sample_efficiency.py --summarize      # CSV, Markdown table and plot
    python benchmarks/sample_efficiency.py --summarize --partial   # stopped runs count too

A looped run stopped before its last budget point (``runs/`` is not committed) leaves its
evaluations so far in its ``metrics.jsonl``: ``--partial`` writes them to
``<task>__looped__s<seed>.partial.json`` beside the result files, and the table marks those
cells with ``*``. A partial file never makes the grid skip a job, and the finished job's
result file replaces it.

Needs the ``bench`` extra (stable-baselines3, matplotlib); MuJoCo tasks need ``mujoco``.
"""

from __future__ import annotations

from loopwm_rl import cores  # before torch loads: OpenMP reads its wait policy once

# isort: split
import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from loopwm_rl.atomic import atomic_path
from loopwm_rl.jobs import LAUNCHERS, Job, run_jobs

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results" / "sample_efficiency"
DEFAULT_RUNS = "runs/sample_efficiency"
RESULTS = DEFAULT_RESULTS
SHORT = (1000, 2000, 5000, 10000, 20000)
LONG = (10000, 20000, 50000)
# task: (env id, the looped agent's preset, budget points in env steps)
TASKS = {
    "pendulum": ("Pendulum-v1", "pendulum", SHORT),
    "cartpole": ("CartPole-v1", "cartpole", SHORT),
    "mountain_car": ("MountainCarContinuous-v0", "mountain_car", SHORT),
    "inverted_pendulum": ("InvertedPendulum-v5", "inverted_pendulum", SHORT),
    "reacher": ("Reacher-v5", "reacher", LONG),
    "hopper": ("Hopper-v5", "hopper", LONG),
    "bouncing_ball": ("LoopWM/BouncingBall-v0", "bouncing_ball", (1000, 2000, 5000, 10000)),
}
METHODS = ("looped", "sb3")
EVAL_EPISODES = 10


def run_looped(
    task: str, seed: int, budgets: list[int], runs_dir: str, overrides: list[str], results: str | None = None
) -> dict:
    """Train the looped agent to the last budget, evaluating at each; returns returns by budget."""
    _, preset, _ = TASKS[task]
    run_dir = Path(runs_dir) / f"{task}__s{seed}"
    settings = [
        f"train.seed={seed}",
        f"train.total_steps={max(budgets)}",
        f"train.eval_at={','.join(map(str, budgets))}",
        f"train.eval_episodes={EVAL_EPISODES}",
        "train.threads=1",
        "wandb.mode=disabled",
        *overrides,
    ]
    existing = sorted(run_dir.glob("*/checkpoints/last.pt"))
    # a killed job continues its run
    target = ["--resume", str(existing[-1].parent.parent)] if existing else [preset, f"train.runs_dir={run_dir}"]
    cmd = [sys.executable, "-m", "loopwm_rl", "train", "--quiet", *target, *settings]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=cores.job_environment())
    (run,) = _latest_run(run_dir)
    out = _looped_result(run, budgets)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    _partial_path(task, seed, Path(results) if results else RESULTS).unlink(missing_ok=True)  # superseded
    return out


def _latest_run(run_dir: Path) -> list[Path]:
    """The newest run folder under a job's ``run_dir`` that has logged metrics ([] if none)."""
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if (p / "metrics.jsonl").exists())[-1:]


def _looped_result(run: Path, budgets: list[int]) -> dict:
    """A looped run's returns at each budget point from its ``metrics.jsonl`` (None at
    points it has not evaluated), its training time and where the time went."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = {r["env_step"]: r for r in rows if "eval/return_mean" in r}
    if not evals:
        raise ValueError(f"{run} has no evaluation yet")
    last = evals[max(evals)]
    train_s = last["train/wall_s"] - last["time/eval_s"]
    out = {
        "returns": {str(b): _at(evals, b, "eval/return_mean", budgets) for b in budgets},
        "return_std": {str(b): _at(evals, b, "eval/return_std", budgets) for b in budgets},
        "train_s_per_1k": 1000 * train_s / max(evals),
        "peak_rss_mb": None,  # only the process that ran the job can tell
        "time_s": {k: last[f"time/{k}_s"] for k in ("act", "env", "update", "eval")},
        "run": str(run),
        "env_steps": max(r["env_step"] for r in rows),  # how far the run got
    }
    for key in ("depth/loops_hard_mean", "depth/loops_easy_mean", "depth/auroc_hard", "plan/loops_mean"):
        if key in last:  # suite envs label hard steps
            out[key.split("/")[1]] = {str(b): _at(evals, b, key, budgets) for b in budgets}
    return out


def _result_path(task: str, method: str, seed: int, results: Path | None = None, suffix: str = ".json") -> Path:
    """A job's result file (``suffix=".partial.json"``: a stopped looped run's) in ``results``
    (default: this grid's folder)."""
    return (results or RESULTS) / f"{task}__{method}__s{seed}{suffix}"


def _partial_path(task: str, seed: int, results: Path | None = None) -> Path:
    return _result_path(task, "looped", seed, results, ".partial.json")


def collect_partial(runs_dir: str | Path, tasks=TASKS) -> list[Path]:
    """``.partial.json`` files for looped runs under ``runs_dir`` that evaluated at least one
    budget point but have no result file (stopped or still running); returns the files written."""
    written = []
    for task in tasks:
        for run_dir in sorted(Path(runs_dir).glob(f"{task}__s*")):
            seed = int(run_dir.name.rsplit("__s", 1)[1])
            found = _latest_run(run_dir)
            if _result_path(task, "looped", seed).exists() or not found:
                continue
            try:
                result = _looped_result(found[0], list(TASKS[task][2]))
            except ValueError:
                continue  # no evaluation yet: nothing to report
            result |= {"partial": True, "job": f"{task}__looped__s{seed}"}
            path = _partial_path(task, seed)
            with atomic_path(path, suffix=".json") as tmp:
                tmp.write_text(json.dumps(result, indent=1))
            written.append(path)
    return written


def _at(evals: dict[int, dict], budget: int, key: str, budgets: list[int]) -> float | None:
    """The evaluation of ``budget``: the first one at or past it (action repeat can step over
    it) and before the next budget point. None where there is none: no evaluation runs before
    the seed phase ends (MountainCar's 2,000 seed steps skip its 1k point), and the next point's
    evaluation must not stand in for it."""
    end = min((b for b in budgets if b > budget), default=float("inf"))
    step = min((s for s in evals if budget <= s < end), default=None)
    value = evals[step].get(key) if step is not None else None
    return None if value is None else float(value)


def run_sb3(task: str, seed: int, budgets: list[int]) -> dict:
    """SB3's SAC (continuous) or DQN (discrete) to the last budget, evaluating at each."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN, SAC
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    from loopwm_rl.envs import make_env

    torch.set_num_threads(1)
    env_id = TASKS[task][0]
    env, eval_env = make_env(env_id), Monitor(make_env(env_id))
    if isinstance(env.action_space, gym.spaces.Discrete):
        # RL-Zoo's CartPole-v1 settings; SB3's DQN defaults are Atari's
        algo = DQN(
            "MlpPolicy",
            env,
            learning_rate=2.3e-3,
            batch_size=64,
            buffer_size=100_000,
            learning_starts=1000,
            gamma=0.99,
            target_update_interval=10,
            train_freq=256,
            gradient_steps=128,
            exploration_fraction=0.16,
            exploration_final_eps=0.04,
            policy_kwargs={"net_arch": [256, 256]},
            seed=seed,
            device="cpu",
        )
    else:
        algo = SAC("MlpPolicy", env, seed=seed, device="cpu")
    returns, stds, train_s, done = {}, {}, 0.0, 0
    for budget in budgets:
        start = time.perf_counter()
        algo.learn(total_timesteps=budget - done, reset_num_timesteps=False)
        train_s += time.perf_counter() - start
        done = budget
        mean, std = evaluate_policy(algo, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
        returns[str(budget)], stds[str(budget)] = float(mean), float(std)
        print(f"{task} sb3 s{seed} @{budget}: {mean:.1f} ± {std:.1f}", flush=True)
    return {
        "returns": returns,
        "return_std": stds,
        "train_s_per_1k": 1000 * train_s / budgets[-1],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "algorithm": type(algo).__name__,
    }


def jobs(tasks, methods, seeds, runs_dir: str, overrides: list[str], max_steps: int = 0) -> list[Job]:
    """One job per (task, method, seed), its result file under ``RESULTS``."""
    out = []
    for task in tasks:
        budgets = [b for b in TASKS[task][2] if not max_steps or b <= max_steps]
        for method in methods:
            for seed in seeds:
                kwargs = {"task": task, "seed": seed, "budgets": budgets}
                if method == "looped":
                    kwargs |= {"runs_dir": runs_dir, "overrides": overrides, "results": str(RESULTS)}
                out.append(
                    Job(
                        name=f"{task}__{method}__s{seed}",
                        fn=f"{__file__}:run_{method}",
                        kwargs=kwargs,
                        result=_result_path(task, method, seed),
                    )
                )
    return out


def load_groups(partial: bool = False) -> dict[tuple[str, str], list[dict]]:
    """Result files by (task, method); with ``partial``, also the ``.partial.json`` of jobs
    that have no result file (each marked ``"partial": True``)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in sorted(RESULTS.glob("*.json")):
        name = path.name.removesuffix(".partial.json").removesuffix(".json")
        if path.name.endswith(".partial.json") and (not partial or (RESULTS / f"{name}.json").exists()):
            continue
        task, method, _ = name.split("__")
        groups[(task, method)].append(json.loads(path.read_text()))
    return groups


def table_rows(groups: dict[tuple[str, str], list[dict]]) -> list[dict]:
    """One row per (task, method, budget point): mean and std over the seeds that reached it;
    ``partial`` counts the seeds read from a stopped run."""
    rows = []
    for (task, method), results in groups.items():
        for budget in TASKS[task][2]:
            reached = [r for r in results if r["returns"].get(str(budget)) is not None]
            if not reached:
                continue
            values = [r["returns"][str(budget)] for r in reached]
            peaks = [r["peak_rss_mb"] for r in results if r.get("peak_rss_mb") is not None]
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "env_steps": budget,
                    "seeds": len(values),
                    "partial": sum(bool(r.get("partial")) for r in reached),
                    "return_mean": float(np.mean(values)),
                    "return_std": float(np.std(values)),
                    "train_s_per_1k": float(np.mean([r["train_s_per_1k"] for r in results])),
                    "peak_rss_mb": float(np.max(peaks)) if peaks else float("nan"),
                }
            )
    return rows


def markdown(groups: dict[tuple[str, str], list[dict]], rows: list[dict]) -> list[str]:
    """The Markdown table: ``mean ± std (seeds)`` per budget point, ``*`` where a seed's value
    comes from a stopped run (``--partial``)."""
    lines = ["| task | method | " + " | ".join(f"{b // 1000}k" for b in SHORT) + " | train s / 1k steps | peak MB |"]
    lines.append("|---" * (len(SHORT) + 4) + "|")
    for (task, method), _ in sorted(groups.items()):
        cells = {r["env_steps"]: r for r in rows if r["task"] == task and r["method"] == method}
        if not cells:
            continue
        any_row = next(iter(cells.values()))
        points = [
            f"{c['return_mean']:.0f} ± {c['return_std']:.0f} ({c['seeds']}{'*' if c['partial'] else ''})"
            if (c := cells.get(b))
            else "-"
            for b in TASKS[task][2]
        ]
        budgets = "/".join(f"{b // 1000}k" for b in TASKS[task][2])
        label = task if TASKS[task][2] == SHORT else f"{task} ({budgets})"
        peak = "-" if np.isnan(any_row["peak_rss_mb"]) else f"{any_row['peak_rss_mb']:.0f}"
        lines.append(
            f"| {label} | {method} | {' | '.join(points + ['-'] * (len(SHORT) - len(points)))} | "
            f"{any_row['train_s_per_1k']:.0f} | {peak} |"
        )
    if any(r["partial"] for r in rows):
        lines.append("")
        lines.append("\\* includes a run stopped before its last budget point (`--partial`)")
    return lines


def summarize(out_dir: Path, partial: bool = False) -> None:
    """``sample_efficiency.csv``, ``.md`` and ``.png`` from every result file (and, with
    ``partial``, from the ``.partial.json`` of stopped runs)."""
    groups = load_groups(partial)
    rows = table_rows(groups)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "sample_efficiency.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = markdown(groups, rows) + _depth_lines(groups)
    (out_dir / "sample_efficiency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(rows, out_dir / "sample_efficiency.png")


def check_folders(results: Path, runs_dir: str) -> None:
    """A variant grid (its own ``--results``) must keep its runs apart from the preset's.

    With the preset's run folders it would resume the preset's runs under the variant's
    overrides, and ``--partial`` would file the preset's stopped runs as the variant's.

    Raises:
        ValueError: a variant's results folder with the preset's runs folder.
    """
    if results.resolve() != DEFAULT_RESULTS.resolve() and Path(runs_dir).resolve() == Path(DEFAULT_RUNS).resolve():
        raise ValueError(
            f"--results {results} is a variant's grid, but --runs-dir is the preset's ({DEFAULT_RUNS}): "
            "give the variant its own --runs-dir (the one its runs were trained in)"
        )


def summary_dir(results: Path) -> Path:
    """Where the grid in ``results`` writes its CSV, table and plot: ``benchmarks/results`` for
    the preset's grid, the variant's own folder otherwise."""
    return HERE / "results" if results.resolve() == DEFAULT_RESULTS.resolve() else results


def _depth_lines(groups: dict[tuple[str, str], list[dict]]) -> list[str]:
    """Suite envs label hard steps: mean loops on hard over easy evaluation steps, and the
    AUROC of loops for hard, at each budget point (mean over seeds)."""
    lines = []
    for (task, method), results in sorted(groups.items()):
        results = [r for r in results if "loops_hard_mean" in r]
        if not results:
            continue
        if not lines:
            header = "| task | method | budget | seeds | loops hard / easy | AUROC of loops for hard |"
            lines = ["", header, "|---" * 6 + "|"]
        for budget in map(str, TASKS[task][2]):
            hard = [r["loops_hard_mean"].get(budget) for r in results]
            easy = [r["loops_easy_mean"].get(budget) for r in results]
            auroc = [r.get("auroc_hard", {}).get(budget) for r in results]
            pairs = [(h, e, a) for h, e, a in zip(hard, easy, auroc, strict=True) if h is not None and e]
            if pairs:
                ratio = np.mean([h / e for h, e, _ in pairs])
                aurocs = [a for _, _, a in pairs if a is not None]
                auc = f"{np.mean(aurocs):.2f}" if aurocs else "-"
                lines.append(f"| {task} | {method} | {int(budget) // 1000}k | {len(pairs)} | {ratio:.2f} | {auc} |")
    return lines


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method, color in zip(METHODS, ("tab:blue", "tab:orange"), strict=True):
            mine = [r for r in rows if r["task"] == task and r["method"] == method]
            pts = sorted((r["env_steps"], r["return_mean"], r["return_std"]) for r in mine)
            if pts:
                x, y, s = map(np.array, zip(*pts, strict=True))
                ax.plot(x, y, "o-", color=color, label=method)
                ax.fill_between(x, y - s, y + s, color=color, alpha=0.2)
        ax.set_title(TASKS[task][0])
        ax.set_xscale("log")
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("evaluation return (10 episodes)")
    axes[0][0].legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main() -> None:
    global RESULTS  # --results: every function here reads the grid's folder from it
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--launcher", default="local", choices=LAUNCHERS)
    parser.add_argument("--processes", type=int, default=1, help="local launcher: jobs at once")
    parser.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: a local instance)")
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS)
    parser.add_argument(
        "--results",
        default=str(DEFAULT_RESULTS),
        help="folder of the result files: a variant of the looped agent (overrides) gets its own grid",
    )
    parser.add_argument("--summarize", action="store_true", help="only aggregate the result files")
    parser.add_argument(
        "--partial",
        action="store_true",
        help="first write .partial.json for looped runs under --runs-dir stopped before their last "
        "budget point, and count them in the table (marked *)",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=0,
        help="stop at this budget point (0: the task's last); to go further later, delete the result "
        "file and re-run: the looped run resumes from its checkpoint",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="where the CSV, table and plot go (default: benchmarks/results for the preset's grid, "
        "the --results folder for a variant, so a variant never overwrites the preset's table)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides for the looped agent's train")
    args = parser.parse_args()
    RESULTS = Path(args.results)
    if not args.summarize or args.partial:  # only these read the run folders
        try:
            check_folders(RESULTS, args.runs_dir)
        except ValueError as err:
            parser.error(str(err))
    if not args.summarize:
        grid = jobs(args.tasks, args.methods, args.seeds, args.runs_dir, args.overrides, args.max_steps)
        report = run_jobs(grid, args.launcher, processes=args.processes, ray_address=args.ray_address)
        print(report.summary())
    if args.partial:
        for path in collect_partial(args.runs_dir, args.tasks):
            print(f"partial: {path}")
    summarize(Path(args.out) if args.out else summary_dir(RESULTS), partial=args.partial)


if __name__ == "__main__":
    main()

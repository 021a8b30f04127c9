"""Return against world-model FLOPs per env step while planning, with one trained agent.

Each trained run (``loopwm-rl train``) is evaluated with the same world model, critic and
planner, changing only how deep its imagined steps go:

- ``fixed{K}``: every imagined step runs K loops (``planner.halting=fixed``, ``max_loops=K``);
- ``adaptive{b}``: the trained halting rule, its threshold calibrated so that the latest 2,048
  replayed transitions take ``b`` of the loop cap on average;
- ``screen{s}``: multi-fidelity; every candidate scored at ``s`` loop(s) per step, the best
  quarter re-scored at the full cap (``planner.screen_loops``), and
  ``screen{s}_adaptive``: the same with the re-scoring under the trained rule at budget 0.5.

World-model FLOPs per agent decision (one plan; an env step unless ``env.action_repeat``) are
``a * imagined steps + b * loops`` summed over the plan,
with ``a`` (a step's fixed part: input, readout) and ``b`` (one loop of one sample) counted by
``torch.utils.flop_counter`` on the model itself; the critic and the planner's own arithmetic
are left out. Each (run, variant) is one job (:mod:`loopwm_rl.jobs`) with its result file.

    python benchmarks/planning_depth.py --runs runs/floor5k/b0.5/* --episodes 3
    python benchmarks/planning_depth.py --runs runs/cartpole/* --variants fixed8 h10=planner.horizon=10
    python benchmarks/planning_depth.py --summarize
    python benchmarks/planning_depth.py --results benchmarks/results/planning_depth_hopper_terminal --summarize

``--summarize`` groups result files by env and variant, so runs trained with different settings
belong in their own ``--results`` folder (default ``benchmarks/results/planning_depth``).
"""

from __future__ import annotations

from loopwm_rl import cores  # noqa: F401  (before torch loads: OpenMP reads its wait policy once)

# isort: split
import argparse
import dataclasses
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from loopwm_rl.jobs import LAUNCHERS, Job, run_jobs

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "planning_depth"
VARIANTS = (
    "fixed1",
    "fixed2",
    "fixed4",
    "fixed8",
    "adaptive0.2",
    "adaptive0.3",
    "adaptive0.5",
    "screen1",
    "screen1_adaptive",
)


def step_flops(model, z: torch.Tensor, action: torch.Tensor) -> tuple[float, float]:
    """(a, b): FLOPs of an imagined step's fixed part and of one loop, per sample."""
    counts = []
    for k in (1, 2):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.step(z, action, halting="fixed", max_loops=k)
        counts.append(counter.get_total_flops() / z.shape[0])
    b = counts[1] - counts[0]
    return counts[0] - b, b


def split_variant(variant: str) -> tuple[str, list[str]]:
    """``NAME=key=value,...`` -> (NAME, overrides); a built-in variant -> (variant, []).

    Raises:
        ValueError: settings that are not ``planner.key=value``, or an unknown built-in kind.
    """
    name, _, settings = variant.partition("=")
    overrides = [s for s in settings.split(",") if s]
    if settings and not all(o.startswith("planner.") and "=" in o for o in overrides):
        raise ValueError(f"variant {variant!r}: settings must be planner.key=value, separated by commas")
    if not settings and not variant.startswith(("fixed", "adaptive", "screen")):
        raise ValueError(f"unknown variant {variant!r}; known: {list(VARIANTS)} or NAME=planner.key=value,...")
    return name, overrides


def evaluate(run: str, variant: str, episodes: int) -> dict:
    """Evaluate the run's final agent under one planning variant."""
    from loopwm_rl import run_setup
    from loopwm_rl.agents import PlanningAgent
    from loopwm_rl.runconfig import apply_overrides
    from loopwm_rl.trainer import Trainer

    trainer = Trainer.from_run(run)
    cfg = trainer.cfg
    model = trainer.model.eval()
    cap = model.cfg.loop_cap
    planner = cfg.planner
    obs, action, z = trainer._recent()
    name, overrides = split_variant(variant)
    if overrides:
        planner = apply_overrides(cfg, overrides).planner
    elif variant.startswith("fixed"):
        k = int(variant[len("fixed") :])
        planner = dataclasses.replace(planner, halting="fixed", max_loops=min(k, cap))
    elif variant.startswith("adaptive"):
        run_setup.calibrate_to_budget(model, obs, action, float(variant[len("adaptive") :]), z)
    else:  # screen (split_variant admits no other kind)
        screen = int(variant[len("screen") :].split("_")[0])
        if variant.endswith("_adaptive"):
            run_setup.calibrate_to_budget(model, obs, action, 0.5, z)
        else:
            planner = dataclasses.replace(planner, halting="fixed")
        planner = dataclasses.replace(planner, screen_loops=screen)
    a, b = step_flops(model, z[:256], action[:256])
    env = trainer.eval_env
    agent = PlanningAgent(model, env.action_space, planner, trainer.critic, seed=cfg.train.seed + 7)
    returns, flops, loops, final_obs = [], [], [], []
    for ep in range(episodes):
        o, _ = env.reset(seed=10_000 + ep)
        agent.reset()
        total, done = 0.0, False
        while not done:
            act, stats = agent.act(o, eval=True)
            flops.append(a * stats.imagined_transitions + b * (stats.loops_screen + stats.loops_full))
            loops.append(stats.loops_mean)
            o, r, terminated, truncated, _ = env.step(act)
            total += float(r)
            done = terminated or truncated
        returns.append(total)
        final_obs.append(np.asarray(o, np.float64).round(3).tolist())  # how each episode ended
    return {
        "run": run,
        "env": cfg.env.id,
        "seed": cfg.train.seed,
        "variant": name,
        "overrides": overrides,
        "return_mean": float(np.mean(returns)),
        "returns": returns,
        "final_obs": final_obs,
        "mflops_per_decision": float(np.mean(flops)) / 1e6,
        "loops_per_imagined_step": float(np.mean(loops)),
        "flops_step_fixed": a,
        "flops_per_loop": b,
    }


def summarize(results: Path = RESULTS) -> None:
    """A Markdown table of the result files in ``results``, one row per (env, variant)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in sorted(results.glob("*.json")):
        r = json.loads(path.read_text())
        groups[(r["env"], r["variant"])].append(r)
    print(
        "| env | variant | seeds | return (mean ± std over seeds) | MFLOPs / decision | vs fixed8 "
        "| loops / imagined step |"
    )
    print("|---|---|---|---|---|---|---|")
    for env in sorted({e for e, _ in groups}):
        ref = groups.get((env, "fixed8"))
        ref_flops = np.mean([r["mflops_per_decision"] for r in ref]) if ref else None
        own = sorted({v for e, v in groups if e == env} - set(VARIANTS))
        for variant in (*VARIANTS, *own):
            rows = groups.get((env, variant))
            if not rows:
                continue
            ret = [r["return_mean"] for r in rows]
            fl = np.mean([r["mflops_per_decision"] for r in rows])
            ratio = f"{fl / ref_flops:.2f}" if ref_flops else "-"
            loops = np.mean([r["loops_per_imagined_step"] for r in rows])
            cells = [env, variant, len(rows), f"{np.mean(ret):.1f} ± {np.std(ret):.1f}", f"{fl:.1f}", ratio]
            print("| " + " | ".join(map(str, cells)) + f" | {loops:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=[], help="train run folders (their last checkpoint)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--launcher", default="local", choices=LAUNCHERS)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--summarize", action="store_true")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder of result files: written by jobs, read by --summarize"
    )
    args = parser.parse_args()
    if not args.summarize:
        try:  # a bad variant fails here, before any job runs
            names = [split_variant(variant)[0] for variant in args.variants]
        except ValueError as err:
            parser.error(str(err))
        grid = [
            Job(
                name=f"{Path(run).name}__{name}",
                fn=f"{__file__}:evaluate",
                kwargs={"run": run, "variant": variant, "episodes": args.episodes},
                result=args.results / f"{Path(run).name}__{name}.json",
            )
            for run in args.runs
            for variant, name in zip(args.variants, names, strict=True)
        ]
        print(run_jobs(grid, args.launcher, processes=args.processes).summary())
    summarize(args.results)


if __name__ == "__main__":
    main()

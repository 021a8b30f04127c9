"""Env steps per second of online training, and where the time goes, for preset variants.

Each variant trains ``loopwm-rl train <preset>`` for ``--steps`` env steps past the seed
phase, one variant after another in the same run (so the machine's load is shared alike), and
the planning phase is timed from the trainer's own counters (``time/act_s``, ``time/env_s``,
``time/update_s``) between an evaluation right after the seed phase and one at the end;
evaluation and the seed phase's pretraining are left out.

    python benchmarks/train_speed.py --preset pendulum \
        --variants before=env.action_repeat=1,planner.warm_iterations=0 now=
"""

from __future__ import annotations

from loopwm_rl import cores  # before torch loads: OpenMP reads its wait policy once

# isort: split
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from loopwm_rl.runconfig import load_run_config

PARTS = ("act", "env", "update")


def measure(preset: str, overrides: list[str], steps: int, seed: int) -> dict:
    presets = preset.split("+")  # pendulum+debug
    cfg = load_run_config(presets, overrides)
    start = cfg.train.seed_steps + cfg.env.action_repeat  # the first evaluation after the seed phase
    end = start + steps
    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "loopwm_rl", "train", *presets, "--quiet", *overrides]
        cmd += [f"train.total_steps={end}", f"train.eval_at={start},{end}", "train.eval_episodes=1"]
        cmd += [f"train.seed={seed}", "train.threads=1", f"train.runs_dir={runs}", "wandb.mode=disabled"]
        subprocess.run(cmd, check=True, env=cores.job_environment(), stdout=subprocess.DEVNULL)
        (metrics,) = Path(runs).glob("*/metrics.jsonl")
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    first, last = [r for r in rows if "time/act_s" in r][:2]
    spent = {p: last[f"time/{p}_s"] - first[f"time/{p}_s"] for p in PARTS}
    taken = last["env_step"] - first["env_step"]
    return {
        "env_steps": taken,
        "steps_per_s": taken / sum(spent.values()),
        **{f"{p}_ms_per_step": 1e3 * v / taken for p, v in spent.items()},
        "return": last["eval/return_mean"],
        "plan_loops_mean": last.get("plan/loops_mean"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="pendulum")
    parser.add_argument("--variants", nargs="+", required=True, help="NAME=key=value,key=value (empty: the preset)")
    parser.add_argument("--steps", type=int, default=1000, help="env steps timed past the seed phase")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the variants, alternating")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/train_speed.json")
    args = parser.parse_args()
    variants = {}
    for item in args.variants:
        name, _, rest = item.partition("=")
        variants[name] = [o for o in rest.split(",") if o]
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, overrides in variants.items():
            results[name].append(measure(args.preset, overrides, args.steps, args.seed))
            print(name, json.dumps(results[name][-1]), flush=True)
    Path(args.out).write_text(json.dumps({"preset": args.preset, "variants": variants, "results": results}, indent=1))
    base = next(iter(variants))
    best = {name: max(r["steps_per_s"] for r in rs) for name, rs in results.items()}
    print("| variant | env steps / s (best of repeats) | x first | plan ms / step | update ms / step | env ms / step |")
    print("|---|---|---|---|---|---|")
    for name, rs in results.items():
        r = max(rs, key=lambda r: r["steps_per_s"])
        print(
            f"| {name} | {best[name]:.1f} | {best[name] / best[base]:.2f} | {r['act_ms_per_step']:.1f} | "
            f"{r['update_ms_per_step']:.1f} | {r['env_ms_per_step']:.2f} |"
        )


if __name__ == "__main__":
    main()

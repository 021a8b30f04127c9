"""Held-out one-step error of a looped world model at each loop count, over seeds.

Sets the thresholds of ``tests/test_learning.py``: the standard-map data (3 map iterations per
step) needs depth, so error at ``max_loops`` should sit well below error at 1 loop.

    python benchmarks/loops_matter.py --seeds 0 1 2 --data standard_map
"""

from __future__ import annotations

from loopwm_rl import cores  # before torch loads: OpenMP reads its wait policy once

# isort: split
import argparse

import torch

from loopwm_rl import synthetic as dynamics
from loopwm_rl.synthetic import fit_arrays as fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", default="standard_map", choices=["standard_map", "bouncing_ball", "pendulum"])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--max-loops", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: one (loopwm_rl.cores)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--set", nargs="*", default=[], metavar="key=value", help="model config overrides")
    args = parser.parse_args()
    args.threads = cores.resolve_threads(args.threads)
    torch.set_num_threads(args.threads)
    if args.data == "bouncing_ball":

        def gen(episodes, steps, seed):
            return dynamics.rollout_env("LoopWM/BouncingBall-v0", episodes, steps, seed)
    else:
        gen = getattr(dynamics, args.data)
    overrides = [
        f"max_loops={args.max_loops}",
        "train_loops=poisson",
        "mu_rec=3",
        f"mu_bwd={args.max_loops}",
        "halting.rule=fixed",
        *args.set,
    ]
    print(f"# loops_matter: data={args.data} steps={args.steps} threads={args.threads} overrides={overrides}")
    print("| seed | " + " | ".join(f"K={k}" for k in range(1, args.max_loops + 1)) + " | max/1 | hard/easy at max |")
    print("|---" * (args.max_loops + 3) + "|")
    for seed in args.seeds:
        model = fit(gen(64, 100, seed=2 * seed), overrides, args.steps, seed=seed, lr=args.lr)
        test = gen(16, 100, seed=2 * seed + 1)
        per_k = [dynamics.one_step_errors(model, test, max_loops=k)[0] for k in range(1, args.max_loops + 1)]
        errs = [float(e.mean()) for e in per_k]
        hard = test["hard"].reshape(-1)
        ratio = f"{float(per_k[-1][hard].mean()) / float(per_k[-1][~hard].mean()):.1f}" if hard.any() else "-"
        cells = " | ".join(f"{e:.4f}" for e in errs)
        print(f"| {seed} | {cells} | {errs[-1] / errs[0]:.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()

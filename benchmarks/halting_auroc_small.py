"""Spread over seeds of the setting ``tests/test_learning.py`` uses for the default halting rule:
``looped small`` fitted on 10k random-policy bouncing-ball transitions (800 updates, lr 3e-3),
threshold set by the default compute budget (``halting.budget``, 20 % of ``max_loops``) on
held-out episodes, AUROC of loops for ``hard`` on
4k fresh transitions. Sets the test's threshold.

    python benchmarks/halting_auroc_small.py --seeds 0 1 2
"""

from __future__ import annotations

from loopwm_rl import cores  # before torch loads: OpenMP reads its wait policy once

# isort: split
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from loopwm_rl.checkpoint import load_world_model
from loopwm_rl.config import load_model_config
from loopwm_rl.dataset import collect
from loopwm_rl.depth import auroc
from loopwm_rl.offline import fit, score_transitions
from loopwm_rl.runconfig import RunConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=float, default=None, help="default: the config's halting.budget")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: one (loopwm_rl.cores)")
    args = parser.parse_args()
    args.threads = cores.resolve_threads(args.threads)
    torch.set_num_threads(args.threads)
    print("| seed | AUROC loops | loops hard / easy | loops / max | fit s |")
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        start = time.perf_counter()
        train = collect("LoopWM/BouncingBall-v0", 10_000, seed=2 * seed, progress=False)
        test = collect("LoopWM/BouncingBall-v0", 4000, seed=2 * seed + 1, progress=False)
        with tempfile.TemporaryDirectory() as out:
            cfg = load_model_config(["looped", "small"])
            run = RunConfig.for_fit(cfg, updates=800, lr=3e-3, budget=args.budget, seed=seed, threads=args.threads)
            fit(train, run, Path(out), progress=False)
            model, _ = load_world_model(Path(out) / "model.pt")
        loops = score_transitions(model, test, np.arange(len(test["observations"]))).loops
        hard = test["hard"]
        print(
            f"| {seed} | {auroc(loops, hard):.3f} | {loops[hard].mean():.2f} / {loops[~hard].mean():.2f} "
            f"| {loops.mean() / model.cfg.max_loops:.2f} | {time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

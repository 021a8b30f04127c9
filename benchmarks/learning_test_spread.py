"""Spread of the learning tests' own fits over seeds, at one torch thread (the suite's setting).

The thresholds of ``tests/test_learning.py::test_extra_loops_lower_held_out_error`` and
``test_one_loop_serves_easy_steps_about_as_well_as_a_one_pass_model`` are set from this output:
max/1-loop error ratios of the standard-map fit (poisson and max recipes) over fit seeds, and
the easy-floor ratio over seeds. About 15 minutes on one core for 5 seeds.

    OMP_NUM_THREADS=1 python benchmarks/learning_test_spread.py --seeds 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_learning import easy_floor_ratio

from loopwm_rl.synthetic import fit_arrays, one_step_errors, standard_map

RECIPES = {"poisson": ["train_loops=poisson", "mu_rec=3"], "max": ["train_loops=max"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for s in range(args.seeds):
        for name, recipe in RECIPES.items():
            start = time.time()
            torch.manual_seed(0)  # as the suite's autouse fixture does
            overrides = ["max_loops=4", *recipe, "mu_bwd=4", "halting.rule=fixed"]
            model = fit_arrays(standard_map(64, 100, seed=0), overrides, 1200, seed=s)
            test = standard_map(16, 100, seed=1)
            err1, _ = one_step_errors(model, test, max_loops=1)
            err_max, _ = one_step_errors(model, test)
            ratio = float(err_max.mean()) / float(err1.mean())
            print(name, s, round(ratio, 3), f"{time.time() - start:.0f} s", flush=True)
    for s in range(args.seeds):
        start = time.time()
        torch.manual_seed(0)
        print("easy_floor", s, round(easy_floor_ratio(seed=s), 3), f"{time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()

"""What a trained run's world model still misses among the terminations in its replay.

Restores each run (``loopwm-rl train``, its last checkpoint and buffer) and scores every stored
termination as ``train.terminal_priority`` does: the continuation the model predicts at the
terminating step, imagined along the replayed slice under its actions (0 for an ending the
model has learned, near 1 for one it has not). ``--split DIM:BOUND`` sorts the terminations
by whether observation dimension DIM ends beyond +-BOUND (CartPole ``0:2.4``: the cart left
the track, against the pole falling), so one can see whether a rare kind of ending is the
one the model misses. One JSON per run under ``results/replayed_terminations/``.

    python benchmarks/replayed_terminations.py --runs runs/cp_prio/cartpole__s1/* --split 0:2.4
"""

from __future__ import annotations

from loopwm_rl import cores  # noqa: F401  (before torch loads: OpenMP reads its wait policy once)

# isort: split
import argparse
import json
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "replayed_terminations"


def parse_split(text: str) -> tuple[int, float]:
    try:
        dim, bound = text.split(":")
        return int(dim), float(bound)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--split takes DIM:BOUND (e.g. 0:2.4), got {text!r}") from err


def summary(cont: np.ndarray) -> dict:
    if not len(cont):
        return {"count": 0}
    return {
        "count": len(cont),
        "cont_mean": round(float(cont.mean()), 4),
        "cont_max": round(float(cont.max()), 4),
        "missed": int((cont > 0.5).sum()),  # still predicted to continue
    }


def score_run(run: Path, split: tuple[int, float] | None) -> dict:
    from loopwm_rl.trainer import Trainer

    trainer = Trainer.from_run(run)
    _, batch, cont = trainer.score_terminations()  # the priorities train.terminal_priority would set now
    cont = cont.numpy()  # (N,)
    out = {"run": str(run), "env_step": trainer.step, "all": summary(cont)}
    if split is not None:
        dim, bound = split
        beyond = batch.obs[-1, :, dim].abs().numpy() > bound  # (N,) the observation after the last step
        out[f"obs[{dim}] beyond {bound}"] = summary(cont[beyond])
        out[f"obs[{dim}] within {bound}"] = summary(cont[~beyond])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, type=Path, help="run directories of `loopwm-rl train`")
    parser.add_argument("--split", type=parse_split, help="DIM:BOUND: group by |obs[DIM]| > BOUND at the end")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.results.mkdir(parents=True, exist_ok=True)
    for run in args.runs:
        if not (run / "checkpoints" / "last.pt").is_file():
            raise SystemExit(f"{run} has no checkpoint (checkpoints/last.pt): not a `loopwm-rl train` run")
        out = score_run(run, args.split)
        print(json.dumps(out))
        (args.results / f"{run.name}.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

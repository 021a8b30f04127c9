"""Deferred decoding (LoopWM-DD) against per-step decoding, on the same data, split and seeds.

Both fit the ``small`` looped world model on training sequences of ``--horizon`` steps (the
depth benchmark's split: 70 % train / 10 % validation / 20 % test, by episode). Per-step
decoding supervises every step; deferred decoding (``model.decode_every``) only every K-th
step and the last, with the horizon curriculum and, in one variant, the contraction hinge.
Each model is scored on the test episodes by:

- one-step error (``WorldModel.score``, the model's own halting rule);
- 10-step open-loop error: imagined from a real observation under the logged actions, error
  of each imagined observation in units of the delta's scale (mean over the 10 steps, and at
  step 10);
- imagined transitions per second: ``imagine`` of 256 candidates over 10 steps (one thread).

Each (env, variant, seed) writes ``benchmarks/results/deferred/ENV__VARIANT__sSEED.json`` and is
skipped when that file exists:

    python benchmarks/deferred_decoding.py --envs LoopWM/BouncingBall-v0 Pendulum-v1 --seeds 0
    python benchmarks/deferred_decoding.py --summarize
"""

from __future__ import annotations

from loopwm_rl import cores  # before torch loads: OpenMP reads its wait policy once

# isort: split
import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from depth_vs_difficulty import add_launcher_args, fit_config, held_out_split, launch  # one split, fit and grid

from loopwm_rl.config import load_model_config
from loopwm_rl.dataset import collect
from loopwm_rl.jobs import Job
from loopwm_rl.offline import open_loop_error, score_transitions

RESULTS = Path(__file__).parent / "results" / "deferred"
OPEN_LOOP = 10
# name -> model overrides (on ``looped small``); K is the fit horizon
VARIANTS = {
    "per_step": ["decode_every=1"],
    "deferred": ["decode_every={H}", "decode_curriculum=250"],
    "deferred_hinge": ["decode_every={H}", "decode_curriculum=250", "contraction_budget=0.5"],
}


def imagined_per_second(model, data: dict, repeats: int = 5) -> float:
    """Transitions per second of ``imagine`` over 256 candidates x 10 steps (best of repeats)."""
    obs = torch.as_tensor(data["observations"][:1]).expand(256, -1)
    logged = data["actions"]
    actions = torch.as_tensor(np.resize(logged, (OPEN_LOOP, 256, *logged.shape[1:])))  # (T, N, ...)
    best = np.inf
    with torch.no_grad():
        z = model.encode(obs)
        for _ in range(repeats):
            start = time.perf_counter()
            model.imagine(z, actions)
            best = min(best, time.perf_counter() - start)
    return OPEN_LOOP * 256 / best


def run_one(env_id: str, variant: str, seed: int, args) -> dict:
    start = time.perf_counter()
    data = collect(env_id, args.steps, seed=seed, progress=False)
    _, _, test_idx = held_out_split(data, seed)
    overrides = [o.format(H=args.horizon) for o in VARIANTS[variant]]
    cfg = load_model_config(["looped", "small"], overrides)
    fit_args = argparse.Namespace(updates=args.updates, threads=args.threads, fit=[f"horizon={args.horizon}"])
    fit_start = time.perf_counter()
    model = fit_config(data, cfg, seed, fit_args)
    fit_s = time.perf_counter() - fit_start
    curve = open_loop_error(model, data, test_idx, OPEN_LOOP, 512, seed)
    return {
        "env": env_id,
        "variant": variant,
        "overrides": overrides,
        "seed": seed,
        "steps": args.steps,
        "updates": args.updates,
        "horizon": args.horizon,
        "one_step": float(score_transitions(model, data, test_idx).error.mean()),
        "open_loop": curve.tolist(),
        "imagined_per_s": imagined_per_second(model, data),
        "fit_s": fit_s,
        "wall_s": time.perf_counter() - start,
    }


def summarize(paths: list[Path]) -> None:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in sorted(paths):
        r = json.loads(path.read_text())
        groups[(r["env"], r["variant"])].append(r)

    def stat(values, fmt="{:.3f}") -> str:
        return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values))}"

    print(
        f"| env | variant | seeds | one-step error | {OPEN_LOOP}-step open-loop error (mean over steps) "
        f"| error at step {OPEN_LOOP} | imagined transitions / s | fit wall s |"
    )
    print("|---" * 8 + "|")
    for (env, variant), rs in groups.items():
        print(
            f"| {env} | {variant} | {len(rs)} | {stat([r['one_step'] for r in rs])} "
            f"| {stat([np.mean(r['open_loop']) for r in rs])} | {stat([r['open_loop'][-1] for r in rs])} "
            f"| {stat([r['imagined_per_s'] for r in rs], '{:.0f}')} | {stat([r['fit_s'] for r in rs], '{:.0f}')} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["LoopWM/BouncingBall-v0", "Pendulum-v1"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=20_000, help="random-policy transitions per dataset")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--horizon", type=int, default=6, help="training sequence length (K of deferred decoding)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: one (loopwm_rl.cores)")
    add_launcher_args(parser)
    parser.add_argument("--summarize", nargs="*", metavar="JSON", help="only print the table (default: every result)")
    args = parser.parse_args()
    if args.summarize is not None:
        summarize([Path(p) for p in args.summarize] or list(RESULTS.glob("*.json")))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    grid = [
        Job(
            name=f"{env_id.replace('/', '-')}__{variant}__s{seed}",
            fn=f"{__file__}:job",
            kwargs={"env_id": env_id, "variant": variant, "seed": seed, "args": vars(args)},
            result=RESULTS / f"{env_id.replace('/', '-')}__{variant}__s{seed}.json",
            threads=cores.resolve_threads(args.threads),
        )
        for env_id in args.envs
        for seed in args.seeds
        for variant in args.variants
    ]
    launch(grid, args)
    summarize(list(RESULTS.glob("*.json")))


def job(env_id: str, variant: str, seed: int, args: dict) -> dict:
    """One cell of the grid, as a job of :mod:`loopwm_rl.jobs`."""
    ns = argparse.Namespace(**args)
    torch.set_num_threads(cores.resolve_threads(ns.threads))
    return run_one(env_id, variant, seed, ns)


if __name__ == "__main__":
    main()

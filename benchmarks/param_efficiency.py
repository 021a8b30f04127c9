"""Parameter efficiency: the parameters a looped and a stacked (L = max_loops) model need to
reach the same 10-step open-loop error, from a sweep over width.

The sweep is one ``compare`` grid (:mod:`loopwm_rl.compare`, so it resumes and runs through
``--launcher ray`` like any other): ``looped+token_dim=W`` and ``stacked_depth+token_dim=W``
for each width W and seed, fitted on the same data. Per seed, each kind's error is
interpolated against log(parameters) (piecewise linear between the widths, sorted by
parameters) at a target error both kinds reach: the larger of the two kinds' best errors.
The ratio of the parameters each needs there is the parameter efficiency (stacked / looped;
above 1 the looped model needs fewer).

    python benchmarks/param_efficiency.py --env LoopWM/BouncingBall-v0 --widths 8 16 32 64 --seeds 0 1 2
"""

from __future__ import annotations

from loopwm_rl import cores  # noqa: F401  (before torch loads: OpenMP reads its wait policy once)

# isort: split
import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from loopwm_rl.compare import compare
from loopwm_rl.dataset import collect, save_dataset
from loopwm_rl.jobs import LAUNCHERS
from loopwm_rl.runconfig import load_run_config

HERE = Path(__file__).resolve().parent
KINDS = ("looped", "stacked_depth")


def params_at(points: list[tuple[float, float]], target: float) -> float | None:
    """Parameters at which the error first falls to ``target``, interpolating error linearly in
    log(parameters) between sorted (parameters, error) points; None if it never does."""
    points = sorted(points)
    if points[0][1] <= target:
        return points[0][0]
    for (p0, e0), (p1, e1) in itertools.pairwise(points):
        if e1 <= target < e0:
            frac = (e0 - target) / (e0 - e1)
            return float(np.exp(np.log(p0) + frac * (np.log(p1) - np.log(p0))))
    return None


def efficiency(rows: list[dict]) -> list[dict]:
    """Per seed: the target error, each kind's parameters at it, and their ratio."""
    out = []
    for seed in sorted({int(r["seed"]) for r in rows}):
        curves = {
            kind: [
                (float(r["params"]), float(r["open_loop_10"]))
                for r in rows
                if int(r["seed"]) == seed and r["key"].split("+")[0] == kind
            ]
            for kind in KINDS
        }
        if not all(len(c) >= 2 for c in curves.values()):
            continue
        target = max(min(e for _, e in c) for c in curves.values())
        need = {kind: params_at(c, target) for kind, c in curves.items()}
        ratio = need["stacked_depth"] / need["looped"] if all(need.values()) else None
        params = {f"params_{k}": v for k, v in need.items()}
        out.append({"seed": seed, "target_10step_error": target, **params, "ratio": ratio})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="LoopWM/BouncingBall-v0")
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000, help="random-policy transitions collected")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--launcher", default="local", choices=LAUNCHERS)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--out", default=None, help="default: benchmarks/results/param_efficiency/<env>")
    args = parser.parse_args()
    out = Path(args.out or HERE / "results" / "param_efficiency" / args.env.replace("/", "-"))
    out.mkdir(parents=True, exist_ok=True)
    data_path = out / "data.npz"
    if not data_path.exists():
        save_dataset(data_path, collect(args.env, args.steps, seed=0, progress=False))
    models = [f"{kind}+token_dim={w}" for w in args.widths for kind in KINDS]
    overrides = [
        f"env.id={args.env}",
        f"fit.data={data_path}",
        f"fit.updates={args.updates}",
        f"compare.seeds={','.join(map(str, args.seeds))}",
        f"compare.models={','.join(models)}",
        f"compare.launcher={args.launcher}",
        f"compare.processes={args.processes}",
        "fit.threads=1",
        "wandb.mode=disabled",
    ]
    cfg = load_run_config(["looped", "small"], overrides, command="compare")
    rows = compare(cfg, out)
    result = efficiency(rows)
    (out / "param_efficiency.json").write_text(json.dumps(result, indent=1))
    print("| seed | target 10-step error | looped params | stacked (L = max_loops) params | ratio |")
    print("|---|---|---|---|---|")
    for r in result:
        need = [f"{r[f'params_{k}']:,.0f}" if r[f"params_{k}"] else "-" for k in KINDS]
        cells = [f"{r['target_10step_error']:.4f}", *need]
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        print(f"| {r['seed']} | {' | '.join(cells)} | {ratio} |")
    ratios = [r["ratio"] for r in result if r["ratio"]]
    if ratios:
        print(f"ratio mean {np.mean(ratios):.2f} ± {np.std(ratios):.2f} over {len(ratios)} seeds")


if __name__ == "__main__":
    main()

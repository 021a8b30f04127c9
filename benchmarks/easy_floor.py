"""The easy-step floor: is a looped model at one loop as good as a single-pass model?

Per (env, size, variant, seed), on held-out random-policy transitions (the depth benchmark's
split: 70 % train / 10 % validation / 20 % test, by episode, the same for every variant):

- one-step error at every fixed loop count K = 1..cap on all, hard and easy steps;
- the model's own halting rule at the default budget, calibrated on the validation split:
  error, mean loops, loops on hard vs easy steps, AUROC of loops for ``hard``.

Sizes: ``small`` (the world model every online preset plans with) and ``default``. Variants
are a named list of model overrides (``VARIANTS``; ``--name N --set k=v ...`` adds one);
``stacked1`` is the reference: the parameter-matched stacked model, one block run once.
Envs without a ``hard`` label (Pendulum) count every step as easy.

Each (env, size, variant, seed) writes ``benchmarks/results/easy_floor/ENV__SIZE__VARIANT__sSEED.json``
and is skipped when that file exists:

    python benchmarks/easy_floor.py --envs LoopWM/BouncingBall-v0 --seeds 0 --variants stacked1 looped
    python benchmarks/easy_floor.py --summarize
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
from depth_vs_difficulty import add_launcher_args, fit_config, held_out_split, launch, split_stats

from loopwm_rl.calibration import calibrate
from loopwm_rl.config import load_model_config
from loopwm_rl.dataset import collect
from loopwm_rl.depth import auroc
from loopwm_rl.envs import SUITE
from loopwm_rl.jobs import Job
from loopwm_rl.offline import score_transitions

RESULTS = Path(__file__).parent / "results" / "easy_floor"
SIZES = {"small": ["small"], "default": []}
REFERENCE = "stacked1"
# name -> (model presets, overrides); the size preset goes after the presets
VARIANTS: dict[str, tuple[list[str], list[str]]] = {
    "stacked1": (["stacked", "stacked_param_matched"], []),
    "looped": (["looped"], []),  # today's defaults
    "before": (["looped"], ["loop_init_std=0"]),  # the defaults before the easy-floor ablation
    # the ablation of the easy-step floor (BENCHMARKS.md, "The easy-step floor")
    "uniform": (["looped"], ["loop_weight_power=0"]),
    "p05": (["looped"], ["loop_weight_power=0.5"]),
    "first1": (["looped"], ["first_loop_weight=1"]),
    "distill": (["looped"], ["w_distill=1"]),
    "uniform_distill": (["looped"], ["loop_weight_power=0", "w_distill=1"]),
    "readout_loop": (["looped"], ["readout=loop"]),
    "h0": (["looped"], ["loop_init_std=1"]),
    "uniform_first3": (["looped"], ["loop_weight_power=0", "first_loop_weight=3"]),
    "no_head": (["looped"], ["halting.rule=fixed"]),
    "h0half": (["looped"], ["loop_init_std=1", "loop_init_share=0.5"]),
    "last_only": (["looped"], ["mu_bwd=1"]),  # gradients and supervision at the last loop only
    "local": (["looped"], ["loop_gradient=local"]),
    "uniform_local": (["looped"], ["loop_gradient=local", "loop_weight_power=0"]),
    "adaln": (["looped"], ["loop_conditioning=adaln"]),
    "uniform_adaln": (["looped"], ["loop_conditioning=adaln", "loop_weight_power=0"]),
    "h0q3": (["looped"], ["loop_init_std=1", "loop_init_share=0.75"]),
    "h0half_distill": (["looped"], ["loop_init_std=1", "loop_init_share=0.5", "w_distill=1"]),
    "uniform_h0half": (["looped"], ["loop_weight_power=0", "loop_init_std=1", "loop_init_share=0.5"]),
}


def model_presets(size: str, variant: str) -> tuple[list[str], list[str]]:
    kind, overrides = VARIANTS[variant]
    return [*kind, *SIZES[size]], overrides


def run_one(env_id: str, size: str, variant: str, seed: int, args) -> dict:
    data = collect(env_id, args.steps, seed=seed, progress=False)
    _, val_idx, test_idx = held_out_split(data, seed)
    presets, overrides = model_presets(size, variant)
    start = time.perf_counter()
    model = fit_config(data, load_model_config(presets, overrides), seed, args)
    wall = time.perf_counter() - start
    hard = data["hard"][test_idx] if "hard" in data else np.zeros(len(test_idx), dtype=bool)
    obs, nxt = (torch.as_tensor(data[k][test_idx]) for k in ("observations", "next_observations"))
    noop = model.prediction_error(obs, nxt).numpy()
    per_k = [
        score_transitions(model, data, test_idx, batch=len(test_idx), halting="fixed", max_loops=k).error
        for k in range(1, model.cfg.loop_cap + 1)
    ]
    result = {
        "env": env_id,
        "size": size,
        "variant": variant + args.suffix,
        "suffix": args.suffix,
        "presets": presets,
        "set": overrides,
        "fit": args.fit,
        "seed": seed,
        "steps": args.steps,
        "updates": args.updates,
        "hard_fraction": float(hard.mean()),
        "params": sum(p.numel() for p in model.parameters()),
        "fit_wall_s": wall,
        "noop": split_stats(noop, hard),
        "per_k": [split_stats(e, hard) for e in per_k],
    }
    if model.cfg.halting.rule != "fixed":
        val = {k: torch.as_tensor(data[k][val_idx]) for k in ("observations", "actions")}
        halting = calibrate(model, val["observations"], val["actions"], args.budget)[0]
        scores = score_transitions(model, data, test_idx, batch=len(test_idx), halting=halting)
        loops = scores.loops
        result["adaptive"] = {
            "budget": args.budget,
            "error": split_stats(scores.error, hard),
            "loops_mean": float(loops.mean()),
            "loops_hard": float(loops[hard].mean()) if hard.any() else None,
            "loops_easy": float(loops[~hard].mean()),
            "auroc": auroc(loops, hard) if hard.any() else None,
        }
    return result


def from_depth(config: str, variant: str) -> None:
    """Result files for ``variant`` from the depth benchmark's files of ``config``: the same
    data, split, model, fit and seed, so the same model (the depth benchmark's ``objects``
    rows are this benchmark's ``before`` on the suite envs, bit for bit on BouncingBall seed 0)."""
    depth_dir = Path(__file__).parent / "results" / "depth"
    for path in sorted(depth_dir.glob(f"*__{config}__s*.json")):
        r = json.loads(path.read_text())
        main_rule = r["rules"][0]
        result = {
            **{k: r[k] for k in ("env", "seed", "steps", "updates", "hard_fraction", "params", "noop", "per_k")},
            "size": "small" if r["model"] == ["looped", "small"] else "default",
            "variant": variant,
            "suffix": "",
            "presets": r["model"],
            "set": r["set"],
            "fit": r["fit"],
            "source": f"benchmarks/results/depth/{path.name}",
            "adaptive": {
                "budget": main_rule["budget"],
                "error": main_rule["error"],
                **{k: main_rule[k] for k in ("loops_mean", "loops_hard", "loops_easy", "auroc")},
            },
        }
        out = result_path(r["env"], result["size"], variant, r["seed"])
        if not out.exists():
            out.write_text(json.dumps(result, indent=1))
            print(f"{out.name} <- {path.name}")


def result_path(env_id: str, size: str, variant: str, seed: int) -> Path:
    return RESULTS / f"{env_id.replace('/', '-')}__{size}__{variant}__s{seed}.json"


def summarize(paths: list[Path]) -> None:
    """Per (env, size): each variant's errors as ratios to the stacked reference, mean ± std
    over the seeds both have."""
    runs: dict[tuple[str, str, str], dict[int, dict]] = defaultdict(dict)
    for path in sorted(paths):
        r = json.loads(path.read_text())
        runs[(r["env"], r["size"], r["variant"])][r["seed"]] = r

    def stat(values, fmt="{:.2f}") -> str:
        values = [v for v in values if v is not None and np.isfinite(v)]
        if not values:
            return "-"
        return f"{fmt.format(np.mean(values))} ± {fmt.replace('+', '').format(np.std(values))}"

    print(
        "| env | size | variant | seeds | params | K=1 easy / ref easy | K=max hard / ref hard "
        "| adaptive all / ref all | adaptive loops (hard / easy) | AUROC | K=1 easy, hard, all | K=max all |"
    )
    print("|---" * 12 + "|")
    for (env, size, variant), by_seed in sorted(runs.items()):
        suffix = next(iter(by_seed.values())).get("suffix", "")
        ref = runs.get((env, size, REFERENCE + suffix), {})
        seeds = sorted(s for s in by_seed if s in ref) if variant != REFERENCE + suffix else sorted(by_seed)
        rs = [by_seed[s] for s in seeds]
        refs = [ref[s]["per_k"][-1] for s in seeds] if ref else [None] * len(rs)
        if not rs:
            continue
        ad = [r.get("adaptive") for r in rs]

        def ratio(values, refvalues):
            return [v / w if v is not None and w else None for v, w in zip(values, refvalues, strict=True)]

        ref_easy = [x["easy"] if x else None for x in refs]
        ref_hard = [x["hard"] if x else None for x in refs]
        ref_all = [x["all"] if x else None for x in refs]
        print(
            f"| {env} | {size} | {variant} | {len(rs)} | {rs[0]['params']} "
            f"| {stat(ratio([r['per_k'][0]['easy'] for r in rs], ref_easy))} "
            f"| {stat(ratio([r['per_k'][-1]['hard'] for r in rs], ref_hard))} "
            f"| {stat(ratio([a['error']['all'] if a else None for a in ad], ref_all))} "
            f"| {stat([a['loops_hard'] if a else None for a in ad], '{:.1f}')} / "
            f"{stat([a['loops_easy'] if a else None for a in ad], '{:.1f}')} "
            f"| {stat([a['auroc'] if a else None for a in ad])} "
            f"| {stat([r['per_k'][0]['easy'] for r in rs], '{:.3f}')}, "
            f"{stat([r['per_k'][0]['hard'] for r in rs], '{:.3f}')}, "
            f"{stat([r['per_k'][0]['all'] for r in rs], '{:.3f}')} "
            f"| {stat([r['per_k'][-1]['all'] for r in rs], '{:.3f}')} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=[*SUITE, "Pendulum-v1"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", nargs="+", default=["small"], choices=list(SIZES))
    parser.add_argument("--variants", nargs="+", help=f"default: {REFERENCE} and looped, or only the --name variant")
    parser.add_argument("--name", help="add a looped variant of this name with --set overrides")
    parser.add_argument("--set", nargs="*", default=[], metavar="key=value", help="the added variant's model overrides")
    parser.add_argument("--fit", nargs="*", default=[], metavar="key=value", help="fit config overrides (all variants)")
    parser.add_argument(
        "--suffix", default="", help="appended to every variant's name (say, for --fit or --updates changes)"
    )
    parser.add_argument("--steps", type=int, default=20_000, help="random-policy transitions per dataset")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--budget", type=float, default=0.2, help="mean loops / cap for the adaptive rows")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: one (loopwm_rl.cores)")
    parser.add_argument(
        "--from-depth", nargs=2, metavar=("CONFIG", "VARIANT"), help="import depth-benchmark results as VARIANT rows"
    )
    add_launcher_args(parser)
    parser.add_argument("--summarize", nargs="*", metavar="JSON", help="only print the table (default: every result)")
    args = parser.parse_args()
    if args.from_depth:
        from_depth(*args.from_depth)
        return
    if args.summarize is not None:
        summarize([Path(p) for p in args.summarize] or list(RESULTS.glob("*.json")))
        return
    if args.name:
        VARIANTS[args.name] = (["looped"], list(args.set))
    variants = args.variants or ([args.name] if args.name else [REFERENCE, "looped"])
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {sorted(VARIANTS)} (or add one with --name/--set)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    grid = [
        Job(
            name=result_path(env_id, size, variant + args.suffix, seed).stem,
            fn=f"{__file__}:job",
            kwargs={"env_id": env_id, "size": size, "variant": variant, "seed": seed, "args": vars(args)},
            result=result_path(env_id, size, variant + args.suffix, seed),
            threads=cores.resolve_threads(args.threads),
        )
        for env_id in args.envs
        for seed in args.seeds
        for size in args.sizes
        for variant in variants
    ]
    launch(grid, args)
    summarize(list(RESULTS.glob("*.json")))


def job(env_id: str, size: str, variant: str, seed: int, args: dict) -> dict:
    """One cell of the grid, as a job of :mod:`loopwm_rl.jobs` (in a fresh process the variant
    a ``--name`` run added is added again)."""
    ns = argparse.Namespace(**args)
    if ns.name:
        VARIANTS[ns.name] = (["looped"], list(ns.set))
    torch.set_num_threads(cores.resolve_threads(ns.threads))
    return run_one(env_id, size, variant, seed, ns)


if __name__ == "__main__":
    main()

"""Do loops follow difficulty? Per (env, model config, seed), on held-out random-policy
transitions:

- one-step error at every fixed loop count K = 1..max_loops, on all, hard and easy steps, and
  the error of predicting "no change" on the same steps;
- the default halting rule at a compute budget (``--budgets``): AUROC of loops for the label,
  loops on hard vs easy steps, error against ``fixed`` at equal compute (a share of rows at
  floor(mean loops), the rest one loop more: no rounding in the baseline's favour);
- where the env counts sub-step events (``info["events"]``): mean loops and error per event
  count, and the Spearman correlation of loops with events;
- test-time depth: ``fixed`` at 1x, 2x and 4x the training depth, and the path gap
  (:meth:`WorldModel.path_gap`: the same input from h0 = 0 and a random h0);
- an input-only classifier's AUROC for the label (how visible the events are).

Labels: the env's ``hard``; envs without one (MuJoCo) use the top decile of the model's own
one-step error at max loops. Data: one dataset per env and seed, split by episode (train 70 %
/ validation 10 % / test 20 %); one model fitted with the config's rule, calibrated on the
validation split. Other heads (``--rules``) are trained on its frozen weights (:func:`fit_head`).

Each (env, config, seed) is a job (:mod:`loopwm_rl.jobs`) that writes
``benchmarks/results/depth/ENV__CONFIG__sSEED.json`` and is skipped when that file exists, so a
grid fills in over several runs (``--launcher ray`` fans it out over a Ray cluster):

    python benchmarks/depth_vs_difficulty.py --envs LoopWM/Cradle-v0 --seeds 0 1 2 \
        --name objects --set tokenizer=objects
    python benchmarks/depth_vs_difficulty.py --summarize            # tables of every result file
"""

from __future__ import annotations

from loopwm_rl import cores  # before torch loads: OpenMP reads its wait policy once

# isort: split
import argparse
import copy
import dataclasses
import json
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from loopwm_rl.calibration import calibrate
from loopwm_rl.checkpoint import load_world_model
from loopwm_rl.config import HaltingConfig, load_model_config, parse_overrides
from loopwm_rl.dataset import SequenceSampler, collect, episode_index, split_episodes
from loopwm_rl.depth import auroc, spearman
from loopwm_rl.envs import SUITE
from loopwm_rl.halting import make_halting
from loopwm_rl.jobs import LAUNCHERS, Job, run_jobs
from loopwm_rl.offline import episode_latents, fit, score_transitions
from loopwm_rl.runconfig import RunConfig

RESULTS = Path(__file__).parent / "results" / "depth"


def errors_and_loops(model, data, idx, halting=None, max_loops=None):
    scores = score_transitions(model, data, idx, batch=len(idx), halting=halting, max_loops=max_loops)
    return scores.error, scores.loops


def calibrated(model, data, val_idx, rule: str, budget: float) -> HaltingConfig:
    obs, act = torch.as_tensor(data["observations"][val_idx]), torch.as_tensor(data["actions"][val_idx])
    z = episode_latents(model, data, val_idx)  # a model with memory sees its episode so far
    return calibrate(model, obs, act, budget, rule=rule, z=z)[0]


# steps since the episode started: where a model with memory should get better
TIME_BUCKETS = ((0, 5), (5, 20), (20, 100), (100, 10**9))


def by_time(err: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """Mean error per bucket of steps since the episode started (t in [lo, hi))."""
    return {
        f"{lo}-{hi if hi < 10**9 else 'end'}": float(err[(t >= lo) & (t < hi)].mean())
        for lo, hi in TIME_BUCKETS
        if ((t >= lo) & (t < hi)).any()
    }


def input_only_auroc(data, labels, train_idx, test_idx, seed: int, steps: int = 1500) -> float:
    """An MLP on (observation, action) alone predicting ``hard``: how visible the events are."""
    torch.manual_seed(seed)

    def features(idx):
        act = data["actions"][idx]
        act = act[:, None].astype(np.float32) if act.ndim == 1 else act
        return torch.as_tensor(np.concatenate([data["observations"][idx], act], 1))

    x, y = features(train_idx), torch.as_tensor(labels[train_idx], dtype=torch.float32)
    loc, scale = x.mean(0), x.std(0) + 1e-6
    net = nn.Sequential(nn.Linear(x.shape[1], 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    pos_weight = (1 - y.mean()) / y.mean().clamp_min(1e-3)
    for _ in range(steps):
        i = torch.randint(len(x), (256,))
        loss = nn.functional.binary_cross_entropy_with_logits(
            net((x[i] - loc) / scale).squeeze(-1), y[i], pos_weight=pos_weight
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        scores = net((features(test_idx) - loc) / scale).squeeze(-1).numpy()
    return auroc(scores, labels[test_idx])


def held_out_split(data: dict, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """By episode: the training mask (70 %), validation rows (10 %) and test rows (20 %)."""
    train, rest = split_episodes(data, 0.3, seed)
    rest_idx = np.flatnonzero(rest)
    return train, rest_idx[: len(rest_idx) // 3], rest_idx[len(rest_idx) // 3 :]


def fit_config(data, cfg, seed: int, args):
    """``cfg`` fitted on the training episodes of :func:`held_out_split` (``fit`` holds out the
    same episodes: same fraction and seed, so it never sees val/test), with ``args.updates``,
    ``args.threads`` and the ``args.fit`` overrides."""
    out = Path(tempfile.mkdtemp(prefix="loopwm-benchmark-"))
    try:
        run = RunConfig.for_fit(
            cfg, updates=args.updates, seed=seed, threads=args.threads, val_fraction=0.3, **parse_overrides(args.fit)
        )
        fit(data, run, out, progress=False)
        return load_world_model(out / "model.pt")[0]
    finally:
        shutil.rmtree(out)


def fit_model(data, args, rule: str, seed: int):
    return fit_config(data, load_model_config(args.model, [*args.set, f"halting.rule={rule}"]), seed, args)


def fit_head(model, data, train_mask, halting: HaltingConfig, updates: int, seed: int):
    """A copy of ``model`` with a fresh ``halting`` rule trained alone on the frozen world model.

    Trainable rules read detached features and learn from detached per-loop losses, so the
    world model does not depend on the rule; training each head on the same frozen weights
    compares the rules on identical predictions (and costs a forward pass, not a fit).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = copy.deepcopy(model)
    head.cfg = dataclasses.replace(head.cfg, halting=halting)
    head.halting = make_halting(halting, head.feature_dim)
    head.requires_grad_(False)
    head.halting.requires_grad_(True)
    optimizer = torch.optim.AdamW(head.halting.parameters(), lr=1e-3)
    sampler = SequenceSampler(data, train_mask, 3, burn_in=model.cfg.sequence_burn_in)
    head.train()
    for _ in range(updates):
        loss, _ = head.loss(sampler.sample(128, rng))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return head.eval()


def equal_compute_error(per_k: list[float], mean_loops: float) -> float:
    """Error of a fixed policy with exactly ``mean_loops`` mean loops: a share of the rows run
    floor(mean) loops and the rest one more (no rounding in the baseline's favour)."""
    lo = min(int(np.floor(mean_loops)), len(per_k))
    frac = mean_loops - lo
    return per_k[lo - 1] if lo == len(per_k) else (1 - frac) * per_k[lo - 1] + frac * per_k[lo]


def split_stats(err: np.ndarray, hard: np.ndarray) -> dict[str, float]:
    """Mean error on all, hard and easy rows (NaN for a class with no rows)."""

    def mean(mask: np.ndarray) -> float:
        return float(err[mask].mean()) if mask.any() else float("nan")

    return {"all": float(err.mean()), "hard": mean(hard), "easy": mean(~hard)}


def run_one(env_id: str, seed: int, args) -> dict:
    """Every number of one (env, config, seed), as a JSON-ready dict."""
    start = time.perf_counter()
    data = collect(env_id, args.steps, seed=seed, progress=False)
    train, val_idx, test_idx = held_out_split(data, seed)
    model = fit_model(data, args, "learned", seed)
    K = model.cfg.max_loops
    per_k = [errors_and_loops(model, data, test_idx, halting="fixed", max_loops=k)[0] for k in range(1, K + 1)]
    has_label = "hard" in data
    if has_label:
        labels = data["hard"]
    else:  # no ground truth: the steps the model itself finds hardest at max loops
        labels = np.zeros(len(data["observations"]), dtype=bool)
        labels[test_idx] = per_k[-1] >= np.quantile(per_k[-1], 0.9)
    hard = labels[test_idx]
    obs, nxt = (torch.as_tensor(data[k][test_idx]) for k in ("observations", "next_observations"))
    noop = model.prediction_error(obs, nxt).numpy()
    result = {
        "env": env_id,
        "config": args.name,
        "model": args.model,
        "set": args.set,
        "fit": args.fit,
        "seed": seed,
        "steps": args.steps,
        "updates": args.updates,
        "label": "hard" if has_label else "top-decile error at max loops",
        "hard_fraction": float(hard.mean()),
        "params": sum(p.numel() for p in model.parameters()),
        "ceiling_auroc": input_only_auroc(data, labels, np.flatnonzero(train), test_idx, seed) if has_label else None,
        "noop": split_stats(noop, hard),
        "per_k": [split_stats(e, hard) for e in per_k],
        "memory": model.cfg.memory,
    }
    t_test = episode_index(data)[1][test_idx]
    result["by_time"] = {"K=1": by_time(per_k[0], t_test), "K=max": by_time(per_k[-1], t_test)}
    # the step right after a hard one (same episode): in HiddenZones the first step whose
    # dynamics are the new zone's, which only a model that has seen that zone can predict
    after = np.zeros(len(test_idx), dtype=bool)
    after[1:] = hard[:-1] & ~hard[1:] & (t_test[1:] > 0) & (np.diff(test_idx) == 1)
    result["after_hard"] = {
        "fraction": float(after.mean()),
        "K=1": float(per_k[0][after].mean()) if after.any() else None,
        "K=max": float(per_k[-1][after].mean()) if after.any() else None,
        "easy_rest K=max": float(per_k[-1][~hard & ~after].mean()),
    }
    depth = max(1, round(model.cfg.train_mean_loops))
    result["test_time"] = {
        f"{m}x": split_stats(errors_and_loops(model, data, test_idx, halting="fixed", max_loops=m * depth)[0], hard)
        for m in (1, 2, 4)
    }
    act = torch.as_tensor(data["actions"][test_idx])
    result["path_gap"] = float(model.path_gap(episode_latents(model, data, test_idx), act, K).mean())
    events = data["events"][test_idx] if "events" in data else None
    rules = {"learned": model}
    own = model.cfg.halting
    for rule in args.rules:
        if rule == "act" or (rule.startswith("learned/") and rule != f"learned/{own.objective}"):
            name, _, objective = rule.partition("/")
            halting = dataclasses.replace(own, rule=name, objective=objective or own.objective)
            rules[rule] = fit_head(model, data, train, halting, args.updates, seed)
        elif rule == "convergence":
            rules[rule] = model
    rows = []
    for rule, rule_model in rules.items():
        for budget in args.budgets:
            halting = calibrated(rule_model, data, val_idx, rule.split("/")[0], budget)
            err, loops = errors_and_loops(rule_model, data, test_idx, halting=halting)
            per_k_mean = [e.mean() for e in per_k]
            row = {
                "rule": rule if rule != "learned" else f"learned/{own.objective}",
                "budget": budget,
                "loops_mean": float(loops.mean()),
                "loops_hard": float(loops[hard].mean()),
                "loops_easy": float(loops[~hard].mean()),
                "auroc": auroc(loops, hard),
                "error": split_stats(err, hard),
                "error_equal_compute": float(equal_compute_error(per_k_mean, loops.mean())),
                "error_by_time": by_time(err, t_test),
                "loops_after_hard": float(loops[after].mean()) if after.any() else None,
                "error_after_hard": float(err[after].mean()) if after.any() else None,
            }
            if events is not None:
                buckets = np.minimum(events, 5)
                row["spearman_events"] = spearman(loops, events)
                row["by_events"] = {
                    str(b): {
                        "n": int((buckets == b).sum()),
                        "loops": float(loops[buckets == b].mean()),
                        "error": float(err[buckets == b].mean()),
                        "error_k1": float(per_k[0][buckets == b].mean()),
                        "error_kmax": float(per_k[-1][buckets == b].mean()),
                        "noop": float(noop[buckets == b].mean()),
                    }
                    for b in np.unique(buckets)
                }
            rows.append(row)
    result["rules"] = rows
    result["wall_s"] = time.perf_counter() - start
    return result


def job(env_id: str, seed: int, args: dict) -> dict:
    """One (env, seed) cell of the grid, as a job of :mod:`loopwm_rl.jobs`."""
    ns = argparse.Namespace(**args)
    torch.set_num_threads(cores.resolve_threads(ns.threads))
    return run_one(env_id, seed, ns)


def add_launcher_args(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark grid takes to run its jobs (:func:`launch`)."""
    parser.add_argument("--launcher", default="local", choices=LAUNCHERS, help="local, or ray (the ray extra)")
    parser.add_argument("--processes", type=int, default=1, help="local launcher: jobs at once, each its own process")
    parser.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: a local instance)")
    parser.add_argument("--force", action="store_true", help="re-run even where a result file exists")


def launch(jobs: list[Job], args: argparse.Namespace) -> None:
    """Run a benchmark grid's jobs: those whose result file exists are skipped (unless
    ``--force``), so a grid fills in over several runs, one result file per cell."""
    report = run_jobs(jobs, args.launcher, processes=args.processes, ray_address=args.ray_address, force=args.force)
    print(report.summary(), flush=True)


def result_path(env_id: str, name: str, seed: int) -> Path:
    return RESULTS / f"{env_id.replace('/', '-')}__{name}__s{seed}.json"


def summarize(paths: list[Path]) -> None:
    """Mean ± std over seeds of every (env, config) in the result files."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in sorted(paths):
        r = json.loads(path.read_text())
        groups[(r["env"], r["config"])].append(r)

    def stat(values, fmt="{:.2f}") -> str:
        values = [v for v in values if v is not None and np.isfinite(v)]
        if not values:
            return "-"
        return f"{fmt.format(np.mean(values))} ± {fmt.replace('+', '').format(np.std(values))}"

    print(
        "| env | config | seeds | hard err / no change (K=max) | easy err / no change (K=1) | err K=max / K=1 "
        "(all, hard) | AUROC loops | AUROC input-only | loops hard / easy | err vs fixed@equal compute "
        "| Spearman(loops, events) | hard err 2x / 1x train depth | path gap |"
    )
    print("|---" * 13 + "|")
    for (env, name), rs in groups.items():
        main_rows = [r["rules"][0] for r in rs]
        print(
            f"| {env} | {name} | {len(rs)} "
            f"| {stat([r['per_k'][-1]['hard'] / r['noop']['hard'] for r in rs])} "
            f"| {stat([r['per_k'][0]['easy'] / r['noop']['easy'] for r in rs])} "
            f"| {stat([r['per_k'][-1]['all'] / r['per_k'][0]['all'] for r in rs])}, "
            f"{stat([r['per_k'][-1]['hard'] / r['per_k'][0]['hard'] for r in rs])} "
            f"| {stat([m['auroc'] for m in main_rows])} | {stat([r['ceiling_auroc'] for r in rs])} "
            f"| {stat([m['loops_hard'] / m['loops_easy'] for m in main_rows])} "
            f"| {stat([100 * (m['error']['all'] / m['error_equal_compute'] - 1) for m in main_rows], '{:+.1f}')} % "
            f"| {stat([m.get('spearman_events') for m in main_rows])} "
            f"| {stat([r['test_time']['2x']['hard'] / r['test_time']['1x']['hard'] for r in rs])} "
            f"| {stat([r['path_gap'] for r in rs])} |"
        )
    timed = {key: rs for key, rs in groups.items() if all("by_time" in r for r in rs)}
    if timed:
        print("\nOne-step error / no change by steps since the episode started (mean ± std over seeds)")
        buckets = list(next(iter(timed.values()))[0]["by_time"]["K=1"])
        print("| env | config | memory | error | " + " | ".join(f"t {b}" for b in buckets) + " |")
        print("|---" * (4 + len(buckets)) + "|")
        for (env, name), rs in timed.items():
            noop = [r["noop"]["all"] for r in rs]
            for label, get in (
                ("K=1", lambda r: r["by_time"]["K=1"]),
                ("K=max", lambda r: r["by_time"]["K=max"]),
                ("own rule", lambda r: r["rules"][0]["error_by_time"]),
            ):
                cells = [
                    stat([get(r).get(b, np.nan) / n for r, n in zip(rs, noop, strict=True)], "{:.3f}") for b in buckets
                ]
                print(f"| {env} | {name} | {rs[0]['memory']} | {label} | " + " | ".join(cells) + " |")
    for (env, name), rs in groups.items():
        if "by_events" not in rs[0]["rules"][0]:
            continue
        print(f"\n{env}, {name}: per event count (5 = 5 or more), mean over {len(rs)} seeds")
        print("| events | share | loops | err K=1 / no change | err K=max / no change | err K=max / K=1 |")
        print("|---|---|---|---|---|---|")
        keys = sorted({k for r in rs for k in r["rules"][0]["by_events"]}, key=int)
        for k in keys:
            cells = [r["rules"][0]["by_events"][k] for r in rs if k in r["rules"][0]["by_events"]]
            total = [sum(b["n"] for b in r["rules"][0]["by_events"].values()) for r in rs]
            print(
                f"| {k} | {np.mean([c['n'] / t for c, t in zip(cells, total, strict=False)]):.3f} "
                f"| {stat([c['loops'] for c in cells])} | {stat([c['error_k1'] / c['noop'] for c in cells], '{:.3f}')} "
                f"| {stat([c['error_kmax'] / c['noop'] for c in cells], '{:.3f}')} "
                f"| {stat([c['error_kmax'] / c['error_k1'] for c in cells])} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(SUITE))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000, help="random-policy transitions per dataset")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.2], help="mean loops / max_loops")
    parser.add_argument("--model", nargs="+", default=["looped", "small"])
    parser.add_argument("--set", nargs="*", default=[], metavar="key=value", help="model config overrides")
    parser.add_argument("--fit", nargs="*", default=[], metavar="key=value", help="fit config overrides")
    parser.add_argument("--name", default="default", help="the config's name in result files and tables")
    parser.add_argument(
        "--rules", nargs="*", default=[], help="more rules beside the model's own: convergence, learned/OBJECTIVE, act"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: one (loopwm_rl.cores)")
    add_launcher_args(parser)
    parser.add_argument("--summarize", nargs="*", metavar="JSON", help="only print tables (default: every result)")
    args = parser.parse_args()
    if args.summarize is not None:
        summarize([Path(p) for p in args.summarize] or list(RESULTS.glob("*.json")))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    grid = [
        Job(
            name=result_path(env_id, args.name, seed).stem,
            fn=f"{__file__}:job",
            kwargs={"env_id": env_id, "seed": seed, "args": vars(args)},
            result=result_path(env_id, args.name, seed),
            threads=cores.resolve_threads(args.threads),
        )
        for env_id in args.envs
        for seed in args.seeds
    ]
    launch(grid, args)
    summarize([j.result for j in grid if j.result.exists()])


if __name__ == "__main__":
    main()

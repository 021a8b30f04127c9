"""Do loops follow difficulty? For each suite env and halting rule: AUROC of loops for the
``hard`` label on held-out transitions, beside an input-only classifier's AUROC (the ceiling),
loops on hard vs easy transitions, compute used, one-step error against the fixed rule at
``max_loops`` and at equal compute, and test-time depth scaling.

Per env and seed: one random-policy dataset split by episode (train 70 % / validation 10 % /
test 20 %) and one model fitted with the ``learned`` rule; ``convergence`` and ``fixed`` need
no training and are scored on its weights, the other heads (``--rules``) are trained on its
frozen weights (:func:`fit_head`). Thresholds of
adaptive rules are set on the validation split by compute budgets (mean loops =
``--budgets`` x max_loops, :func:`loopwm_rl.calibration.calibrate`). The equal-compute
baseline is a fixed policy with exactly the adaptive rule's mean loops (a share of rows at
floor(mean), the rest one loop more). Test-time depth runs ``fixed`` at 1x, 2x and 4x the
training depth.

    python benchmarks/depth_vs_difficulty.py --seeds 0 1 2 | tee depth.log
    python benchmarks/depth_vs_difficulty.py --summarize depth.log
"""

from __future__ import annotations

from loopwm_rl import cores  # before torch loads: OpenMP reads its wait policy once

# isort: split
import argparse
import copy
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from loopwm_rl.calibration import calibrate
from loopwm_rl.checkpoint import load_world_model
from loopwm_rl.config import HaltingConfig, load_model_config
from loopwm_rl.dataset import SequenceSampler, collect, split_episodes
from loopwm_rl.depth import auroc
from loopwm_rl.envs import SUITE
from loopwm_rl.halting import make_halting
from loopwm_rl.offline import fit, score_transitions
from loopwm_rl.runconfig import RunConfig


def errors_and_loops(model, data, idx, halting=None, max_loops=None):
    scores = score_transitions(model, data, idx, batch=len(idx), halting=halting, max_loops=max_loops)
    return scores.error, scores.loops


def calibrated(model, data, val_idx, rule: str, budget: float) -> HaltingConfig:
    obs, act = torch.as_tensor(data["observations"][val_idx]), torch.as_tensor(data["actions"][val_idx])
    return calibrate(model, obs, act, budget, rule=rule)[0]


def input_only_auroc(data, train_idx, test_idx, seed: int, steps: int = 1500) -> float:
    """An MLP on (observation, action) alone predicting ``hard``: how visible the events are."""
    torch.manual_seed(seed)

    def features(idx):
        act = data["actions"][idx]
        act = act[:, None].astype(np.float32) if act.ndim == 1 else act
        return torch.as_tensor(np.concatenate([data["observations"][idx], act], 1))

    x, y = features(train_idx), torch.as_tensor(data["hard"][train_idx], dtype=torch.float32)
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
    return auroc(scores, data["hard"][test_idx])


def summarize(paths: list[str]) -> None:
    """Mean and spread over seeds of the rows this script printed (its logs, concatenated)."""
    rows: dict[tuple[str, str, str], list[list[str]]] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 14 and cells[0].startswith("LoopWM/"):
                rows.setdefault((cells[0], cells[1], cells[3]), []).append(cells)

    def num(text: str) -> float:
        return float(text.split()[0].rstrip("%")) / (100 if "%" in text.split()[0] else 1)

    def stat(values: list[float], pct: bool = False) -> str:
        mean, std = np.mean(values), np.std(values)
        return f"{mean:+.1%} ± {std:.1%}" if pct else f"{mean:.2f} ± {std:.2f}"

    print(
        "| env | rule | budget | seeds | AUROC loops | AUROC input-only | hard/easy loop ratio | loops / max "
        "| err vs fixed@max | err vs fixed@equal compute | err K=max / K=1 | err 2x, 4x / 1x train depth |"
    )
    print("|---" * 12 + "|")
    for (env, rule, budget), group in rows.items():

        def col(i: int, group=group) -> list[float]:
            return [num(r[i]) for r in group]

        k1_kmax = [float(r[12].split("/")[1]) / float(r[12].split("/")[0]) for r in group]
        scale = [[float(x) for x in r[13].split(",")] for r in group]
        print(
            f"| {env} | {rule} | {budget} | {len(group)} | {stat(col(4))} | {stat(col(5))} | {stat(col(7))} "
            f"| {stat(col(8))} | {stat(col(10), pct=True)} | {stat(col(11), pct=True)} | {stat(k1_kmax)} "
            f"| {np.mean([s[1] / s[0] for s in scale]):.2f}, {np.mean([s[2] / s[0] for s in scale]):.2f} |"
        )


def fit_model(data, args, rule: str, seed: int):
    cfg = load_model_config(args.model, [*args.set, f"halting.rule={rule}"])
    out = Path(tempfile.mkdtemp(prefix="depth_vs_difficulty-"))
    try:
        # fit holds out the same episodes (same fraction and seed): it never sees val/test
        run = RunConfig.for_fit(cfg, updates=args.updates, seed=seed, threads=args.threads, val_fraction=0.3)
        fit(data, run, out, progress=False)
        return load_world_model(out / "model.pt")[0]
    finally:
        shutil.rmtree(out)


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
    sampler = SequenceSampler(data, train_mask, 3)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(SUITE))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000, help="random-policy transitions per dataset")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument(
        "--budgets", type=float, nargs="+", default=[0.2, 0.3, 0.4], help="mean loops as fractions of max_loops"
    )
    parser.add_argument("--model", nargs="+", default=["looped", "small"])
    parser.add_argument("--set", nargs="*", default=[], metavar="key=value", help="model config overrides")
    parser.add_argument(
        "--rules",
        nargs="+",
        default=["convergence", "learned/gain", "learned/improve", "act"],
        help="learned/OBJECTIVE and act: the fitted model's own head if it matches, else a head trained on its "
        "frozen weights",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: one (loopwm_rl.cores)")
    parser.add_argument("--summarize", nargs="+", metavar="LOG", help="only summarise earlier output of this script")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    args.threads = cores.resolve_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(
        f"# depth_vs_difficulty: model={'+'.join(args.model)} set={args.set} steps={args.steps} "
        f"updates={args.updates} budgets={args.budgets} seeds={args.seeds} threads={args.threads}"
    )
    print(
        "| env | rule | seed | budget | AUROC loops | AUROC input-only | loops hard / easy | ratio | loops / max "
        "| err hard / easy | err vs fixed@max | err vs fixed@equal compute | err K=1 / K=max "
        "| err @ 1x, 2x, 4x train depth |"
    )
    print("|---" * 14 + "|")
    for env_id in args.envs:
        for seed in args.seeds:
            start = time.perf_counter()
            data = collect(env_id, args.steps, seed=seed, progress=False)
            train, rest = split_episodes(data, 0.3, seed)
            rest_idx = np.flatnonzero(rest)
            val_idx, test_idx = rest_idx[: len(rest_idx) // 3], rest_idx[len(rest_idx) // 3 :]
            ceiling = input_only_auroc(data, np.flatnonzero(train), test_idx, seed)
            hard = data["hard"][test_idx]
            # one fitted model; convergence and fixed need no training, the other heads are
            # trained on its frozen weights (fit_head)
            models = {"learned": fit_model(data, args, "learned", seed)}
            models["fixed"] = models["convergence"] = models["learned"]
            own = models["learned"].cfg.halting
            for rule in args.rules:
                if rule == "act" or (rule.startswith("learned/") and rule != f"learned/{own.objective}"):
                    name, _, objective = rule.partition("/")
                    halting = dataclasses.replace(own, rule=name, objective=objective or own.objective)
                    models[rule] = fit_head(models["learned"], data, train, halting, args.updates, seed)
                elif rule.startswith("learned/"):
                    models[rule] = models["learned"]
            errs = [
                errors_and_loops(models["learned"], data, test_idx, halting="fixed", max_loops=k)[0].mean()
                for k in range(1, models["learned"].cfg.max_loops + 1)
            ]
            base = models["learned"]
            K = base.cfg.max_loops
            depth = max(1, round(base.cfg.train_mean_loops))
            scaling = [
                errors_and_loops(base, data, test_idx, halting="fixed", max_loops=m * depth)[0].mean()
                for m in (1, 2, 4)
            ]
            for rule, budget in [("fixed", None)] + [(r, b) for r in args.rules for b in args.budgets]:
                model = models[rule]
                halting = "fixed" if budget is None else calibrated(model, data, val_idx, rule.split("/")[0], budget)
                err, loops = errors_and_loops(model, data, test_idx, halting=halting)
                lh, le = loops[hard].mean(), loops[~hard].mean()
                print(
                    f"| {env_id} | {rule} | {seed} | {'-' if budget is None else budget} | {auroc(loops, hard):.3f} "
                    f"| {ceiling:.3f} | {lh:.2f} / {le:.2f} | {lh / le:.2f} | {loops.mean() / K:.2f} "
                    f"| {err[hard].mean():.4f} / {err[~hard].mean():.4f} | {err.mean() / errs[-1] - 1:+.1%} "
                    f"| {err.mean() / equal_compute_error(errs, loops.mean()) - 1:+.1%} "
                    f"| {errs[0]:.4f} / {errs[-1]:.4f} | {', '.join(f'{e:.4f}' for e in scaling)} |",
                    flush=True,
                )
            print(f"# {env_id} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()

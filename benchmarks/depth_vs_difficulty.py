"""Do loops follow difficulty? For each suite env and halting rule: AUROC of loops for the
``hard`` label on held-out transitions, beside an input-only classifier's AUROC (the ceiling),
loops on hard vs easy transitions, compute used, one-step error against the fixed rule at
``max_loops`` and at equal compute, and test-time depth scaling.

Per env and seed: one random-policy dataset split by episode (train / validation / test), one
model fitted with the ``learned`` rule (also scored with ``convergence`` and ``fixed``, which
need no training, on the same weights) and one with ``act``. Thresholds of adaptive rules are
set on the validation split by a compute budget (mean loops = ``--budget`` x max_loops).

    python benchmarks/depth_vs_difficulty.py --seeds 0 1 2 --steps 20000 --updates 2000 | tee depth.log
    python benchmarks/depth_vs_difficulty.py --summarize depth.log
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from loopwm_rl.checkpoint import load_world_model
from loopwm_rl.config import load_model_config
from loopwm_rl.dataset import collect, split_episodes
from loopwm_rl.depth import auroc
from loopwm_rl.envs import SUITE
from loopwm_rl.offline import fit

GRID = {
    "learned": ("tau", np.linspace(0.02, 0.98, 49)),
    "convergence": ("tol", np.geomspace(1e-4, 3.0, 49)),
    "act": ("act_eps", np.linspace(0.0, 0.98, 50)),
}


def errors_and_loops(model, data, idx, halting=None, max_loops=None):
    with torch.no_grad():
        obs = torch.as_tensor(data["observations"][idx])
        nxt = torch.as_tensor(data["next_observations"][idx])
        act = torch.as_tensor(data["actions"][idx])
        out = model.step(model.encode(obs), act, halting=halting, max_loops=max_loops)
        err = model.prediction_error(out.obs, nxt)
    return err.numpy(), out.loops.numpy()


def calibrate(model, data, val_idx, rule: str, budget: float):
    """The rule's threshold whose validation mean loops are closest to ``budget * max_loops``."""
    key, grid = GRID[rule]
    target = budget * model.cfg.max_loops
    best = None
    for value in grid:
        cfg = dataclasses.replace(model.cfg.halting, rule=rule, **{key: float(value)})
        _, loops = errors_and_loops(model, data, val_idx, halting=cfg)
        gap = abs(loops.mean() - target)
        if best is None or gap < best[0]:
            best = (gap, cfg)
    return best[1]


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
    rows: dict[tuple[str, str], list[list[str]]] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 13 and cells[0].startswith("LoopWM/"):
                rows.setdefault((cells[0], cells[1]), []).append(cells)

    def num(text: str) -> float:
        return float(text.split()[0].rstrip("%")) / (100 if "%" in text.split()[0] else 1)

    def stat(values: list[float], pct: bool = False) -> str:
        mean, std = np.mean(values), np.std(values)
        return f"{mean:+.1%} ± {std:.1%}" if pct else f"{mean:.2f} ± {std:.2f}"

    print(
        "| env | rule | seeds | AUROC loops | AUROC input-only | hard/easy loop ratio | loops / max "
        "| err vs fixed@max | err vs fixed@equal compute | err K=max / K=1 | err 2x, 4x mu_rec / 1x |"
    )
    print("|---" * 11 + "|")
    for (env, rule), group in rows.items():

        def col(i: int, group=group) -> list[float]:
            return [num(r[i]) for r in group]

        k1_kmax = [float(r[11].split("/")[1]) / float(r[11].split("/")[0]) for r in group]
        scale = [[float(x) for x in r[12].split(",")] for r in group]
        print(
            f"| {env} | {rule} | {len(group)} | {stat(col(3))} | {stat(col(4))} | {stat(col(6))} | {stat(col(7))} "
            f"| {stat(col(9), pct=True)} | {stat(col(10), pct=True)} | {stat(k1_kmax)} "
            f"| {np.mean([s[1] / s[0] for s in scale]):.2f}, {np.mean([s[2] / s[0] for s in scale]):.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(SUITE))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000, help="random-policy transitions per dataset")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--budget", type=float, default=0.35, help="mean loops as a fraction of max_loops")
    parser.add_argument("--model", nargs="+", default=["looped", "small"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--summarize", nargs="+", metavar="LOG", help="only summarise earlier output of this script")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    torch.set_num_threads(args.threads)
    print(
        f"# depth_vs_difficulty: model={'+'.join(args.model)} steps={args.steps} updates={args.updates} "
        f"budget={args.budget} seeds={args.seeds} threads={args.threads}"
    )
    print(
        "| env | rule | seed | AUROC loops | AUROC input-only | loops hard / easy | ratio | loops / max "
        "| err hard / easy | err vs fixed@max | err vs fixed@mean | err K=1 / K=max | err @ 1x, 2x, 4x mu_rec |"
    )
    print("|---" * 13 + "|")
    for env_id in args.envs:
        for seed in args.seeds:
            start = time.perf_counter()
            data = collect(env_id, args.steps, seed=seed, progress=False)
            train, rest = split_episodes(data, 0.3, seed)
            rest_idx = np.flatnonzero(rest)
            val_idx, test_idx = rest_idx[: len(rest_idx) // 3], rest_idx[len(rest_idx) // 3 :]
            ceiling = input_only_auroc(data, np.flatnonzero(train), test_idx, seed)
            hard = data["hard"][test_idx]
            models = {}
            for trained in ("learned", "act"):
                cfg = load_model_config(args.model, [f"halting.rule={trained}"])
                out = Path(tempfile.mkdtemp(prefix="depth_vs_difficulty-"))
                # fit holds out the same episodes (same fraction and seed): it never sees val/test
                fit(
                    data,
                    cfg,
                    out,
                    updates=args.updates,
                    seed=seed,
                    threads=args.threads,
                    progress=False,
                    val_fraction=0.3,
                )
                models[trained] = load_world_model(out / "model.pt")[0]
                shutil.rmtree(out)
            base = models["learned"]
            K = base.cfg.max_loops
            err_max, _ = errors_and_loops(base, data, test_idx, halting="fixed")
            err_one, _ = errors_and_loops(base, data, test_idx, halting="fixed", max_loops=1)
            mu = max(1, round(base.cfg.mu_rec))
            scaling = [
                errors_and_loops(base, data, test_idx, halting="fixed", max_loops=m * mu)[0].mean() for m in (1, 2, 4)
            ]
            for rule in ("fixed", "convergence", "learned", "act"):
                model = models["act"] if rule == "act" else base
                halting = "fixed" if rule == "fixed" else calibrate(model, data, val_idx, rule, args.budget)
                err, loops = errors_and_loops(model, data, test_idx, halting=halting)
                mean_k = max(1, round(loops.mean()))
                err_eq, _ = errors_and_loops(base, data, test_idx, halting="fixed", max_loops=mean_k)
                lh, le = loops[hard].mean(), loops[~hard].mean()
                print(
                    f"| {env_id} | {rule} | {seed} | {auroc(loops, hard):.3f} | {ceiling:.3f} | {lh:.2f} / {le:.2f} "
                    f"| {lh / le:.2f} | {loops.mean() / K:.2f} | {err[hard].mean():.4f} / {err[~hard].mean():.4f} "
                    f"| {err.mean() / err_max.mean() - 1:+.1%} | {err.mean() / err_eq.mean() - 1:+.1%} (K={mean_k}) "
                    f"| {err_one.mean():.4f} / {err_max.mean():.4f} "
                    f"| {', '.join(f'{e:.4f}' for e in scaling)} |",
                    flush=True,
                )
            print(f"# {env_id} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()

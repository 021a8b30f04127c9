"""``loopwm-rl``: one command line with subcommands, each a thin function over the library.

Examples::

    loopwm-rl train pendulum                      # collect, fit, plan, evaluate
    loopwm-rl train pendulum debug train.seed=1   # presets compose; key=value overrides last
    loopwm-rl train --resume runs/Pendulum-v1__pendulum__0__20261128-120000
    loopwm-rl collect --env LoopWM/BouncingBall-v0 --steps 20000 --out data/ball.npz
    loopwm-rl fit --data data/ball.npz looped small --out runs/ball-fit
    loopwm-rl score --run runs/ball-fit --data data/ball.npz --out scores.csv
    loopwm-rl compare looped small --env LoopWM/BouncingBall-v0 --steps 20000 --out runs/compare-ball
    loopwm-rl report runs/Pendulum-v1__pendulum__0__20261128-120000
    loopwm-rl envs
    loopwm-rl model looped debug --obs-dim 4 --action-dim 2

Bad input (unknown presets or keys, malformed datasets, incompatible or corrupt checkpoints)
exits with status 2 and a message that names the problem.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .checkpoint import CheckpointError
from .config import ConfigError, load_model_config
from .dataset import DatasetError


def _split(items: Sequence[str]) -> tuple[list[str], list[str]]:
    return [i for i in items if "=" not in i], [i for i in items if "=" in i]


def _cmd_train(args: argparse.Namespace) -> int:
    from .runconfig import load_run_config
    from .trainer import Trainer, new_run_dir, read_run_config, save_config, summary

    presets, overrides = _split(args.items)
    if args.resume:
        if presets:
            raise ConfigError(f"--resume takes overrides only, not presets {presets}")
        run_dir = Path(args.resume)
        cfg = read_run_config(run_dir)
        if overrides:
            from .runconfig import apply_overrides

            cfg = apply_overrides(cfg, overrides)
        trainer = Trainer(cfg, run_dir, progress=not args.quiet)
        trainer.load()
        save_config(cfg, run_dir)
        print(f"resuming {run_dir} at env step {trainer.step} with {len(trainer.replay)} transitions in the buffer")
    else:
        cfg = load_run_config(presets, overrides)
        trainer = Trainer(cfg, Path("."), progress=not args.quiet)  # fails on bad envs before any folder exists
        run_dir = new_run_dir(cfg)
        trainer.run_dir = run_dir
        save_config(cfg, run_dir)
    metrics = trainer.run()
    print(summary(trainer.run_dir, metrics))
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from .dataset import collect, save_dataset

    out = Path(args.out)
    if out.exists() and not args.force:
        raise DatasetError(f"{out} exists; choose another --out or pass --force to replace it")
    data = collect(args.env, args.steps, seed=args.seed, policy=args.policy, progress=not args.quiet)
    save_dataset(out, data, overwrite=args.force)
    hard = f", {data['hard'].mean():.1%} hard" if "hard" in data else ""
    print(f"wrote {len(data['rewards'])} transitions of {args.env} to {out}{hard}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    import yaml

    from .config import to_dict
    from .dataset import load_dataset
    from .offline import fit
    from .runconfig import WandbConfig

    presets, overrides = _split(args.items)
    model_cfg = load_model_config(presets or ["looped"], overrides)
    data = load_dataset(args.data)
    out = Path(args.out)
    if (out / "model.pt").exists():
        raise CheckpointError(f"{out / 'model.pt'} exists; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "model": to_dict(model_cfg),
                "data": str(args.data),
                "updates": args.updates,
                "seed": args.seed,
                "budget": args.budget,
            }
        )
    )
    metrics = fit(
        data,
        model_cfg,
        out,
        updates=args.updates,
        batch=args.batch,
        horizon=args.horizon,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        env_id=args.env or "",
        wandb_cfg=WandbConfig(mode=args.wandb),
        progress=not args.quiet,
        budget=args.budget,
    )
    print(
        f"wrote {out / 'model.pt'}; validation one-step error {metrics.get('fit/val_pred_error', float('nan')):.4f}, "
        f"mean loops {metrics.get('depth/loops_mean', float('nan')):.2f}"
    )
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from .dataset import load_dataset
    from .offline import score

    out = Path(args.out)
    if out.exists() and not args.force:
        raise DatasetError(f"{out} exists; choose another --out or pass --force to replace it")
    metrics = score(args.run, load_dataset(args.data), out)
    line = f"wrote {out}: mean loops {metrics['depth/loops_mean']:.2f}, one-step error {metrics['fit/pred_error']:.4f}"
    if "depth/auroc_hard" in metrics:
        line += (
            f", loops hard/easy {metrics.get('depth/loops_hard_mean', float('nan')):.2f}/"
            f"{metrics.get('depth/loops_easy_mean', float('nan')):.2f}, AUROC {metrics['depth/auroc_hard']:.3f}"
        )
    print(line)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare
    from .dataset import collect, load_dataset, save_dataset
    from .report import write_report

    presets, overrides = _split(args.items)
    cfg = load_model_config(presets or ["looped", "small"], overrides)
    out = Path(args.out)
    if (out / "compare.csv").exists():
        raise CheckpointError(f"{out / 'compare.csv'} exists; choose another --out")
    if args.data:
        data = load_dataset(args.data)
    elif args.env:
        data = collect(args.env, args.steps, seed=0, progress=not args.quiet)
        save_dataset(out / "data.npz", data)
    else:
        raise DatasetError("compare needs --data FILE.npz or --env ID (with --steps)")
    compare(data, cfg, out, seeds=args.seeds, updates=args.updates, threads=args.threads, progress=not args.quiet)
    print((out / "compare.md").read_text())
    print(f"wrote {out / 'compare.csv'}, {out / 'compare.md'} and {write_report(out)}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    out = write_report(args.run_dir, args.out)
    print(f"wrote {out}")
    return 0


def _cmd_envs(args: argparse.Namespace) -> int:
    """List the suite: ids, spaces and what makes a transition hard."""
    from .envs import CLASSIC, MUJOCO, describe_suite

    rows = describe_suite()
    width = max(len(r["id"]) for r in rows)
    print(f"{'id':<{width}}  {'observation':<12} {'action':<12} hard transition")
    for r in rows:
        print(f"{r['id']:<{width}}  {r['observation']:<12} {r['action']:<12} {r['hard']}")
    print(f"\nstandard tasks: {', '.join(CLASSIC)}")
    print(f"with the mujoco extra (pip install 'loopwm-rl[mujoco]'): {', '.join(MUJOCO)}")
    print("imagined: LoopWM/Imagined-v0 (checkpoint=PATH), a trained world model as an environment")
    return 0


def _cmd_model(args: argparse.Namespace) -> int:
    """Print a model preset's resolved config and its parameter counts."""
    from .models import build_world_model

    presets, overrides = _split(args.items)
    cfg = load_model_config(presets or ["looped"], overrides)
    sizes = {"num_actions": args.num_actions} if args.num_actions else {"action_dim": args.action_dim or 1}
    model = build_world_model(cfg.resolve(obs_dim=args.obs_dim, **sizes))
    total = sum(p.numel() for p in model.parameters())
    print(model)
    print(f"parameters: {total}  depth-loop blocks: {model.block_parameters()}  loop cap: {cfg.loop_cap}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopwm-rl", description="Reinforcement learning with looped latent world models."
    )
    parser.add_argument("--version", action="version", version=f"loopwm-rl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    items = {"nargs": "*", "metavar": "PRESET|key=value"}

    train = sub.add_parser("train", help="collect, fit the world model, plan, evaluate")
    train.add_argument("items", help="experiment presets from configs/, then overrides", **items)
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_cmd_train)

    collect = sub.add_parser("collect", help="write a transition dataset (.npz) from an environment")
    collect.add_argument("--env", required=True, help="Gymnasium id")
    collect.add_argument("--steps", type=int, required=True)
    collect.add_argument("--out", required=True, help="FILE.npz")
    collect.add_argument("--policy", default="random", choices=["random"])
    collect.add_argument("--seed", type=int, default=0)
    collect.add_argument("--force", action="store_true", help="replace an existing --out")
    collect.add_argument("--quiet", action="store_true")
    collect.set_defaults(func=_cmd_collect)

    fit = sub.add_parser("fit", help="train a world model offline on a dataset")
    fit.add_argument("items", help="model presets from configs/model, then overrides", **items)
    fit.add_argument("--data", required=True, help="FILE.npz")
    fit.add_argument("--out", required=True, help="RUN_DIR")
    fit.add_argument("--updates", type=int, default=2000)
    fit.add_argument("--batch", type=int, default=128)
    fit.add_argument("--horizon", type=int, default=3)
    fit.add_argument("--lr", type=float, default=1e-3)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--threads", type=int, default=2)
    fit.add_argument("--env", default="", help="record the env id the data came from")
    fit.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="FRACTION",
        help="after fitting, set the halting threshold so that mean loops on the held-out split are "
        "FRACTION x max_loops (adaptive rules only; default: the config's halting.budget)",
    )
    fit.add_argument("--wandb", default="disabled", choices=["offline", "online", "disabled"])
    fit.add_argument("--quiet", action="store_true")
    fit.set_defaults(func=_cmd_fit)

    score = sub.add_parser("score", help="per transition: loops, prediction error, hard label (CSV)")
    score.add_argument("--run", required=True, help="RUN_DIR (or a checkpoint file)")
    score.add_argument("--data", required=True, help="FILE.npz")
    score.add_argument("--out", required=True, help="FILE.csv")
    score.add_argument("--force", action="store_true", help="replace an existing --out")
    score.set_defaults(func=_cmd_score)

    comp = sub.add_parser("compare", help="looped vs stacked world models on the same data and seeds")
    comp.add_argument("items", help="model presets from configs/model, then overrides", **items)
    comp.add_argument("--data", help="FILE.npz (or --env to collect one)")
    comp.add_argument("--env", help="collect --steps random transitions from this env")
    comp.add_argument("--steps", type=int, default=20_000)
    comp.add_argument("--out", required=True, help="output folder")
    comp.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    comp.add_argument("--updates", type=int, default=2000)
    comp.add_argument("--threads", type=int, default=2)
    comp.add_argument("--quiet", action="store_true")
    comp.set_defaults(func=_cmd_compare)

    report = sub.add_parser("report", help="a self-contained HTML dashboard of a run (readable offline)")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--out", help="FILE.html (default: RUN_DIR/report.html)")
    report.set_defaults(func=_cmd_report)

    envs = sub.add_parser("envs", help="list the environment suite and what makes a transition hard")
    envs.set_defaults(func=_cmd_envs)

    model = sub.add_parser("model", help="show a world-model preset: config and parameter counts")
    model.add_argument("items", help="presets from configs/model, then overrides", **items)
    model.add_argument("--obs-dim", type=int, default=4)
    group = model.add_mutually_exclusive_group()
    group.add_argument("--action-dim", type=int, default=0)
    group.add_argument("--num-actions", type=int, default=0)
    model.set_defaults(func=_cmd_model)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .envs import EnvError
    from .report import ReportError
    from .update import NonFiniteLossError

    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    # presets and key=value overrides may come after options (`train pendulum --quiet debug`)
    stray = [r for r in rest if r.startswith("-") or not hasattr(args, "items")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if rest:
        args.items = [*args.items, *rest]
    try:
        return args.func(args)
    except (ConfigError, DatasetError, CheckpointError, EnvError, ReportError, ValueError, NonFiniteLossError) as err:
        print(f"loopwm-rl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``loopwm-rl``: one command line with subcommands, each a thin function over the library.

Examples::

    loopwm-rl train pendulum                      # collect, fit, plan, evaluate
    loopwm-rl train pendulum debug train.seed=1   # presets compose; key=value overrides last
    loopwm-rl train --resume runs/Pendulum-v1__pendulum__0__20261128-120000
    loopwm-rl collect --env LoopWM/BouncingBall-v0 --steps 20000 --out data/ball.npz
    loopwm-rl fit --data data/ball.npz small fit.updates=2000 --out runs/ball-fit
    loopwm-rl score --run runs/ball-fit --data data/ball.npz --out scores.csv
    loopwm-rl compare small env.id=LoopWM/BouncingBall-v0 compare.steps=20000 --out runs/compare-ball
    loopwm-rl report runs/Pendulum-v1__pendulum__0__20261128-120000
    loopwm-rl envs
    loopwm-rl model looped debug --obs-dim 4 --action-dim 2

Bad input (unknown presets or keys, malformed datasets, incompatible or corrupt checkpoints)
exits with status 2 and a message that names the problem; anything else is a bug and shows
its traceback.
"""

from __future__ import annotations

from . import cores  # before anything that loads torch: OpenMP reads its wait policy once

# isort: split
import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config import ConfigError, load_model_config


def _split(items: Sequence[str]) -> tuple[list[str], list[str]]:
    return [i for i in items if "=" not in i], [i for i in items if "=" in i]


def _cmd_train(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError
    from .runconfig import apply_overrides, load_run_config
    from .rundir import new_run_dir, read_config, run_lock, summary, write_config
    from .trainer import Trainer

    presets, overrides = _split(args.items)
    if args.resume:
        if presets:
            raise ConfigError(f"--resume takes overrides only, not presets {presets}")
        run_dir = Path(args.resume)
        cfg = apply_overrides(read_config(run_dir), overrides)
        if cfg.command != "train":
            raise CheckpointError(f"{run_dir} was written by `{cfg.command}`, not `train`: nothing to resume")
        trainer = Trainer(cfg, run_dir, progress=not args.quiet)
    else:
        cfg = load_run_config(presets, overrides)
        trainer = Trainer(cfg, Path("."), progress=not args.quiet)  # fails on bad envs before any folder exists
        run_dir = trainer.run_dir = new_run_dir(cfg)
    with run_lock(run_dir):  # one writer per run directory
        if args.resume:
            trainer.load()
            print(f"resuming {run_dir} at env step {trainer.step} with {len(trainer.replay)} transitions in the buffer")
        write_config(run_dir, cfg)
        print(cores.describe(cores.resolve_threads(cfg.train.threads)))
        metrics = trainer.run()
    print(summary(trainer.run_dir, metrics))
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from .dataset import DatasetError, collect, save_dataset

    out = Path(args.out)
    if out.exists() and not args.force:
        raise DatasetError(f"{out} exists; choose another --out or pass --force to replace it")
    data = collect(args.env, args.steps, seed=args.seed, policy=args.policy, progress=not args.quiet)
    save_dataset(out, data, overwrite=args.force)
    hard = f", {data['hard'].mean():.1%} hard" if "hard" in data else ""
    print(f"wrote {len(data['rewards'])} transitions of {args.env} to {out}{hard}")
    return 0


def _with_dataset(cfg, data: dict, path: str):
    """The config with ``fit.data`` and the env id the dataset names (an explicit, different
    ``env.id`` is an error: the model would claim the wrong env)."""
    import dataclasses

    from .dataset import dataset_meta
    from .runconfig import EnvConfig

    env_id, _, _ = dataset_meta(data)
    if env_id and cfg.env.id not in (env_id, EnvConfig().id):
        raise ConfigError(f"env.id={cfg.env.id!r}, but the dataset {path} was collected from {env_id!r}")
    if not env_id and cfg.env.id == EnvConfig().id:
        print(f"note: {path} names no env id; the model records none (set env.id=ID to record one)")
    elif not env_id:
        env_id = cfg.env.id
    env = dataclasses.replace(cfg.env, id=env_id)
    return dataclasses.replace(cfg, env=env, fit=dataclasses.replace(cfg.fit, data=str(path)))


def _cmd_fit(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError
    from .dataset import load_dataset
    from .offline import fit
    from .runconfig import load_run_config
    from .rundir import run_lock, summary

    presets, overrides = _split(args.items)
    cfg = load_run_config(presets, overrides, command="fit")
    data = load_dataset(args.data)
    cfg = _with_dataset(cfg, data, args.data)
    out = Path(args.out)
    if (out / "model.pt").exists():
        raise CheckpointError(f"{out / 'model.pt'} exists; choose another --out")
    print(cores.describe(cores.resolve_threads(cfg.fit.threads)))
    with run_lock(out):
        metrics = fit(data, cfg, out, progress=not args.quiet)
    print(summary(out, metrics))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from .dataset import DatasetError, load_dataset
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
    import dataclasses

    from .checkpoint import CheckpointError
    from .compare import compare, grid
    from .dataset import collect, load_dataset, save_dataset
    from .report import write_report
    from .runconfig import load_run_config
    from .rundir import read_config

    presets, overrides = _split(args.items)
    cfg = load_run_config(presets, overrides, command="compare")
    out = Path(args.out)
    grid(cfg, out)  # unknown models fail before any data is collected
    if (out / "config.yaml").exists() and read_config(out).command != "compare":
        raise CheckpointError(f"{out} holds a `{read_config(out).command}` run, not a comparison; choose another --out")
    if args.data:
        data = load_dataset(args.data)
        cfg = _with_dataset(cfg, data, args.data)
    elif (out / "data.npz").exists():  # a resumed comparison keeps the data it started with
        cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, data=str(out / "data.npz")))
    else:  # random transitions of env.id, kept beside the table
        data = collect(cfg.env.id, cfg.compare.steps, seed=0, progress=not args.quiet)
        save_dataset(out / "data.npz", data)
        cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, data=str(out / "data.npz")))
    print(cores.describe(cores.resolve_threads(cfg.fit.threads)))
    compare(cfg, out, log=(lambda _: None) if args.quiet else print)
    print((out / "compare.md").read_text())
    print(f"wrote {out / 'compare.csv'}, {out / 'compare.md'} and {write_report(out)}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    out = write_report(*args.run_dirs, out=args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB; open it in a browser, no network needed)")
    return 0


def _cmd_envs(args: argparse.Namespace) -> int:
    """List the suite: ids, spaces and what makes a transition hard."""
    from .envs import CLASSIC, MUJOCO, describe_suite

    rows = describe_suite()
    width = max(len(r["id"]) for r in rows)
    print(f"{'id':<{width}}  {'observation':<12} {'action':<12} {'objects':<8} hard transition")
    for r in rows:
        print(f"{r['id']:<{width}}  {r['observation']:<12} {r['action']:<12} {r['objects']:<8} {r['hard']}")
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
    fit.add_argument(
        "items",
        help="model presets (configs/model) or experiment presets, then overrides (fit.updates=500, "
        "fit.budget=0.25, model.max_loops=6, ...)",
        **items,
    )
    fit.add_argument("--data", required=True, help="FILE.npz (its env id and action bounds come along)")
    fit.add_argument("--out", required=True, help="RUN_DIR")
    fit.add_argument("--quiet", action="store_true")
    fit.set_defaults(func=_cmd_fit)

    score = sub.add_parser("score", help="per transition: loops, prediction error, hard label (CSV)")
    score.add_argument("--run", required=True, help="RUN_DIR (or a checkpoint file)")
    score.add_argument("--data", required=True, help="FILE.npz")
    score.add_argument("--out", required=True, help="FILE.csv")
    score.add_argument("--force", action="store_true", help="replace an existing --out")
    score.set_defaults(func=_cmd_score)

    comp = sub.add_parser("compare", help="looped vs stacked world models on the same data and seeds")
    comp.add_argument(
        "items",
        help="model or experiment presets, then overrides (compare.seeds=0,1, fit.updates=500, "
        "env.id=ID with compare.steps=N to collect data)",
        **items,
    )
    comp.add_argument("--data", help="FILE.npz (default: collect compare.steps random transitions of env.id)")
    comp.add_argument("--out", required=True, help="output folder")
    comp.add_argument("--quiet", action="store_true")
    comp.set_defaults(func=_cmd_compare)

    report = sub.add_parser(
        "report", help="a self-contained HTML dashboard of a run, or of several side by side (readable offline)"
    )
    report.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    report.add_argument("--out", help="FILE.html (default for one run: RUN_DIR/report.html; needed for several)")
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
    from .checkpoint import CheckpointError
    from .dataset import DatasetError
    from .envs import EnvError
    from .jobs import LauncherError
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
    except (
        ConfigError,
        DatasetError,
        CheckpointError,
        EnvError,
        ReportError,
        NonFiniteLossError,
        LauncherError,
    ) as err:
        print(f"loopwm-rl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

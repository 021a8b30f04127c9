"""``loopwm-rl``: one command line with subcommands, each a thin function over the library.

Examples::

    loopwm-rl --version
    loopwm-rl model looped debug --obs-dim 4 --action-dim 2
    loopwm-rl envs
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .config import ConfigError, load_model_config


def _cmd_model(args: argparse.Namespace) -> int:
    """Print a model preset's resolved config and its parameter counts."""
    from .world_model import build_world_model

    cfg = load_model_config(args.presets or ["looped"], args.overrides)
    cfg = cfg.resolve(obs_dim=args.obs_dim, action_dim=args.action_dim, num_actions=args.num_actions)
    model = build_world_model(cfg)
    total = sum(p.numel() for p in model.parameters())
    print(model)
    print(f"parameters: {total}  depth-loop blocks: {model.block_parameters()}  loop cap: {cfg.loop_cap}")
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


def _split(items: Sequence[str]) -> tuple[list[str], list[str]]:
    presets = [i for i in items if "=" not in i]
    overrides = [i for i in items if "=" in i]
    return presets, overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopwm-rl", description="Reinforcement learning with looped latent world models."
    )
    parser.add_argument("--version", action="version", version=f"loopwm-rl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    model = sub.add_parser("model", help="show a world-model preset: config and parameter counts")
    model.add_argument(
        "items",
        nargs="*",
        metavar="PRESET|key=value",
        help="presets from configs/model, then overrides",
    )
    model.add_argument("--obs-dim", type=int, default=4)
    group = model.add_mutually_exclusive_group()
    group.add_argument("--action-dim", type=int, default=0)
    group.add_argument("--num-actions", type=int, default=0)
    model.set_defaults(func=_cmd_model)

    envs = sub.add_parser("envs", help="list the environment suite and what makes a transition hard")
    envs.set_defaults(func=_cmd_envs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "items"):
        args.presets, args.overrides = _split(args.items)
    if getattr(args, "action_dim", 1) == 0 and getattr(args, "num_actions", 1) == 0:
        args.action_dim = 1
    try:
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"loopwm-rl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

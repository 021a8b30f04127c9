"""Wall time of one world-model ``step``: looped at fixed K, stacked at L, and adaptive batches.

Looped time should grow with K (loops), not with parameters; an adaptive batch whose rows halt
at different loops should cost in proportion to its realised mean loops because halted rows
leave the active set. Adaptive batches here use a per-row loop count drawn from a fixed
distribution (the same depth loop as every halting rule, with ``stop_at`` per row), so the
measurement isolates the cost mechanism from how well a rule is trained.

    python benchmarks/step_cost.py --threads 2
"""

from __future__ import annotations

from loopwm_rl import cores  # before torch loads: OpenMP reads its wait policy once

# isort: split
import argparse
import platform
import statistics
import time

import torch

from loopwm_rl import build_world_model, load_model_config
from loopwm_rl.halting import Schedule

O, A = 8, 2


def timed(repeats: int, fn, *args, **kwargs) -> float:
    """Median seconds of ``fn(*args, **kwargs)`` after two warm-up calls."""
    fn(*args, **kwargs)
    fn(*args, **kwargs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: a fair share of the usable cores")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.threads = cores.resolve_threads(args.threads)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(
        f"# step_cost: torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"{platform.machine()} {platform.processor() or ''}, seed={args.seed}, repeats={args.repeats}"
    )

    looped = build_world_model(
        load_model_config(["looped"], ["halting.rule=fixed"]).resolve(obs_dim=O, action_dim=A)
    ).eval()
    stacked = {
        L: build_world_model(load_model_config(["stacked"], [f"blocks={L}"]).resolve(obs_dim=O, action_dim=A)).eval()
        for L in (1, 2, 4, 8)
    }
    print(
        f"# looped params {sum(p.numel() for p in looped.parameters())} "
        f"(block {looped.block_parameters()}); stacked L=8 params "
        f"{sum(p.numel() for p in stacked[8].parameters())} (blocks {stacked[8].block_parameters()})"
    )
    print("\n| batch | model | depth | ms/step | ms/step per loop |")
    print("|---|---|---|---|---|")
    fixed8 = {}
    with torch.no_grad():
        for B in args.batches:
            z = looped.encode(torch.randn(B, O))
            a = torch.rand(B, A) * 2 - 1
            for K in (1, 2, 4, 8):
                t = timed(args.repeats, looped.step, z, a, max_loops=K)
                fixed8[B] = t if K == 8 else fixed8.get(B)
                print(f"| {B} | looped fixed | K={K} | {1e3 * t:.2f} | {1e3 * t / K:.2f} |")
            for L, model in stacked.items():
                t = timed(args.repeats, model.step, z, a)
                print(f"| {B} | stacked | L={L} | {1e3 * t:.2f} | {1e3 * t / L:.2f} |")

        print(
            "\n| batch | realised loops (max 8) | mean loops / 8 "
            "| dropped: ms, ratio to K=8 | masked: ms, ratio to K=8 |"
        )
        print("|---|---|---|---|---|")
        gen = torch.Generator().manual_seed(args.seed)
        for B in args.batches:
            z = looped.encode(torch.randn(B, O))
            a = torch.rand(B, A) * 2 - 1
            dists = {
                "uniform 1..7": torch.randint(1, 8, (B,), generator=gen),
                "4/7 at 1, 3/7 at 8": torch.where(torch.rand(B, generator=gen) < 4 / 7, 1, 8),
            }
            for name, stop in dists.items():
                sched = Schedule(stop_at=stop, detach_at=torch.zeros_like(stop))
                out = looped.step(z, a, schedule=sched)
                assert torch.equal(out.loops, stop)
                frac = float(stop.float().mean()) / 8
                t_drop = timed(args.repeats, looped.step, z, a, schedule=sched)
                t_mask = timed(args.repeats, looped.step, z, a, schedule=sched, drop_halted=False)
                print(
                    f"| {B} | {name} | {frac:.3f} | {1e3 * t_drop:.2f}, {t_drop / fixed8[B]:.2f} "
                    f"| {1e3 * t_mask:.2f}, {t_mask / fixed8[B]:.2f} |"
                )


if __name__ == "__main__":
    main()

"""Wall time of one world-model ``step``: looped at fixed K, stacked at L, and adaptive batches.

Looped time should grow with K (loops), not with parameters; an adaptive batch whose rows halt
at different loops should cost in proportion to its realised mean loops because halted rows
leave the active set. The adaptive rows run the default rule (``learned``, ``gain`` head) and
pay for everything it costs: a readout and the head after every loop. Its head is set by hand
(:func:`spread_halting_head`) so that predicted gains differ between rows and fall with the
loop index, and its threshold is calibrated on the timed batch to each compute budget, so rows
halt at many different loops (the table prints the realised distribution). The baseline is the ``fixed`` rule at
K = 8, which skips the readouts of the loops before the cap.

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
from loopwm_rl.calibration import calibrate

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


def spread_halting_head(model, gen: torch.Generator) -> None:
    """Hand-set the ``gain`` head so that its predicted gain falls with the loop index and
    differs between rows (through the latent): calibrated thresholds then halt rows at many
    different loops, as a trained head does on mixed-difficulty data. Its cost does not depend
    on its weights."""
    first, last = model.halting.head.net[0], model.halting.head.net[-1]
    hidden, D = first.weight.shape[0], model.cfg.latent_dim
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:, :D] = 3.0 * torch.randn(hidden, D, generator=gen)  # the row's latent
        first.weight[:, -1] = -6.0  # the loop index t / max_loops
        first.bias.fill_(6.0)
        last.weight.fill_(1.0 / hidden)
        last.bias.zero_()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: one (loopwm_rl.cores)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.25, 0.5], help="adaptive rows' mean loops / 8")
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
            "\n| batch | rule | mean loops / 8 | rows halting at loop 1..8 | dropped: ms, ratio to fixed K=8 "
            "| masked: ms, ratio to fixed K=8 |"
        )
        print("|---|---|---|---|---|---|")
        adaptive = build_world_model(load_model_config(["looped"]).resolve(obs_dim=O, action_dim=A)).eval()
        adaptive.load_state_dict(looped.state_dict(), strict=False)  # same blocks; the head is its own
        spread_halting_head(adaptive, torch.Generator().manual_seed(args.seed))
        for B in args.batches:
            obs, a = torch.randn(B, O), torch.rand(B, A) * 2 - 1
            z = adaptive.encode(obs)
            for budget in args.budgets:
                halting, loops = calibrate(adaptive, obs, a, budget)
                frac = loops / 8
                t_drop = timed(args.repeats, adaptive.step, z, a, halting=halting)
                t_mask = timed(args.repeats, adaptive.step, z, a, halting=halting, drop_halted=False)
                hist = torch.bincount(adaptive.step(z, a, halting=halting).loops, minlength=9)[1:].tolist()
                print(
                    f"| {B} | learned/gain at budget {budget} | {frac:.3f} | {hist} | {1e3 * t_drop:.2f}, "
                    f"{t_drop / fixed8[B]:.2f} | {1e3 * t_mask:.2f}, {t_mask / fixed8[B]:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""Wall time of one world-model ``step`` per tokenizer, side by side, as a ratio to ``state``.

For each observation layout (an env's size and object layout) and tokenizer: the median time
of ``step`` at batch ``--batch`` with the ``fixed`` rule at K = 1 and K = max_loops, on the
``--model`` presets. Tokenizers are timed round-robin, so the machine's drift hits them alike.

    python benchmarks/tokenizer_cost.py --threads 1
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
from loopwm_rl.run_setup import object_layout

LAYOUTS = {  # env id -> (obs_dim, action_dim)
    "LoopWM/Billiards-v0": (12, 2),
    "LoopWM/Cradle-v0": (10, 1),
    "Walker2d-v5": (17, 6),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: one (loopwm_rl.cores)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--model", nargs="+", default=["looped", "small"])
    args = parser.parse_args()
    torch.set_num_threads(cores.resolve_threads(args.threads))
    torch.manual_seed(0)
    print(
        f"# tokenizer_cost: model={'+'.join(args.model)} batch={args.batch} repeats={args.repeats} "
        f"threads={torch.get_num_threads()} torch={torch.__version__} machine={platform.machine()}"
    )
    print("| env | tokenizer | tokens | params | ms K=1 | ms K=max | ratio to state K=1 | ratio to state K=max |")
    print("|---|---|---|---|---|---|---|---|")
    for env_id, (O, A) in LAYOUTS.items():
        objects = object_layout(env_id, O) if env_id.startswith("LoopWM/") else ()
        variants = {"state": ["tokenizer=state"], "dims": ["tokenizer=dims"]}
        if objects:  # object tokens can stand in for the learned slots: the cheaper variant
            variants |= {"objects": ["tokenizer=objects"], "objects, slots=0": ["tokenizer=objects", "slots=0"]}
        models = {}
        for tok, overrides in variants.items():
            cfg = load_model_config(args.model, [*overrides, "halting.rule=fixed"])
            models[tok] = build_world_model(cfg.resolve(obs_dim=O, action_dim=A, objects=objects)).eval()
        K = models["state"].cfg.max_loops
        obs, act = torch.randn(args.batch, O), torch.rand(args.batch, A) * 2 - 1
        times: dict[tuple[str, int], list[float]] = {(t, k): [] for t in models for k in (1, K)}
        with torch.no_grad():
            for rep in range(args.repeats + 2):
                for tok, model in models.items():
                    z = model.encode(obs)
                    for k in (1, K):
                        start = time.perf_counter()
                        model.step(z, act, max_loops=k)
                        if rep >= 2:  # two warm-up rounds
                            times[(tok, k)].append(time.perf_counter() - start)
        med = {key: statistics.median(v) * 1e3 for key, v in times.items()}
        for tok, model in models.items():
            print(
                f"| {env_id} | {tok} | {model.num_tokens} | {sum(p.numel() for p in model.parameters())} "
                f"| {med[(tok, 1)]:.2f} | {med[(tok, K)]:.2f} | {med[(tok, 1)] / med[('state', 1)]:.2f} "
                f"| {med[(tok, K)] / med[('state', K)]:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

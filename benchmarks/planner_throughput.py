"""Imagined transitions per second of this package's planner vs TorchRL's ``MPPIPlanner`` on the
same world model and settings, and vs the FLOP-bound limit of the machine.

TorchRL plans through a thin ``ModelBasedEnvBase`` adapter around the same ``step`` verb
(MBRL_ANCHORS pitfalls: no ``dtype=`` argument, unbatched env). The FLOP-bound limit is the
measured matmul FLOP/s divided by the FLOPs of one imagined transition, counted with
``torch.utils.flop_counter``.

    python benchmarks/planner_throughput.py --threads 2
"""

from __future__ import annotations

from loopwm_rl import cores  # before torch loads: OpenMP reads its wait policy once

# isort: split
import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from gymnasium import spaces
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs.model_based import ModelBasedEnvBase
from torchrl.modules import ValueOperator
from torchrl.modules.planners import MPPIPlanner
from torchrl.objectives.value import TDLambdaEstimator

from loopwm_rl import build_world_model, load_model_config
from loopwm_rl.agents import PlannerConfig, PlanningAgent

O, A = 8, 2


class StepModule(nn.Module):
    """``(z, action) -> (z', reward)`` through the world model's ``step`` verb."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z, action):
        out = self.model.step(z, action)
        return out.z, out.reward[..., None]


class LatentEnv(ModelBasedEnvBase):
    def __init__(self, model):
        super().__init__(TensorDictModule(StepModule(model), in_keys=["z", "action"], out_keys=["z", "reward"]))
        D = model.cfg.state_dim
        self.observation_spec = Composite(z=Unbounded((D,)), shape=())
        self.state_spec = Composite(z=Unbounded((D,)), shape=())
        self.action_spec = Bounded(-1.0, 1.0, (A,))
        self.reward_spec = Unbounded((1,))
        self._z0 = torch.zeros(D)

    def _reset(self, tensordict=None, **kwargs):
        return TensorDict({"z": self._z0.clone()}, batch_size=[])


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops_per_s(repeats: int = 20, n: int = 1024) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / median_time(lambda: a @ b, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: one (loopwm_rl.cores)")
    parser.add_argument("--samples", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--loops", type=int, default=4, help="fixed loops per imagined step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", nargs="+", default=["looped"], help="model presets, e.g. looped debug")
    args = parser.parse_args()
    args.threads = cores.resolve_threads(args.threads)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    warnings.filterwarnings("ignore")

    cfg = load_model_config(args.model, ["halting.rule=fixed", f"max_loops={args.loops}"])
    model = build_world_model(cfg.resolve(obs_dim=O, action_dim=A)).eval()
    peak = matmul_flops_per_s()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        z = model.encode(torch.randn(256, O))
        model.step(z, torch.zeros(256, A))
    flops_per_transition = counter.get_total_flops() / 256
    print(
        f"# planner_throughput: torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"seed={args.seed}, model={'+'.join(args.model)}, H={args.horizon}, "
        f"iterations={args.iterations}, loops/step={args.loops}, "
        f"params={sum(p.numel() for p in model.parameters())}"
    )
    print(
        f"# matmul 1024^3: {peak / 1e9:.1f} GFLOP/s; {flops_per_transition / 1e6:.3f} MFLOP per imagined "
        f"transition -> FLOP-bound limit {peak / flops_per_transition:,.0f} transitions/s"
    )
    print("\n| N | ours: ms/plan | ours: transitions/s | TorchRL MPPI: ms/plan | TorchRL: transitions/s "
          "| ours / TorchRL | ours / FLOP bound |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    space = spaces.Box(-1.0, 1.0, (A,), dtype=np.float32)
    env = LatentEnv(model)
    value = ValueOperator(nn.Linear(cfg.latent_dim + O, 1), in_keys=["z"])
    for N in args.samples:
        pcfg = PlannerConfig(horizon=args.horizon, samples=N, elites=max(N // 8, 1), iterations=args.iterations)
        agent = PlanningAgent(model, space, pcfg, seed=args.seed)
        obs = np.zeros(O, np.float32)
        ours = median_time(lambda agent=agent, obs=obs: agent.act(obs), args.repeats)
        mppi = MPPIPlanner(
            env,
            TDLambdaEstimator(gamma=0.99, lmbda=0.95, value_network=value),
            temperature=0.5,
            planning_horizon=args.horizon,
            optim_steps=args.iterations,
            num_candidates=N,
            top_k=max(N // 8, 1),
        )
        td = env.reset()
        with torch.no_grad():
            theirs = median_time(lambda mppi=mppi, td=td: mppi(td.clone()), args.repeats)
        n_imagined = args.horizon * N * args.iterations
        ours_rate, their_rate = n_imagined / ours, n_imagined / theirs
        print(
            f"| {N} | {1e3 * ours:.0f} | {ours_rate:,.0f} | {1e3 * theirs:.0f} | {their_rate:,.0f} "
            f"| {ours_rate / their_rate:.2f} | {ours_rate / (peak / flops_per_transition):.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""One job of ``benchmarks/concurrency.py``: time one kind of work for a fixed window.

This worker imports nothing that sets OpenMP's wait policy (not ``loopwm_rl.cores``): the parent
decides each job's environment, so the old settings can be measured beside the new ones.

    python benchmarks/concurrency_worker.py step --threads 2 --seconds 8 --barrier /tmp/b

With ``--barrier PATH`` it writes ``PATH.<pid>.ready`` after warming up and starts timing once
``PATH.go`` exists, so that jobs started together are timed over the same window.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces

from loopwm_rl import SequenceBatch, build_world_model, load_model_config
from loopwm_rl.agents import PlannerConfig, PlanningAgent
from loopwm_rl.update import make_optimizer, update

O, A, B = 3, 1, 64


def work(kind: str):
    """A callable doing one unit of ``kind``: a ``small`` world-model step of batch 64, a step of
    the default (d = 64) model at batch 512, a training update of 64 sequences of 3 transitions,
    or one planning call (the demo's planner)."""
    torch.manual_seed(0)
    presets = ["looped"] if kind == "step512" else ["looped", "small"]
    model = build_world_model(load_model_config(presets).resolve(obs_dim=O, action_dim=A))
    if kind in ("step", "step512"):
        model.eval()
        n = 512 if kind == "step512" else B
        z, a = model.encode(torch.randn(n, O)), torch.rand(n, A) * 2 - 1

        def step():
            with torch.no_grad():
                model.step(z, a)

        return step
    if kind == "update":
        opt = make_optimizer(model)
        obs, act = torch.randn(4, B, O), torch.rand(3, B, A) * 2 - 1
        batch = SequenceBatch(obs, act, torch.randn(3, B), torch.zeros(3, B, dtype=torch.bool))
        return lambda: update(model, opt, batch)
    if kind == "plan":
        model.eval()
        cfg = PlannerConfig(samples=128, elites=16, iterations=3)
        agent = PlanningAgent(model, spaces.Box(-1.0, 1.0, (A,), np.float32), cfg, seed=0)
        agent.reset()
        obs = np.zeros(O, np.float32)
        return lambda: agent.act(obs)
    raise ValueError(f"unknown kind {kind!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["step", "step512", "update", "plan"])
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--barrier", default="", help="wait for PATH.go after writing PATH.<pid>.ready")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fn = work(args.kind)
    for _ in range(3):  # warm-up
        fn()
    if args.barrier:
        Path(f"{args.barrier}.{os.getpid()}.ready").touch()
        while not Path(f"{args.barrier}.go").exists():
            time.sleep(0.002)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        fn()
        count += 1
    rate = count / (time.perf_counter() - start)
    print(json.dumps({"kind": args.kind, "rate": rate, "policy": os.environ.get("OMP_WAIT_POLICY", "unset")}))


if __name__ == "__main__":
    main()

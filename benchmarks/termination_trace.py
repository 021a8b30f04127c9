"""What a trained agent believes on the way to a termination (Hopper, CartPole, InvertedPendulum).

Plays evaluation episodes of one trained run (``loopwm-rl train``) with its planner and, at
every real step, reads what the planner's imagined return is built from:

- ``cont``: the world model's probability that the real transition just taken does not end
  the episode (its continuation head);
- ``value``: the critic's value of the state, the planner's terminal value;
- ``alive{k}``: the model's probability of surviving ``k`` imagined steps from the state under
  the critic's noise-free policy prior, the product of ``cont`` along that rollout;
- ``drift{k}``: per observation dimension, the model's open-loop prediction of the observation
  ``k`` steps later under the actions the agent actually took, minus the observation the env
  returned (``None`` within ``k`` steps of the end).

An agent that falls while its model sees the fall coming (``alive{k}`` near 0) but its critic
values the state highly has a critic that never learned what a termination costs; one whose
model does not see it has a world-model problem; ``drift{k}`` says whether the model loses
part of the state on the agent's own path. One JSON per run under
``results/termination_trace/``.

    python benchmarks/termination_trace.py --runs runs/sample_efficiency/hopper__s0/* --episodes 1
"""

from __future__ import annotations

from loopwm_rl import cores  # noqa: F401  (before torch loads: OpenMP reads its wait policy once)

# isort: split
import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "termination_trace"


@torch.no_grad()
def survival(model, critic, z: torch.Tensor, k: int) -> torch.Tensor:
    """Probability (N,) of living ``k`` imagined steps from latents z (N, S) under the prior."""
    alive = torch.ones(z.shape[0])
    for _ in range(k):
        out = model.step(z, critic.policy(z, sample=False))
        alive = alive * out.cont.reshape(-1)
        z = out.z
    return alive


@torch.no_grad()
def drift(model, z: torch.Tensor, actions: torch.Tensor, observations: torch.Tensor, k: int) -> torch.Tensor:
    """Open-loop k-step error (T - k + 1, O): from each latent z[t] (T, S), ``imagine`` under
    the taken actions[t : t + k] (T, ...) and subtract the real observations[t + k] (T + 1, O)."""
    T = z.shape[0]
    if observations.shape[0] != T + 1 or actions.shape[0] != T:
        raise ValueError(f"{T} latents need {T} actions and {T + 1} observations")
    if not 1 <= k <= T:
        raise ValueError(f"k={k} must be between 1 and the episode's {T} steps")
    starts = torch.arange(T - k + 1)  # (N,) windows that end inside the episode
    window = starts[None, :] + torch.arange(k)[:, None]  # (k, N)
    rollout = model.imagine(z[starts], actions[window])  # obs (k, N, O)
    return rollout.obs[-1] - observations[starts + k]  # (N, O)


@torch.no_grad()
def trace(run: str, episodes: int, k: int) -> dict:
    from loopwm_rl.agents import PlanningAgent
    from loopwm_rl.memory import filter_latents
    from loopwm_rl.trainer import Trainer

    trainer = Trainer.from_run(run)
    cfg = trainer.cfg
    model, critic, env = trainer.model.eval(), trainer.critic, trainer.eval_env
    if critic is None:
        raise SystemExit(f"{run}: the run has no critic (train.critic=false); nothing to trace")
    agent = PlanningAgent(model, env.action_space, cfg.planner, critic, seed=cfg.train.seed + 7)
    action_dtype = torch.int64 if isinstance(env.action_space, gym.spaces.Discrete) else torch.float32
    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=10_000 + ep)
        agent.reset()
        seen, actions, rewards, terminated, truncated = [obs], [], [], False, False
        while not (terminated or truncated):
            action, _ = agent.act(obs, eval=True)
            obs, r, terminated, truncated, _ = env.step(action)
            seen.append(obs)
            actions.append(action)
            rewards.append(float(r))
        o = torch.as_tensor(np.asarray(seen[:-1]), dtype=torch.float32)  # (T, O)
        a = torch.as_tensor(np.asarray(actions), dtype=action_dtype)  # (T,) | (T, A)
        # the latents the planner started from: with model.memory=context each carries the
        # episode so far, not just its observation
        z = filter_latents(model, o, a, np.zeros(len(o)))  # (T, S)
        errors = drift(model, z, a, torch.as_tensor(np.asarray(seen), dtype=torch.float32), min(k, len(o)))
        out.append(
            {
                "return": float(np.sum(rewards)),
                "length": len(rewards),
                "terminated": bool(terminated),
                "cont": model.step(z, a).cont.reshape(-1).tolist(),
                "value": critic.value(z).reshape(-1).tolist(),
                f"alive{k}": survival(model, critic, z, k).tolist(),
                "obs": o.tolist(),
                f"drift{k}": errors.tolist() + [None] * (len(o) - len(errors)),
                "reward": rewards,
            }
        )
    return {"run": run, "env": cfg.env.id, "seed": cfg.train.seed, "k": k, "episodes": out}


def show(result: dict, every: int = 10, tail: int = 5, dims: tuple[int, ...] = ()) -> None:
    """One table per episode; ``dims`` adds those observation dimensions and their drift."""
    k = result["k"]
    for ep in result["episodes"]:
        print(
            f"{result['env']} seed {result['seed']}: return {ep['return']:.1f}, {ep['length']} steps, "
            f"terminated {ep['terminated']}"
        )
        extra = "".join(f" obs[{d}] | drift{k}[{d}] |" for d in dims)
        print(f"| step | cont | value | alive{k} | reward |{extra}")
        print("|---|---|---|---|---|" + "---|---|" * len(dims))
        T = ep["length"]
        for t in sorted({*range(0, T, every), *range(max(0, T - tail), T)}):
            errors = ep[f"drift{k}"][t]
            cells = "".join(
                f" {ep['obs'][t][d]:.2f} | {'-' if errors is None else f'{errors[d]:+.2f}'} |" for d in dims
            )
            print(
                f"| {t} | {ep['cont'][t]:.3f} | {ep['value'][t]:.1f} | {ep[f'alive{k}'][t]:.3f} "
                f"| {ep['reward'][t]:.2f} |{cells}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="train run folders (their last checkpoint)")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--k", type=int, default=10, help="imagined steps of the survival column")
    parser.add_argument("--every", type=int, default=10, help="print every n-th step (and the last 5)")
    parser.add_argument(
        "--dims", nargs="*", type=int, default=[], help="observation dimensions to print with their drift"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for run in args.runs:
        result = trace(run, args.episodes, args.k)
        (RESULTS / f"{Path(run).name}.json").write_text(json.dumps(result, indent=1))
        show(result, args.every, dims=tuple(args.dims))


if __name__ == "__main__":
    main()

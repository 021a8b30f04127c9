"""Where a trained agent's world model is wrong about an env: imagined against real returns.

From chosen start states of a classic-control env (MountainCarContinuous, Pendulum, CartPole:
gymnasium keeps their state in ``env.unwrapped.state``, which this script sets), one constant
action is held for ``--decisions`` agent decisions twice: in the real env and in the run's
world model (from ``encode`` of the same observation). Per (state, action) it reports the real
return (discounted per decision, as the planner discounts) and whether and when the episode
terminated, against the model's imagined return (rewards weighted by the predicted chance of
still being alive, as the planner counts them), the first decision at which the model expects
the episode to end (continuation below 0.5), and the critic's value of the start state (the
planner's terminal value beyond its horizon).

A model that promises a return the env does not pay, from states the agent's plan drives to,
is one its plan will exploit. One JSON per run under ``results/imagined_vs_real/``.

    python benchmarks/imagined_vs_real.py --runs runs/mc_repro/mountain_car__s2/* \\
        --states 0.3,0 0.4,0 --actions 1 0.6
"""

from __future__ import annotations

from loopwm_rl import cores  # noqa: F401  (before torch loads: OpenMP reads its wait policy once)

# isort: split
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from loopwm_rl.agents.objective import discounted_return

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "imagined_vs_real"


def real_rollout(env, state: np.ndarray, action: np.ndarray, decisions: int, gamma: float) -> dict:
    """Hold ``action`` from ``state`` for up to ``decisions`` env calls (each one decision);
    the return is discounted per decision, as the planner discounts imagined ones."""
    env.reset(seed=0)
    inner = env.unwrapped
    if not hasattr(inner, "state"):
        raise SystemExit(f"{inner.spec.id if inner.spec else inner}: no settable `state`; this check needs one")
    if np.shape(inner.state) != state.shape:
        raise SystemExit(f"--states need {np.shape(inner.state)[0]} numbers for this env, got {len(state)}")
    inner.state = state.astype(np.float64)
    rewards, terminated = [], False
    for _ in range(decisions):
        _, reward, terminated, truncated, _ = env.step(action)
        rewards.append(float(reward))
        if terminated or truncated:
            break
    discounted = float(np.sum(np.asarray(rewards) * gamma ** np.arange(len(rewards))))
    return {"return": discounted, "terminated_at": len(rewards) - 1 if terminated else None}


@torch.no_grad()
def imagined_rollout(model, critic, obs: np.ndarray, action: np.ndarray, decisions: int, gamma: float) -> dict:
    z = model.encode(torch.as_tensor(obs, dtype=torch.float32)[None])  # (1, S)
    a = torch.as_tensor(action)
    actions = a.reshape(1, 1, *a.shape).expand(decisions, 1, *a.shape)  # (H, 1[, A])
    out = model.imagine(z, actions)
    imagined, _ = discounted_return(out.reward, out.cont, gamma)  # (1,): as the planner scores it
    ends = (out.cont[:, 0] < 0.5).nonzero()
    return {
        "return": float(imagined[0]),
        "max_reward": float(out.reward[:, 0].max()),
        "terminated_at": int(ends[0]) if len(ends) else None,
        "value": float(critic.value(z).reshape(())) if critic is not None else None,
    }


def check(run: str, states: list[np.ndarray], actions: list[float], decisions: int) -> dict:
    from loopwm_rl.trainer import Trainer

    trainer = Trainer.from_run(run)
    cfg = trainer.cfg
    model, critic, env = trainer.model.eval(), trainer.critic, trainer.eval_env
    rows = []
    for state in states:
        for value in actions:
            shape = env.action_space.shape
            action = np.int64(value) if model.cfg.discrete else np.full(shape, value, dtype=np.float32)
            real = real_rollout(env, state, action, decisions, cfg.planner.gamma)
            # the observation of a set state is the state itself for these envs, except
            # Pendulum, which observes (cos, sin, angular velocity)
            obs = _observation(env, state)
            imagined = imagined_rollout(model, critic, obs, action, decisions, cfg.planner.gamma)
            rows.append({"state": state.tolist(), "action": float(value), "real": real, "imagined": imagined})
    return {"run": run, "env": cfg.env.id, "seed": cfg.train.seed, "decisions": decisions, "rows": rows}


def _observation(env, state: np.ndarray) -> np.ndarray:
    inner = env.unwrapped
    inner.state = state.astype(np.float64)
    getter = getattr(inner, "_get_obs", None)
    return np.asarray(getter() if getter is not None else inner.state, dtype=np.float32)


def show(result: dict) -> None:
    print(f"{result['env']} seed {result['seed']}, {result['decisions']} decisions per rollout")
    print("| state | action | real return | real end | imagined return | imagined end | critic value |")
    print("|---|---|---|---|---|---|---|")
    for row in result["rows"]:
        real, imagined = row["real"], row["imagined"]
        state = ", ".join(f"{x:g}" for x in row["state"])
        value = "-" if imagined["value"] is None else f"{imagined['value']:.1f}"
        print(
            f"| ({state}) | {row['action']:g} | {real['return']:.1f} | {_end(real['terminated_at'])} "
            f"| {imagined['return']:.1f} | {_end(imagined['terminated_at'])} | {value} |"
        )


def _end(at: int | None) -> str:
    return "-" if at is None else f"decision {at}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="train run folders (their last checkpoint)")
    parser.add_argument(
        "--states",
        nargs="+",
        required=True,
        help='start states, comma-separated (0.4,0); a leading minus needs a leading space (" -0.5,0")',
    )
    parser.add_argument("--actions", nargs="+", type=float, required=True, help="constant actions to hold")
    parser.add_argument("--decisions", type=int, default=24, help="agent decisions per rollout")
    args = parser.parse_args()
    torch.set_num_threads(1)
    states = [np.array([float(x) for x in s.split(",")]) for s in args.states]
    RESULTS.mkdir(parents=True, exist_ok=True)
    for run in args.runs:
        result = check(run, states, args.actions, args.decisions)
        (RESULTS / f"{Path(run).name}.json").write_text(json.dumps(result, indent=1))
        show(result)


if __name__ == "__main__":
    main()

"""Learning tests: a world model fits known dynamics, and extra loops lower its error.

Thresholds come from ``benchmarks/loops_matter.py`` runs (seeds 0-2, see BENCHMARKS.md).
"""

import json

import numpy as np
import pytest

from loopwm_rl.config import load_model_config
from loopwm_rl.run_setup import object_layout
from loopwm_rl.synthetic import fit_arrays as fit
from loopwm_rl.synthetic import one_step_errors, rollout_env, standard_map


def final_eval_return(argv: list[str], runs_dir) -> float:
    """Run ``loopwm-rl`` with ``argv`` (one run into ``runs_dir``); its last evaluation return."""
    from loopwm_rl.cli import main

    assert main(argv) == 0
    (run_dir,) = runs_dir.iterdir()
    evals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e for e in evals if "eval/return_mean" in e][-1]["eval/return_mean"]


@pytest.mark.slow
def test_fits_the_bouncing_ball_env_and_hard_labels_mean_something():
    """Random-policy data from a suite env: the model fits it, and its error on transitions
    labelled hard is far above the error on easy ones."""
    train = rollout_env("LoopWM/BouncingBall-v0", 64, 100, seed=0)
    model = fit(train, ["max_loops=4", "train_loops=poisson", "mu_rec=3", "mu_bwd=4", "halting.rule=fixed"], 700)
    test = rollout_env("LoopWM/BouncingBall-v0", 16, 100, seed=1)
    err, _ = one_step_errors(model, test)
    hard = test["hard"].reshape(-1)
    # predicting "no change" scores about 1.0 in these normalised units; seeds 0-2 gave
    # 0.09-0.10 and hard/easy ratios of 11-30 (benchmarks/loops_matter.py --data bouncing_ball)
    assert float(err.mean()) < 0.2
    assert float(err[hard].mean()) > 3 * float(err[~hard].mean())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("recipe", "threshold"),
    [
        # this test's fit with fit seeds 0-4 at one thread (the suite's setting; `OMP_NUM_THREADS=1
        # python benchmarks/learning_test_spread.py --seeds 5`): max/1 of 0.91,
        # 0.74, 0.65, 0.82, 0.79 (seed 0 gave 0.86 at two threads); benchmarks/loops_matter.py
        # --seeds 0 1 2 --threads 1: 0.74, 0.67, 0.71. A 1200-update fit is noisy, so 0.95 says
        # only that extra loops still take something off; a model whose loops add nothing is at 1
        (["train_loops=poisson", "mu_rec=3"], 0.95),
        # the default recipe, every loop trained: fit seeds 0-4 at one thread 0.51, 0.63, 0.55,
        # 0.45, 0.58 (... loops_matter.py --set train_loops=max: 0.59, 0.55, 0.50)
        (["train_loops=max"], 0.75),
    ],
    ids=["poisson", "max"],
)
def test_extra_loops_lower_held_out_error(recipe, threshold):
    overrides = ["max_loops=4", *recipe, "mu_bwd=4", "halting.rule=fixed"]
    model = fit(standard_map(64, 100, seed=0), overrides, 1200)
    test = standard_map(16, 100, seed=1)
    err1, _ = one_step_errors(model, test, max_loops=1)
    err_max, _ = one_step_errors(model, test)
    ratio = float(err_max.mean()) / float(err1.mean())
    assert ratio < threshold, f"error at max_loops is {ratio:.2f} of the error at 1 loop"


@pytest.mark.slow
def test_object_tokens_give_loops_work_on_collision_chains():
    """On the graded env (chains of collisions inside one step) the default tokenizer for
    suite envs, one token per ball, makes extra loops pay: loop t is interaction round t.
    Seeds 0-2 of this exact set-up gave max/1 error ratios of 0.57, 0.66 and 0.56."""
    train = rollout_env("LoopWM/Cradle-v0", 64, 60, seed=0)
    layout = object_layout("LoopWM/Cradle-v0", train["obs"].shape[-1])
    overrides = ["max_loops=4", "mu_bwd=4", "halting.rule=fixed", "tokenizer=objects"]
    model = fit(train, overrides, 600, objects=layout)
    test = rollout_env("LoopWM/Cradle-v0", 16, 60, seed=100)
    err1, _ = one_step_errors(model, test, max_loops=1)
    err_max, _ = one_step_errors(model, test)
    ratio = float(err_max.mean()) / float(err1.mean())
    assert ratio < 0.8, f"error at max_loops is {ratio:.2f} of the error at 1 loop"


def easy_floor_ratio(seed: int, updates: int = 600) -> float:
    """K = 1 easy-step error of the small looped model over a one-block stacked model's,
    both fitted the same way on random-policy Billiards data (benchmarks/easy_floor.py at
    test scale)."""
    train = rollout_env("LoopWM/Billiards-v0", 48, 60, seed=seed)
    test = rollout_env("LoopWM/Billiards-v0", 16, 60, seed=seed + 100)
    layout = object_layout("LoopWM/Billiards-v0", train["obs"].shape[-1])
    easy = ~test["hard"].reshape(-1)
    looped = fit(train, ["tokenizer=objects"], updates, seed=seed, objects=layout)
    stacked = fit(
        train,
        ["tokenizer=objects", "kind=stacked", "blocks=1", "halting.rule=fixed"],
        updates,
        seed=seed,
        objects=layout,
    )
    err_looped, _ = one_step_errors(looped, test, max_loops=1, halting="fixed")
    err_stacked, _ = one_step_errors(stacked, test)
    return float(err_looped[easy].mean()) / float(err_stacked[easy].mean())


@pytest.mark.slow
def test_one_loop_serves_easy_steps_about_as_well_as_a_one_pass_model():
    """The easy-step floor: at one loop the default looped model is within a measured margin
    of a one-block stacked model on easy steps (BENCHMARKS.md, "The easy-step floor").
    Seeds 0-4 of this set-up at one thread (the suite's setting; ``OMP_NUM_THREADS=1 python
    benchmarks/learning_test_spread.py --seeds 5``) gave 1.23, 0.76, 0.99, 0.86, 0.68; at two
    threads seeds 0-2 gave 0.71, 0.68, 2.13 (before random loop starts: 0.97, 0.87, 1.95). At
    600 updates both models are far from converged and the ratio moves with the thread count's
    rounding, so this catches a clearly broken first loop (over 1.5x a one-pass model on seed
    0), not the 2-6x floor the benchmark measures at 2000 updates."""
    ratio = easy_floor_ratio(seed=0)
    assert ratio < 1.5, f"1-loop easy-step error is {ratio:.2f}x the one-pass model's"


@pytest.mark.slow
def test_train_learns_the_bouncing_balls_dynamics(tmp_path):
    """``loopwm-rl train`` end to end, judged against fixed policies on these 100-step episodes
    (``python benchmarks/random_policy.py --episodes 200 --envs LoopWM/BouncingBall-v0 --lengths
    100``): random -52.2 +- 9.8, no thrust -57.0, full thrust up -33.1 +- 3.4 (best of 200:
    -16.5), a PD controller -3.8 +- 2.6. Thrusting up knows only the direction of gravity; -15
    lies above every one of its 200 episodes, so passing needs a planner that learned the
    dynamics. This config scored -6.6, -10.6 and -7.6 with train.seed 0, 1, 2."""
    argv = [
        "train",
        "bouncing_ball",
        "debug",
        "env.max_episode_steps=100",
        "train.total_steps=500",
        "train.seed_steps=300",
        "train.pretrain_updates=300",
        "train.critic=false",
        "planner.horizon=5",
        "planner.samples=64",
        "planner.elites=8",
        "planner.iterations=3",
        "train.eval_every=500",
        "train.eval_episodes=2",
        f"train.runs_dir={tmp_path}",
        "--quiet",
    ]
    final = final_eval_return(argv, tmp_path)
    assert final > -15, final


@pytest.mark.slow
def test_default_halting_rule_spends_its_loops_on_hard_transitions(tmp_path):
    """The default rule (``looped small``: the ``gain`` head), thresholded by the default compute
    budget on held-out episodes, scores the bouncing ball's ``hard`` label with its loops.

    This smaller fit gave AUROC 0.91-0.92 over seeds 0-2 (``python
    benchmarks/halting_auroc_small.py``, BENCHMARKS.md; the full benchmark gives 0.91 +- 0.01).
    0.75 sits far below that spread and far above the 0.50 of a rule that ignores difficulty.
    """
    from loopwm_rl.checkpoint import load_world_model
    from loopwm_rl.dataset import collect
    from loopwm_rl.depth import auroc
    from loopwm_rl.offline import fit as fit_offline
    from loopwm_rl.offline import score_transitions
    from loopwm_rl.runconfig import RunConfig

    train = collect("LoopWM/BouncingBall-v0", 10_000, seed=0, progress=False)
    cfg = load_model_config(["looped", "small"])
    assert cfg.halting.rule == "learned" and cfg.halting.budget is not None
    fit_offline(train, RunConfig.for_fit(cfg, updates=800, lr=3e-3), tmp_path, progress=False)
    model, _ = load_world_model(tmp_path / "model.pt")
    assert model.cfg.halting.budget == cfg.halting.budget
    test = collect("LoopWM/BouncingBall-v0", 4000, seed=1, progress=False)
    loops = score_transitions(model, test, np.arange(len(test["observations"]))).loops
    score = auroc(loops, test["hard"])
    assert score > 0.75, f"AUROC of loops for hard transitions: {score:.3f}"
    # the threshold was calibrated on the fit's held-out episodes; on fresh data from another
    # seed the realised compute must still be near the budget (1.6 of 8 loops)
    target = cfg.halting.budget * model.cfg.max_loops
    assert abs(loops.mean() - target) < 0.25 * target, f"mean loops {loops.mean():.2f}, budget {target:.2f}"


@pytest.mark.slow
def test_train_learns_cartpole_with_discrete_actions(tmp_path):
    """Categorical CEM over a learned model with discrete actions. A uniformly random policy
    scores 21.4 +- 9.8 per episode on CartPole-v1 (``python benchmarks/random_policy.py --envs
    CartPole-v1 --lengths 200 --episodes 100``), so +- 5.7 for a mean of 3 episodes. This config
    scored 76.3 (train.seed 0) and 38.7 (train.seed 1) under the ten-step preset and 133.3 and
    82.3 under the twenty-step one (its discount, critic rate and terminal fraction; `debug`
    keeps 3-step plans and 3-step training), and 70.7 and 98.0 with terminations drawn by the
    model's error (``terminal_priority``): it learns, but not reliably far, so the threshold of 30 only says
    "better than random" (1.5 standard errors above it)."""
    argv = [
        "train",
        "cartpole",
        "debug",
        "env.max_episode_steps=200",
        "train.total_steps=800",
        "train.seed_steps=400",
        "train.pretrain_updates=300",
        "train.eval_every=800",
        "train.eval_episodes=3",
        f"train.runs_dir={tmp_path}",
        "--quiet",
    ]
    final = final_eval_return(argv, tmp_path)
    assert final > 30, final

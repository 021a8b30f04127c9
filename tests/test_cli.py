"""CLI smoke tests with the ``debug`` preset: train, resume, collect -> fit -> score."""

import csv
import importlib.util
import json
import math

import numpy as np
import pytest
import yaml

from loopwm_rl.cli import main
from loopwm_rl.dataset import load_dataset
from loopwm_rl.runconfig import load_run_config
from loopwm_rl.rundir import read_config


def run(*argv) -> int:
    return main([str(a) for a in argv])


def only_run(runs):
    (run_dir,) = list(runs.iterdir())
    return run_dir


def test_train_then_resume_continues_counters_and_buffer(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert run("train", "pendulum", "debug", f"train.runs_dir={runs}", "--quiet") == 0
    run_dir = only_run(runs)
    assert "Pendulum-v1__pendulum+debug__0__" in run_dir.name
    out = capsys.readouterr().out
    assert "eval return:" in out and "mean loops per step:" in out
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["train"]["total_steps"] == 300 and cfg["model"]["token_dim"] == 16
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(r["env_step"] for r in records) == 300
    assert any("eval/return_mean" in r and "depth/loops_mean" in r for r in records)
    # the default rule's threshold follows halting.budget, re-set every train.calibrate_every steps
    assert any("depth/threshold" in r for r in records)
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "buffer").is_dir()

    assert run("train", "--resume", run_dir, "train.total_steps=400", "--quiet") == 0
    out = capsys.readouterr().out
    assert "at env step 300 with 300 transitions in the buffer" in out
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(r["env_step"] for r in records) == 400
    from loopwm_rl.checkpoint import read_checkpoint

    payload = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert payload["counters"]["step"] == 400
    from loopwm_rl.replay import SequenceReplay

    replay = SequenceReplay(10_000, 3, 4)
    replay.load(run_dir / "buffer")
    assert len(replay) == 400


def test_train_discrete_env(tmp_path):
    assert run("train", "cartpole", "debug", f"train.runs_dir={tmp_path}", "train.total_steps=200", "--quiet") == 0


def test_collect_fit_score_on_a_suite_env(tmp_path, capsys):
    data = tmp_path / "ball.npz"
    assert run("collect", "--env", "LoopWM/BouncingBall-v0", "--steps", 600, "--out", data, "--quiet") == 0
    ds = load_dataset(data)
    assert len(ds["observations"]) == 600 and ds["hard"].any()
    assert run("fit", "--data", data, "looped", "debug", "--out", tmp_path / "fit", "fit.updates=30", "--quiet") == 0
    scores = tmp_path / "scores.csv"
    assert run("score", "--run", tmp_path / "fit", "--data", data, "--out", scores) == 0
    rows = list(csv.DictReader(scores.open()))
    assert list(rows[0]) == ["index", "episode", "t", "loops", "pred_error", "hard"]
    assert len(rows) == 600
    assert all(1 <= int(r["loops"]) <= 4 for r in rows)
    assert [int(r["t"]) for r in rows[:3]] == [0, 1, 2] and rows[0]["episode"] == "0"
    assert "AUROC" in capsys.readouterr().out


def test_fit_budget_sets_the_saved_threshold(tmp_path, capsys):
    from loopwm_rl.checkpoint import load_world_model

    data = tmp_path / "ball.npz"
    assert run("collect", "--env", "LoopWM/BouncingBall-v0", "--steps", 400, "--out", data, "--quiet") == 0
    fit = ["fit", "--data", data, "looped", "debug", "fit.updates=5", "--quiet"]
    assert run(*fit, "--out", tmp_path / "a", "fit.budget=0.5") == 0
    model, _ = load_world_model(tmp_path / "a" / "model.pt")
    saved = read_config(tmp_path / "a")
    # the calibrated threshold is the one in force, in the model and in config.yaml alike
    assert model.cfg.halting.budget == 0.5 and saved.model.halting == model.cfg.halting
    assert saved.model.halting.tau != load_run_config(["debug"], command="fit").model.halting.tau
    assert run(*fit, "model.halting.rule=fixed", "--out", tmp_path / "b", "fit.budget=0.5") == 2
    assert "no threshold to calibrate" in capsys.readouterr().err
    assert not (tmp_path / "b" / "model.pt").exists()


def test_score_works_on_a_dataset_made_elsewhere(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    np.savez(
        tmp_path / "foreign.npz",
        observations=obs,
        actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        rewards=rng.normal(size=n),
        next_observations=obs + 0.1,
        terminations=np.zeros(n, bool),
        truncations=np.arange(n) % 25 == 24,
    )
    assert (
        run(
            "fit",
            "--data",
            tmp_path / "foreign.npz",
            "looped",
            "debug",
            "--out",
            tmp_path / "fit",
            "fit.updates=5",
            "--quiet",
        )
        == 0
    )
    assert run("score", "--run", tmp_path / "fit", "--data", tmp_path / "foreign.npz", "--out", tmp_path / "s.csv") == 0
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(rows) == n and rows[25]["episode"] == "1" and rows[25]["t"] == "0" and rows[0]["hard"] == ""


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "nope"], "no experiment preset 'nope'"),
        (["train", "pendulum", "train.total_step=3"], "did you mean ['total_steps']"),
        (["train", "pendulum", "model.max_loops=x"], "model.max_loops='x' is not an int"),
        (["train", "pendulum", "planner.elites=999"], "planner.elites=999"),
        (["train", "--resume", "/nonexistent/run"], "is not a run directory"),
        (["score", "--run", "/nonexistent", "--data", "/nonexistent.npz", "--out", "x.csv"], "no dataset file"),
    ],
)
def test_bad_input_exits_2_with_a_message(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(*argv) == 2
    assert needle in capsys.readouterr().err


def test_malformed_datasets_and_checkpoints_are_named(tmp_path, capsys):
    good = {
        "observations": np.zeros((10, 3), np.float32),
        "actions": np.zeros((10, 1), np.float32),
        "rewards": np.zeros(10),
        "next_observations": np.zeros((10, 3), np.float32),
        "terminations": np.zeros(10, bool),
        "truncations": np.zeros(10, bool),
    }
    np.savez(tmp_path / "short.npz", **{**good, "rewards": np.zeros(9)})
    assert run("fit", "--data", tmp_path / "short.npz", "--out", tmp_path / "f") == 2
    assert "'rewards' has 9 rows but 'observations' has 10" in capsys.readouterr().err
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04 truncated")
    assert run("fit", "--data", tmp_path / "trunc.npz", "--out", tmp_path / "f") == 2
    assert "not a readable .npz" in capsys.readouterr().err
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"\x80\x02garbage")
    np.savez(tmp_path / "good.npz", **good)
    assert run("score", "--run", run_dir, "--data", tmp_path / "good.npz", "--out", tmp_path / "s.csv") == 2
    assert "corrupt or truncated" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_nothing_written_is_overwritten(tmp_path, capsys):
    data = tmp_path / "d.npz"
    assert run("collect", "--env", "Pendulum-v1", "--steps", 20, "--out", data, "--quiet") == 0
    before = data.read_bytes()
    assert run("collect", "--env", "Pendulum-v1", "--steps", 30, "--out", data, "--quiet") == 2
    assert "exists" in capsys.readouterr().err and data.read_bytes() == before
    assert (
        run("fit", "--data", data, "debug", "--out", tmp_path / "f", "fit.updates=2", "fit.horizon=2", "--quiet") == 0
    )
    model_bytes = (tmp_path / "f" / "model.pt").read_bytes()
    assert run("fit", "--data", data, "looped", "debug", "--out", tmp_path / "f", "fit.updates=2", "--quiet") == 2
    assert (tmp_path / "f" / "model.pt").read_bytes() == model_bytes


def test_incompatible_checkpoint_for_dataset(tmp_path, capsys):
    pend = tmp_path / "p.npz"
    assert run("collect", "--env", "Pendulum-v1", "--steps", 20, "--out", pend, "--quiet") == 0
    assert (
        run("fit", "--data", pend, "debug", "--out", tmp_path / "f", "fit.updates=2", "fit.horizon=2", "--quiet") == 0
    )
    ball = tmp_path / "b.npz"
    assert run("collect", "--env", "LoopWM/BouncingBall-v0", "--steps", 20, "--out", ball, "--quiet") == 0
    assert run("score", "--run", tmp_path / "f", "--data", ball, "--out", tmp_path / "s.csv") == 2
    assert "the model expects 3" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ball_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("ball") / "ball.npz"
    assert run("collect", "--env", "LoopWM/BouncingBall-v0", "--steps", 400, "--out", data, "--quiet") == 0
    return data


def _compare_rows(out):
    return list(csv.DictReader((out / "compare.csv").open()))


def test_compare_five_models_on_the_same_data(tmp_path, ball_data):
    from loopwm_rl.compare import COLUMNS

    out = tmp_path / "cmp"
    args = ["compare", "debug", "--data", ball_data, "--out", out, "compare.seeds=[0]", "fit.updates=5"]
    assert run(*args, "--quiet") == 0
    rows = _compare_rows(out)
    # debug: max_loops 4 at budget 0.2 -> 0.8 realised loops -> the same-compute stack has L=1
    assert [r["model"] for r in rows] == [
        "looped (adaptive)",
        "looped (fixed K=4)",
        "stacked (L=1, same params)",
        "stacked (L=1, same compute)",
        "stacked (L=4, same depth)",
    ]
    assert list(rows[0]) == COLUMNS
    for r in rows:  # every column filled (no agent asked for: no return)
        assert all(r[c] != "" for c in COLUMNS if c != "return"), r
    looped, fixed, param, _, depth = rows
    assert looped["block_params"] == param["block_params"] and int(depth["block_params"]) == 4 * int(
        param["block_params"]
    )
    assert float(fixed["loops_mean"]) == 4.0 and float(depth["mflops_per_transition"]) > float(
        param["mflops_per_transition"]
    )
    report = (out / "report.html").read_text()
    assert 'id="looped-vs-stacked"' in report and "same depth" in report


def test_a_killed_comparison_resumes_without_redoing_finished_jobs(tmp_path, ball_data, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "debug", "--data", ball_data, "--out", out, "fit.updates=5", "compare.seeds=[0,1]"]
    args += ["compare.models=[looped,stacked_1]"]
    assert run(*args, "--quiet") == 0
    results = sorted((out / "jobs").glob("*.json"))
    assert len(results) == 4
    # as if the grid had been killed before its last job finished
    results[-1].unlink()
    stamps = {p: p.stat().st_mtime_ns for p in results[:-1]}
    capsys.readouterr()
    assert run(*args) == 0
    assert "1 jobs ran, 3 skipped (result exists), 0 failed" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert len(_compare_rows(out)) == 4


def test_compare_with_an_agent_fills_the_return_column_on_the_comparisons_env(tmp_path, ball_data):
    out = tmp_path / "cmp"
    args = ["compare", "debug", "--data", ball_data, "--out", out, "compare.seeds=[0]", "fit.updates=5"]
    args += ["compare.models=[looped,stacked_1]", "compare.agent=debug"]
    args += ["compare.agent_overrides=[train.total_steps=120, train.eval_every=120]"]
    assert run(*args, "--quiet") == 0
    rows = _compare_rows(out)
    # the ball's returns are non-positive distances; a missing agent run would leave "" here
    assert len(rows) == 2 and all(-1e4 < float(r["return"]) <= 0 for r in rows), rows
    agent_cfg = read_config(out / "runs" / "looped__s0" / "agent")
    assert agent_cfg.env.id == "LoopWM/BouncingBall-v0" and agent_cfg.train.total_steps == 120
    assert "| return |" in (out / "compare.md").read_text()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("compare.models=[looped,transformer_xl]", "unknown model 'transformer_xl'"),
        ("compare.seeds=[]", "compare.seeds must name at least one seed"),
        ("compare.launcher=slurm", "compare.launcher='slurm'"),
    ],
)
def test_bad_compare_input_fails_before_anything_runs(tmp_path, ball_data, capsys, override, message):
    out = tmp_path / "cmp"
    assert run("compare", "debug", "--data", ball_data, "--out", out, override, "--quiet") == 2
    assert message in capsys.readouterr().err
    assert not (out / "runs").exists()


def test_an_unreachable_ray_cluster_is_named_before_any_fit(tmp_path, ball_data, capsys):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'loopwm-rl[ray]'")
    out = tmp_path / "cmp"
    args = ["compare", "debug", "--data", ball_data, "--out", out, "compare.launcher=ray"]
    assert run(*args, "compare.ray_address=127.0.0.1:9", "--quiet") == 2
    assert "no Ray cluster answers at '127.0.0.1:9'" in capsys.readouterr().err
    assert not (out / "runs").exists()


@pytest.mark.slow
def test_compare_through_a_local_ray_instance_matches_the_local_launcher(tmp_path, ball_data):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'loopwm-rl[ray]'")
    import ray

    common = ["compare", "debug", "--data", ball_data, "fit.updates=5", "compare.seeds=[0]", "--quiet"]
    common += ["compare.models=[looped,stacked_depth]"]
    assert run(*common, "--out", tmp_path / "local") == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert run(*common, "--out", tmp_path / "ray", "compare.launcher=ray") == 0
    finally:
        ray.shutdown()
    local, remote = _compare_rows(tmp_path / "local"), _compare_rows(tmp_path / "ray")
    assert [r["model"] for r in remote] == [r["model"] for r in local]
    for a, b in zip(local, remote, strict=True):
        for key in ("params", "loops_mean", "pred_error", "open_loop_10"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4, abs=1e-6), key


def test_a_newcomers_path_collect_fit_imagine_check_env(tmp_path):
    """collect --env X, fit --data, then the fitted model as a Gymnasium env: no extra flags."""
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    data = tmp_path / "ball.npz"
    assert run("collect", "--env", "LoopWM/BouncingBall-v0", "--steps", 300, "--out", data, "--quiet") == 0
    assert str(load_dataset(data)["env_id"]) == "LoopWM/BouncingBall-v0"
    assert run("fit", "--data", data, "debug", "fit.updates=5", "--out", tmp_path / "fit", "--quiet") == 0
    assert read_config(tmp_path / "fit").env.id == "LoopWM/BouncingBall-v0"
    env = gym.make("LoopWM/Imagined-v0", checkpoint=str(tmp_path / "fit" / "model.pt"))
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert obs.shape == env.observation_space.shape and 1 <= info["loops"] <= 4


def test_a_model_fitted_on_data_without_an_env_id_says_so(tmp_path, capsys):
    import gymnasium as gym

    from loopwm_rl.checkpoint import CheckpointError

    rng = np.random.default_rng(0)
    obs = rng.normal(size=(40, 3)).astype(np.float32)
    np.savez(
        tmp_path / "anon.npz",
        observations=obs,
        actions=rng.uniform(-1, 1, (40, 1)).astype(np.float32),
        rewards=np.zeros(40),
        next_observations=obs,
        terminations=np.zeros(40, bool),
        truncations=np.arange(40) % 20 == 19,
    )
    anon = tmp_path / "anon.npz"
    assert run("fit", "--data", anon, "debug", "fit.updates=2", "--out", tmp_path / "f", "--quiet") == 0
    assert "names no env id" in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="names no env id"):
        gym.make("LoopWM/Imagined-v0", checkpoint=str(tmp_path / "f" / "model.pt"))


def test_train_fit_and_compare_write_one_config_schema(tmp_path):
    """config.yaml reads back as the same RunConfig for all three commands, with the command
    that wrote it and the presets and overrides it was given."""
    data = tmp_path / "ball.npz"
    assert run("collect", "--env", "LoopWM/BouncingBall-v0", "--steps", 300, "--out", data, "--quiet") == 0
    runs = tmp_path / "runs"
    assert run("train", "bouncing_ball", "debug", f"train.runs_dir={runs}", "train.total_steps=150", "--quiet") == 0
    assert run("fit", "--data", data, "stacked", "debug", "fit.updates=3", "fit.lr=0.002", "--out", tmp_path / "f") == 0
    assert run("compare", "debug", "fit.updates=2", "compare.seeds=[1]", "--data", data, "--out", tmp_path / "c") == 0
    train, fit, comp = read_config(only_run(runs)), read_config(tmp_path / "f"), read_config(tmp_path / "c")
    assert (train.command, fit.command, comp.command) == ("train", "fit", "compare")
    assert train.train.total_steps == 150 and train.preset == "bouncing_ball+debug"
    assert fit.model.kind == "stacked" and fit.fit.lr == 0.002 and fit.fit.data == str(data)
    assert comp.compare.seeds == (1,) and comp.fit.updates == 2
    assert read_config(tmp_path / "c" / "runs" / "looped__s1").fit.seed == 1
    # a resume of a fit run is refused by name
    assert run("train", "--resume", tmp_path / "f") == 2


@pytest.mark.parametrize(("user_policy", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_cli_sets_the_wait_policy_before_torch_loads(user_policy, expected):
    """OpenMP reads OMP_WAIT_POLICY once, when torch loads: the CLI must set it first, and leave
    a user's own choice alone."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user_policy:
        env["OMP_WAIT_POLICY"] = user_policy
    probe = (
        "import os, sys\n"
        "import loopwm_rl.cli\n"
        "assert 'torch' not in sys.modules, 'importing the CLI loaded torch'\n"
        "print(os.environ['OMP_WAIT_POLICY'])\n"
        "sys.exit(loopwm_rl.cli.main(['model', 'debug']))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == expected
    assert "parameters:" in out


@pytest.mark.skipif(importlib.util.find_spec("mujoco") is None, reason="needs the mujoco extra (make test installs it)")
def test_train_inverted_pendulum_debug(tmp_path, capsys):
    """A MuJoCo task end to end: collect, fit, plan, evaluate, checkpoint."""
    runs = tmp_path / "runs"
    assert run("train", "inverted_pendulum", "debug", f"train.runs_dir={runs}", "--quiet") == 0
    run_dir = only_run(runs)
    assert read_config(run_dir).env.id == "InvertedPendulum-v5"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/return_mean" in r for r in records)
    assert (run_dir / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize(
    "setting",
    [["cartpole", "debug"], ["pendulum", "debug", "model.memory=context", "model.burn_in=4"]],
    ids=["discrete", "continuous_burn_in"],
)
def test_train_with_multi_step_critic_targets_on_every_replayed_step(tmp_path, setting):
    runs = tmp_path / "runs"
    critic = ["train.critic_steps=all", "train.critic_n_step=3"]
    assert run("train", *setting, *critic, f"train.runs_dir={runs}", "train.total_steps=200", "--quiet") == 0
    records = [json.loads(line) for line in (only_run(runs) / "metrics.jsonl").read_text().splitlines()]
    q_losses = [r["train/q_loss"] for r in records if "train/q_loss" in r]
    assert q_losses and all(math.isfinite(q) for q in q_losses)


def test_terminal_fraction_gives_the_critic_the_batchs_terminating_steps(tmp_path):
    """CartPole's debug episodes end within 50 steps: with ``train.terminal_fraction`` every
    update's critic learns on terminating steps, also behind a memory's burn-in."""
    runs = tmp_path / "runs"
    argv = ["cartpole", "debug", "model.memory=context", "model.burn_in=2", "train.terminal_fraction=0.25"]
    assert run("train", *argv, f"train.runs_dir={runs}", "train.total_steps=200", "--quiet") == 0
    records = [json.loads(line) for line in (only_run(runs) / "metrics.jsonl").read_text().splitlines()]
    rows = [r["train/terminal_rows"] for r in records if "train/terminal_rows" in r]
    # 16 sequences per batch, a quarter of them ending on a termination
    assert rows and min(rows) >= 4
    assert all(math.isfinite(r["train/q_loss"]) for r in records if "train/q_loss" in r)


def test_terminal_priority_scores_terminations_and_a_resume_keeps_the_sampling(tmp_path):
    """With ``train.terminal_priority`` the trainer re-scores the stored terminations by the
    continuation the model predicts there; a resumed run samples as the run it continues
    (before, it reloaded the buffer without ``terminal_fraction``)."""
    import torch

    from loopwm_rl.trainer import Trainer

    runs = tmp_path / "runs"
    argv = ["cartpole", "debug", "train.terminal_fraction=0.25", "train.terminal_priority=1"]
    assert run("train", *argv, f"train.runs_dir={runs}", "train.total_steps=250", "--quiet") == 0
    records = [json.loads(line) for line in (only_run(runs) / "metrics.jsonl").read_text().splitlines()]
    scored = [r["train/terminal_cont_mean"] for r in records if "train/terminal_cont_mean" in r]
    assert scored and all(0.0 <= c <= 1.0 for c in scored)
    trainer = Trainer.from_run(only_run(runs))
    replay = trainer.replay
    assert (replay.terminal_fraction, replay.terminal_priority) == (0.25, 1.0)
    saved = torch.from_numpy(np.load(only_run(runs) / "buffer" / "terminal_priority.npy"))
    assert torch.equal(replay._priority, saved)
    assert bool((saved[replay.terminal_ends()] < 1.0).any())  # scored, not all left at "missed"


def test_greedy_episodes_act_as_evaluation_does(tmp_path, monkeypatch):
    """``train.greedy_episodes=0.5``: every second training episode after the seed phase plans
    noise-free (``act(eval=True)``), the others explore, and the metrics say which was which."""
    from loopwm_rl.agents import PlanningAgent

    calls: list[tuple[int, bool]] = []
    act = PlanningAgent.act

    def recording(self, obs, *, eval=False):
        calls.append((id(self), eval))
        return act(self, obs, eval=eval)

    monkeypatch.setattr(PlanningAgent, "act", recording)
    runs = tmp_path / "runs"
    argv = ["cartpole", "debug", "train.greedy_episodes=0.5", "train.eval_episodes=1"]
    assert run("train", *argv, f"train.runs_dir={runs}", "train.total_steps=300", "--quiet") == 0
    records = [json.loads(line) for line in (only_run(runs) / "metrics.jsonl").read_text().splitlines()]
    flags = [(r["train/episode"], r["train/greedy"]) for r in records if "train/greedy" in r]
    assert flags and all(greedy <= float(ep % 2 == 1) for ep, greedy in flags)
    assert any(greedy for _, greedy in flags)
    # the training agent (the one that explores; evaluation has its own) also acted noise-free
    training = {agent for agent, eval in calls if not eval}
    assert len(training) == 1 and (training.pop(), True) in calls


def test_fit_score_and_train_with_memory_and_resume_restore_it(tmp_path, capsys):
    """``model.memory=context`` through fit, score and train; a resumed run gets the filter's
    weights and config back."""
    import torch

    from loopwm_rl.checkpoint import load_world_model, read_checkpoint

    data = tmp_path / "zones.npz"
    assert run("collect", "--env", "LoopWM/HiddenZones-v0", "--steps", 600, "--out", data, "--quiet") == 0
    memory = ["model.memory=context", "model.burn_in=4"]
    fit_argv = ["fit", "--data", data, "looped", "debug", *memory, "fit.updates=20", "--quiet"]
    assert run(*fit_argv, "--out", tmp_path / "fit") == 0
    model, _ = load_world_model(tmp_path / "fit" / "model.pt")
    assert model.cfg.memory == "context" and model.memory is not None
    assert run("score", "--run", tmp_path / "fit", "--data", data, "--out", tmp_path / "s.csv") == 0
    assert len(list(csv.DictReader((tmp_path / "s.csv").open()))) == 600

    runs = tmp_path / "runs"
    argv = ["train", "pendulum", "debug", *memory, f"train.runs_dir={runs}", "train.total_steps=200", "--quiet"]
    assert run(*argv) == 0
    run_dir = only_run(runs)
    saved = read_checkpoint(run_dir / "checkpoints" / "last.pt")["state_dict"]
    assert any(k.startswith("memory.") for k in saved)
    assert run("train", "--resume", run_dir, "train.total_steps=250", "--quiet") == 0
    assert "at env step 200" in capsys.readouterr().out
    resumed = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert resumed["counters"]["step"] == 250 and resumed["model_config"]["memory"] == "context"
    assert not all(torch.equal(saved[k], resumed["state_dict"][k]) for k in saved if k.startswith("memory."))


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_its_last_checkpoint(tmp_path, capsys):
    """A learning rate of 1e30 makes every update non-finite: each is skipped, and after
    ``max_bad_updates`` in a row the run exits 2 naming the bad term; the checkpoint written
    before (step 50, in the random-action phase) is untouched."""
    runs = tmp_path / "runs"
    argv = ["train", "pendulum", "debug", f"train.runs_dir={runs}", "train.lr=1e30", "train.max_bad_updates=3"]
    assert run(*argv, "train.checkpoint_every=50", "--quiet") == 2
    err = capsys.readouterr().err
    assert "3 updates in a row were non-finite" in err and "world model" in err
    from loopwm_rl.checkpoint import read_checkpoint

    assert read_checkpoint(only_run(runs) / "checkpoints" / "last.pt")["counters"]["step"] == 50


def test_a_critic_that_keeps_diverging_stops_the_run(tmp_path, capsys, monkeypatch):
    """World-model updates stay fine while every critic update is non-finite: the run still
    ends after ``max_bad_updates`` updates in a row, naming the critic."""
    from loopwm_rl.agents import ActorCritic

    def broken(self, *args, **kwargs):
        return {"train/q_loss": float("nan"), "guard/skipped": 1.0, "guard/bad": "critic: train/q_loss"}

    monkeypatch.setattr(ActorCritic, "update", broken)
    argv = ["train", "pendulum", "debug", f"train.runs_dir={tmp_path}", "train.max_bad_updates=3", "--quiet"]
    assert run(*argv) == 2
    assert "3 updates in a row were non-finite (last: critic: train/q_loss)" in capsys.readouterr().err


def test_env_kwargs_reach_the_env_and_bad_ones_are_named(tmp_path, capsys):
    args = ["train", "bouncing_ball", "debug", f"train.runs_dir={tmp_path}", "train.total_steps=120", "--quiet"]
    assert run(*args, "env.kwargs.thrust=1.5") == 0
    assert read_config(only_run(tmp_path)).env.kwargs == {"thrust": 1.5}
    assert run(*args, "env.kwargs.thrusst=1.5") == 2
    err = capsys.readouterr().err
    assert "thrusst" in err and "thrust" in err.split("Valid arguments")[1]

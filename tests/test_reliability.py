"""A training run survives being killed anywhere, a second writer, and a full disk.

The kill tests start ``loopwm-rl train pendulum debug`` in a subprocess with
``LOOPWM_KILL_AT`` naming a point (:mod:`loopwm_rl.killpoints`), check that what a resume
restores is exactly what the last complete checkpoint recorded, then resume to the end.
"""

import errno
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from loopwm_rl.checkpoint import CheckpointError, read_checkpoint
from loopwm_rl.cli import main
from loopwm_rl.runconfig import load_run_config
from loopwm_rl.rundir import run_lock, write_config
from loopwm_rl.trainer import Trainer

# debug preset: 300 env steps, random actions until 100, then one world-model and one critic
# update per step; evaluation (one 50-step episode) and a checkpoint at 150 and 300
TRAIN = ["train", "pendulum", "debug", "--quiet"]


def train_subprocess(runs, *extra, kill_at=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LOOPWM_KILL_AT", None)
    if kill_at:
        env["LOOPWM_KILL_AT"] = kill_at
    argv = [sys.executable, "-m", "loopwm_rl", *TRAIN, f"train.runs_dir={runs}", *extra]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)


def only_run(runs):
    (run_dir,) = list(runs.iterdir())
    return run_dir


def state_of(trainer):
    return {
        "step": trainer.step,
        "count": len(trainer.replay),
        "checksum": trainer.replay.checksum(),
        "torch_rng": torch.get_rng_state(),
        "planner_rng": trainer.agent.generator.get_state(),
        "tau": trainer.model.cfg.halting.tau,
    }


# each point is reached after the checkpoint at step 150 and before the one at 300 is complete
POINTS = [
    "collect@200",  # during collection
    "wm_update@100",  # after a world-model step, before the critic's
    "critic_update@100",  # after a critic step
    "eval@60",  # in the middle of the second evaluation episode
    "save:buffer@2",  # the new buffer written, the weights not yet
    "save:model@2",  # the weights in their temporary file
    "save:swap@2",  # the new checkpoint in place, the new buffer not yet swapped in
    "save:config@2",  # all but config.yaml written
]


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_a_run_killed_anywhere_resumes_from_its_last_complete_checkpoint(tmp_path, point):
    runs = tmp_path / "runs"
    proc = train_subprocess(runs, kill_at=point)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    run_dir = only_run(runs)
    payload = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    step = payload["counters"]["step"]
    assert step == (300 if point in ("save:swap@2", "save:config@2") else 150)

    trainer = Trainer.from_run(run_dir)
    got = state_of(trainer)
    assert got["step"] == step and got["count"] == payload["buffer"]["count"] == step
    assert got["checksum"] == payload["buffer"]["checksum"]
    assert torch.equal(got["torch_rng"], payload["rng"]["torch"])
    assert torch.equal(got["planner_rng"], payload["rng"]["planner"])
    assert got["tau"] == payload["model_config"]["halting"]["tau"]
    saved_opt, opt = payload["optimizer"]["state"], trainer.optimizer.state_dict()["state"]
    assert saved_opt.keys() == opt.keys()
    assert all(torch.equal(saved_opt[k][n], opt[k][n]) for k in opt for n in opt[k])
    assert all(torch.equal(v, payload["state_dict"][k]) for k, v in trainer.model.state_dict().items())
    del trainer

    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    final = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert final["counters"]["step"] == 300 and final["buffer"]["count"] == 300
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith("buffer")) == ["buffer"]
    # the steps the killed process logged after its checkpoint are logged once, by the resume
    evals = [
        r["env_step"]
        for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        if "eval/return_mean" in r
    ]
    assert evals == [150, 300]


@pytest.mark.slow
def test_a_kill_during_the_first_checkpoint_leaves_nothing_to_resume_and_says_so(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert train_subprocess(runs, kill_at="save:model@1").returncode == -signal.SIGKILL
    assert main(["train", "--resume", str(only_run(runs)), "--quiet"]) == 2
    assert "no checkpoint file at" in capsys.readouterr().err


@pytest.mark.slow
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    """Killed right after the checkpoint at step 150 (an episode boundary of the 50-step debug
    episodes, so no episode is cut) and resumed, a run ends with the same weights and the same
    evaluation return as the run that was never killed: every RNG the loop draws from (torch,
    the planner's, the replay sampler's) is restored. A kill inside an episode cannot match:
    the env's internal state is not saved, so the resume starts a fresh episode."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert train_subprocess(whole).returncode == 0
    assert train_subprocess(cut, kill_at="collect@151").returncode == -signal.SIGKILL
    assert main(["train", "--resume", str(only_run(cut)), "--quiet", "wandb.mode=disabled"]) == 0
    a = read_checkpoint(only_run(whole) / "checkpoints" / "last.pt")
    b = read_checkpoint(only_run(cut) / "checkpoints" / "last.pt")
    assert a["buffer"] == b["buffer"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])

    def last_return(run_dir):
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [r["eval/return_mean"] for r in rows if "eval/return_mean" in r][-1]

    assert last_return(only_run(whole)) == last_return(only_run(cut))


def test_when_a_run_evaluates_never_changes_how_it_trains(tmp_path):
    """A run that evaluates at steps 150 and 300 and one that evaluates only at 300, with
    more episodes, end with the same weights, halting threshold and replay buffer: the
    threshold is re-set on ``train.calibrate_every``'s schedule (here ``eval_every``, 150),
    not by evaluating, and evaluation plans with its own agent and random numbers."""
    often, once = tmp_path / "often", tmp_path / "once"
    assert train_subprocess(often, "train.eval_at=150,300").returncode == 0
    assert train_subprocess(once, "train.eval_at=300", "train.eval_episodes=2").returncode == 0
    a = read_checkpoint(only_run(often) / "checkpoints" / "last.pt")
    b = read_checkpoint(only_run(once) / "checkpoints" / "last.pt")
    assert a["buffer"] == b["buffer"]
    assert a["model_config"]["halting"] == b["model_config"]["halting"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    rows = [json.loads(line) for line in (only_run(once) / "metrics.jsonl").read_text().splitlines()]
    calibrated = [r["env_step"] for r in rows if "depth/calibrated_loops_mean" in r]
    assert 150 in calibrated and 300 in calibrated  # re-set at 150 although nothing evaluated there


def test_a_second_writer_is_refused_and_a_stale_lock_is_not(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main([*TRAIN, f"train.runs_dir={runs}", "train.total_steps=150"]) == 0
    run_dir = only_run(runs)
    with run_lock(run_dir):  # another live writer
        assert main(["train", "--resume", str(run_dir), "train.total_steps=200", "--quiet"]) == 2
        assert "is being written by another process" in capsys.readouterr().err
    (run_dir / ".lock").write_text("999999")  # left by a killed process: no flock is held
    assert main(["train", "--resume", str(run_dir), "train.total_steps=200", "--quiet"]) == 0
    assert read_checkpoint(run_dir / "checkpoints" / "last.pt")["counters"]["step"] == 200


def test_a_full_disk_names_the_path_and_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    assert main([*TRAIN, f"train.runs_dir={runs}", "train.total_steps=150"]) == 0
    run_dir = only_run(runs)
    before = (run_dir / "checkpoints" / "last.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, path, *args, **kwargs):
        if str(path).endswith(".pt") or "last.pt" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    assert main(["train", "--resume", str(run_dir), "train.total_steps=300", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot write the checkpoint" in err and "No space left on device" in err and "last.pt" in err
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before
    monkeypatch.setattr(torch, "save", real_save)
    assert main(["train", "--resume", str(run_dir), "train.total_steps=300", "--quiet"]) == 0


def test_a_checkpoint_whose_buffer_is_gone_is_refused_by_name(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main([*TRAIN, f"train.runs_dir={runs}", "train.total_steps=150"]) == 0
    run_dir = only_run(runs)
    (run_dir / "buffer").rename(run_dir / "elsewhere")
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    assert "has no replay buffer matching the checkpoint (150 transitions)" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="replay buffer"):
        Trainer.from_run(run_dir)


def test_opening_a_run_for_inspection_names_a_folder_that_is_not_one_or_has_no_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"not a run directory: config\.yaml is missing"):
        Trainer.from_run(tmp_path)
    write_config(tmp_path, load_run_config(["pendulum", "debug"], [f"train.runs_dir={tmp_path}"]))
    with pytest.raises(CheckpointError, match="no checkpoint file at"):
        Trainer.from_run(tmp_path)

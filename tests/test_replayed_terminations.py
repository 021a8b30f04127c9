"""benchmarks/replayed_terminations.py and the scores ``train.terminal_priority`` samples by."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from loopwm_rl.cli import main


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("replayed_terminations")


def test_split_and_summary(bench):
    assert bench.parse_split("0:2.4") == (0, 2.4)
    with pytest.raises(argparse.ArgumentTypeError, match="DIM:BOUND"):
        bench.parse_split("0-2.4")
    out = bench.summary(np.array([0.1, 0.9, 0.6]))
    assert out == {"count": 3, "cont_mean": pytest.approx(0.5333, abs=1e-4), "cont_max": 0.9, "missed": 2}
    assert bench.summary(np.array([])) == {"count": 0}


def test_each_termination_is_scored_by_the_continuation_imagined_along_its_slice(bench, tmp_path):
    runs = tmp_path / "runs"
    argv = ["train", "cartpole", "debug", "train.terminal_fraction=0.25", f"train.runs_dir={runs}"]
    assert main([*argv, "train.total_steps=150", "--quiet", "wandb.mode=disabled"]) == 0
    (run,) = list(runs.iterdir())
    out = bench.score_run(run, (0, 2.4))
    beyond, within = out["obs[0] beyond 2.4"], out["obs[0] within 2.4"]
    assert out["all"]["count"] == beyond["count"] + within["count"] > 0
    assert 0.0 <= out["all"]["cont_mean"] <= out["all"]["cont_max"] <= 1.0

    from loopwm_rl.trainer import Trainer

    trainer = Trainer.from_run(run)
    assert trainer.model.cfg.sequence_burn_in == 0  # the debug model has no memory
    ends, batch, cont = trainer.score_terminations()
    assert torch.equal(trainer.replay._priority[ends], cont)  # what the replay samples by
    assert bool(batch.terminated[-1].all()) and not bool(batch.terminated[:-1].any())
    with torch.no_grad():  # by hand, the first stored termination
        trainer.model.eval()
        first = trainer.model.imagine(trainer.model.encode(batch.obs[0, :1]), batch.actions[:, :1]).cont[-1, 0]
    assert float(trainer.replay._priority[ends[0]]) == pytest.approx(float(first), abs=1e-6)

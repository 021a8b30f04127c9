"""The job launcher: skip-if-done, failures reported without losing other results, processes."""

from __future__ import annotations

import builtins
import json

import pytest

from loopwm_rl.jobs import Job, LauncherError, load_results, resolve, run_jobs

JOB_FILE = """
import os

def square(x):
    if x < 0:
        raise ValueError(f"negative input {x}")
    return {"y": x * x, "pid": os.getpid()}
"""


@pytest.fixture
def job_file(tmp_path):
    path = tmp_path / "grid_jobs.py"
    path.write_text(JOB_FILE)
    return path


def _grid(job_file, tmp_path, xs):
    return [Job(f"x{x}", f"{job_file}:square", {"x": x}, tmp_path / "out" / f"x{x}.json") for x in xs]


def test_local_runs_every_job_and_writes_its_result(job_file, tmp_path):
    grid = _grid(job_file, tmp_path, [1, 2, 3])
    report = run_jobs(grid, log=lambda _: None)
    assert sorted(report.ran) == ["x1", "x2", "x3"] and not report.failed
    assert [r["y"] for r in load_results(grid)] == [1, 4, 9]
    assert all(r["job"] == f"x{x}" for r, x in zip(load_results(grid), [1, 2, 3], strict=True))


def test_existing_results_are_skipped_and_force_reruns(job_file, tmp_path):
    grid = _grid(job_file, tmp_path, [1, 2])
    run_jobs(grid[:1], log=lambda _: None)
    first = json.loads(grid[0].result.read_text())
    report = run_jobs(grid, log=lambda _: None)
    assert report.skipped == ["x1"] and report.ran == ["x2"]
    assert json.loads(grid[0].result.read_text()) == first  # untouched
    assert run_jobs(grid, force=True, log=lambda _: None).ran == ["x1", "x2"]


def test_a_result_written_meanwhile_by_another_grid_is_not_rerun(job_file, tmp_path):
    grid = _grid(job_file, tmp_path, [1, 2])
    lines = []

    def log(line):
        lines.append(line)
        if line == "[1/2] x1 done":  # a second grid finishes x2 while this one ran x1
            run_jobs(grid[1:], log=lambda _: None)

    report = run_jobs(grid, log=log)
    written = json.loads(grid[1].result.read_text())
    assert report.ran == ["x1"] and report.skipped == ["x2"]
    assert "[2/2] x2 skipped: its result appeared meanwhile" in lines
    assert written["y"] == 4


def test_a_failing_job_is_reported_and_the_others_finish(job_file, tmp_path):
    grid = _grid(job_file, tmp_path, [1, -1, 3])
    report = run_jobs(grid, log=lambda _: None)
    assert list(report.failed) == ["x-1"] and "negative input -1" in report.failed["x-1"]
    assert "FAILED x-1" in report.summary()
    assert grid[0].result.exists() and grid[2].result.exists() and not grid[1].result.exists()
    assert "ValueError" in (tmp_path / "out" / "x-1.json.error.txt").read_text()
    # fixing the input and re-running runs only the failed job
    report = run_jobs([*grid[:1], _grid(job_file, tmp_path, [2])[0]], log=lambda _: None)
    assert report.skipped == ["x1"] and report.ran == ["x2"]


@pytest.mark.slow
def test_process_pool_runs_each_job_in_its_own_process(job_file, tmp_path):
    grid = _grid(job_file, tmp_path, [1, 2, -3])
    report = run_jobs(grid, processes=2, log=lambda _: None)
    assert sorted(report.ran) == ["x1", "x2"] and list(report.failed) == ["x-3"]
    results = load_results(grid)
    assert [r["y"] for r in results] == [1, 4]
    assert len({r["pid"] for r in results}) == 2


def test_bad_launcher_and_names_are_rejected(job_file, tmp_path):
    with pytest.raises(LauncherError, match="launcher='slurm'"):
        run_jobs(_grid(job_file, tmp_path, [1]), launcher="slurm")
    with pytest.raises(ValueError, match="unique"):
        run_jobs(_grid(job_file, tmp_path, [1, 1]))
    with pytest.raises(ValueError, match="must look like"):
        resolve("no_colon")


def test_ray_launcher_without_ray_says_how_to_install_it(job_file, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(LauncherError, match=r"pip install 'loopwm-rl\[ray\]'"):
        run_jobs(_grid(job_file, tmp_path, [1]), launcher="ray")

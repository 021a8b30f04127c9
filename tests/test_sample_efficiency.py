"""benchmarks/sample_efficiency.py: a stopped looped run's evaluations reach the table, marked,
and never stand in for a finished job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def bench(tmp_path, monkeypatch, load_benchmark):
    module = load_benchmark("sample_efficiency")
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    return module


def _metrics(run: Path, evals: dict[int, float], last_step: int) -> None:
    run.mkdir(parents=True)
    rows = [{"env_step": 100, "train/return": -40.0}]
    for i, (step, ret) in enumerate(sorted(evals.items())):
        rows.append(
            {
                "env_step": step,
                "eval/return_mean": ret,
                "eval/return_std": 1.0,
                "train/wall_s": 1000.0 * (i + 1),
                **{f"time/{k}_s": 10.0 for k in ("act", "env", "update", "eval")},
            }
        )
    rows.append({"env_step": last_step, "train/loss": 0.5})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_a_stopped_run_becomes_a_marked_partial_result(bench, tmp_path):
    runs = tmp_path / "runs"
    _metrics(runs / "reacher__s0" / "Reacher-v5__reacher__0__1", {10000: -7.9, 20000: -6.7}, last_step=25300)
    _metrics(runs / "hopper__s0" / "Hopper-v5__hopper__0__1", {}, last_step=3000)  # no evaluation yet
    written = bench.collect_partial(runs)
    assert [p.name for p in written] == ["reacher__looped__s0.partial.json"]
    result = json.loads(written[0].read_text())
    assert result["partial"] is True and result["env_steps"] == 25300
    assert result["returns"] == {"10000": -7.9, "20000": -6.7, "50000": None}
    assert result["train_s_per_1k"] == pytest.approx(1000 * (2000 - 10) / 20000)

    assert bench.load_groups(partial=False) == {}  # off unless asked for
    groups = bench.load_groups(partial=True)
    rows = bench.table_rows(groups)
    assert [(r["env_steps"], r["seeds"], r["partial"]) for r in rows] == [(10000, 1, 1), (20000, 1, 1)]
    table = "\n".join(bench.markdown(groups, rows))
    assert "-8 ± 0 (1*)" in table and "-7 ± 0 (1*)" in table  # std over seeds and "stopped" in table


def test_a_finished_job_supersedes_its_partial_result(bench, tmp_path):
    runs = tmp_path / "runs"
    _metrics(runs / "reacher__s1" / "Reacher-v5__reacher__1__1", {10000: -8.0}, last_step=12000)
    (partial,) = bench.collect_partial(runs)
    final = {"returns": {"10000": -7.0, "20000": -6.0, "50000": -5.0}, "train_s_per_1k": 300.0, "peak_rss_mb": 600.0}
    (bench.RESULTS / "reacher__looped__s1.json").write_text(json.dumps(final))
    groups = bench.load_groups(partial=True)
    assert groups[("reacher", "looped")] == [final]  # the partial file is ignored, not averaged in
    assert bench.collect_partial(runs) == []  # and no new one is written
    (job,) = bench.jobs(["reacher"], ["looped"], [1], str(runs), [])
    assert job.result.name == "reacher__looped__s1.json" and partial.name != job.result.name


def test_a_variant_grid_writes_its_table_beside_its_own_results(bench, tmp_path):
    # the preset's table and plot stay where the README points; a variant's go to its folder
    assert bench.summary_dir(bench.DEFAULT_RESULTS) == bench.HERE / "results"
    variant = tmp_path / "sample_efficiency_variant"
    assert bench.summary_dir(variant) == variant


def test_a_variant_grid_refuses_the_presets_run_folders(bench, tmp_path):
    # it would resume the preset's runs under its overrides, or file them as its own partials
    with pytest.raises(ValueError, match="its own --runs-dir"):
        bench.check_folders(tmp_path / "sample_efficiency_variant", bench.DEFAULT_RUNS)
    bench.check_folders(tmp_path / "sample_efficiency_variant", str(tmp_path / "runs_variant"))
    bench.check_folders(bench.DEFAULT_RESULTS, bench.DEFAULT_RUNS)

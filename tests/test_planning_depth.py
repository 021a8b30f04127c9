"""benchmarks/planning_depth.py: ``--summarize`` reads only the ``--results`` folder it is given,
so runs trained with other settings do not count as seeds of one row."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _result(folder: Path, run: str, variant: str, ret: float, mflops: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    row = {"env": "Pendulum-v1", "variant": variant, "return_mean": ret}
    row |= {"mflops_per_decision": mflops, "loops_per_imagined_step": 1.0}
    (folder / f"{run}__{variant}.json").write_text(json.dumps(row))


def test_summarize_reads_only_the_results_folder_it_is_given(tmp_path, monkeypatch, capsys, load_benchmark):
    bench = load_benchmark("planning_depth")
    preset, variant = tmp_path / "preset", tmp_path / "variant"
    _result(preset, "run0", "fixed8", -80.0, 100.0)
    _result(preset, "run1", "fixed8", -90.0, 100.0)
    _result(preset, "run0", "fixed1", -85.0, 20.0)
    _result(variant, "run0", "fixed8", -500.0, 100.0)
    monkeypatch.setattr(sys, "argv", ["planning_depth.py", "--summarize", "--results", str(preset)])
    bench.main()
    rows = {line.split(" | ")[1]: line for line in capsys.readouterr().out.splitlines() if "Pendulum" in line}
    assert rows["fixed8"].startswith("| Pendulum-v1 | fixed8 | 2 | -85.0 ± 5.0 | 100.0 | 1.00 |")
    assert rows["fixed1"].startswith("| Pendulum-v1 | fixed1 | 1 | -85.0 ± 0.0 | 20.0 | 0.20 |")
    bench.summarize(variant)
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "Pendulum" in x]
    assert "| 1 | -500.0 ± 0.0 |" in line

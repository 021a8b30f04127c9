"""``loopwm-rl report RUN_DIR``: one self-contained HTML dashboard of a run, readable offline.

It draws from the run's local files only: ``config.yaml``, ``metrics.jsonl``,
``rollouts.jsonl`` (per-step depth traces of evaluation episodes), ``scores.csv`` (from
``score``) and ``compare.md`` (from ``compare``) when present.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import numpy as np
import yaml

from .atomic import atomic_path
from .depth import auroc
from .frames import filmstrip, png_base64
from .svg import bar_chart, line_chart, scatter


class ReportError(ValueError):
    """The directory is not a run, or holds no depth data; the message says what is missing."""


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_run(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a directory")
    metrics = _jsonl(run_dir / "metrics.jsonl")
    if not metrics and not (run_dir / "config.yaml").is_file():
        raise ReportError(f"{run_dir} is not a run directory: it has neither metrics.jsonl nor config.yaml")
    rollouts = _jsonl(run_dir / "rollouts.jsonl")
    scores = []
    if (run_dir / "scores.csv").is_file():
        with (run_dir / "scores.csv").open() as handle:
            scores = [
                {
                    "step": int(r["t"]),
                    "loops": int(r["loops"]),
                    "pred_error": float(r["pred_error"]),
                    "hard": bool(int(r["hard"])) if r["hard"] != "" else False,
                }
                for r in csv.DictReader(handle)
            ]
    compare = (run_dir / "compare.md").read_text() if (run_dir / "compare.md").is_file() else ""
    has_depth = rollouts or scores or any(k.startswith("depth/") for m in metrics for k in m)
    if not has_depth and not compare:
        raise ReportError(
            f"{run_dir} holds no depth data: no rollouts.jsonl, scores.csv or depth/* metrics "
            "(train until the first evaluation, or run `loopwm-rl score` into this folder)"
        )
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    return {"metrics": metrics, "rollouts": rollouts, "scores": scores, "config": config, "compare": compare}


def _series(metrics: list[dict], key: str) -> tuple[list[float], list[float]]:
    rows = [(m["env_step"], m[key]) for m in metrics if m.get(key) is not None]
    return [r[0] for r in rows], [r[1] for r in rows]


def _transitions(run: dict) -> list[dict]:
    """Every scored transition: all evaluation traces, else the offline scores."""
    steps = [s for r in run["rollouts"] for s in r["steps"]]
    return steps or run["scores"]


def _filmstrip(run_dir: Path, rollouts: list[dict], k: int = 8) -> str:
    """The frames of the last evaluation's first episode at its ``k`` steps with the most loops
    and its ``k`` with the fewest, each captioned with step, loops, error and hard/events; ""
    when the run recorded no frames for that evaluation."""
    path = run_dir / "frames" / "last_eval.npz"
    if not path.is_file() or not rollouts:
        return ""
    with np.load(path) as saved:
        frames, env_step = saved["frames"], int(saved["env_step"])
    trace = next((r for r in reversed(rollouts) if r["env_step"] == env_step), None)
    if trace is None or len(trace["steps"]) != len(frames):
        return ""
    steps = trace["steps"]
    top, bottom = filmstrip([s["loops"] for s in steps], k)

    def row(title: str, picks: list[int]) -> str:
        cells = []
        for i in picks:
            s = steps[i]
            mark = f"hard ({s.get('events', 1)} events)" if s.get("hard") else "easy"
            caption = f"step {s['step']} · {s['loops']} loops · error {s['pred_error']:.3g} · {mark}"
            cells.append(
                f'<figure class="frame{" hard" if s.get("hard") else ""}"><img alt="{html.escape(caption)}" '
                f'src="data:image/png;base64,{png_base64(frames[i])}"><figcaption>{html.escape(caption)}</figcaption></figure>'
            )
        return f'<h3>{html.escape(title)}</h3><div class="strip">{"".join(cells)}</div>'

    return (
        f"<p>Evaluation at env step {env_step}, first episode: the frame each step started from.</p>"
        + row(f"The {len(top)} steps with the most loops", top)
        + row(f"The {len(bottom)} steps with the fewest loops", bottom)
    )


def _error_by_episode_step(steps: list[dict], cfg: dict) -> str:
    """Mean one-step error per bin of steps since the episode started: a model with memory
    (``model.memory``) should get better as it sees more of the episode."""
    t = np.array([s["step"] for s in steps])
    err = np.array([float(s["pred_error"]) for s in steps])
    width = max(1, int(t.max()) // 20 + 1)
    bins = t // width
    xs = [int(b * width) for b in np.unique(bins)]
    ys = [float(err[bins == b].mean()) for b in np.unique(bins)]
    memory = cfg.get("model", {}).get("memory", "none")
    return line_chart(
        f"One-step error by steps since the episode started (bins of {width}; memory: {memory})",
        {"pred_error": (xs, ys)},
        "episode step",
        "mean pred_error",
    )


def _md_table(markdown: str) -> str:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    if len(lines) < 2:
        return f"<pre>{html.escape(markdown)}</pre>"
    cells = [[html.escape(c.strip()) for c in line.strip("|").split("|")] for line in lines]
    head = "".join(f"<th>{c}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[2:])
    return f"<table><tr>{head}</tr>{body}</table>"


def render(run_dir: str | Path) -> str:
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    metrics, cfg = run["metrics"], run["config"]
    last_eval = next((m for m in reversed(metrics) if "eval/return_mean" in m or "depth/loops_mean" in m), {})
    steps = _transitions(run)
    loops = np.array([s["loops"] for s in steps]) if steps else np.zeros(0, int)
    hard = np.array([bool(s.get("hard", False)) for s in steps]) if steps else np.zeros(0, bool)
    cap = int(loops.max()) if len(loops) else 1

    sections = []
    facts = {
        "env": cfg.get("env", {}).get("id", "-"),
        "model": cfg.get("model", {}).get("kind", "-"),
        "halting rule": cfg.get("model", {}).get("halting", {}).get("rule", "-"),
        "max loops": cfg.get("model", {}).get("max_loops", "-"),
        "env steps": metrics[-1]["env_step"] if metrics else "-",
        "eval return": f"{last_eval['eval/return_mean']:.2f}" if "eval/return_mean" in last_eval else "-",
        "transitions scored": f"{len(loops)} ({'all evaluation traces' if run['rollouts'] else 'scores.csv'})",
        "mean loops": f"{loops.mean():.2f}" if len(loops) else "-",
        "loops hard / easy": (
            f"{loops[hard].mean():.2f} / {loops[~hard].mean():.2f}" if hard.any() and (~hard).any() else "-"
        ),
        "AUROC loops → hard": f"{auroc(loops, hard):.3f}" if hard.any() and (~hard).any() else "-",
    }
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    sections.append(("Summary", f"<table>{rows}</table>"))

    if run["rollouts"]:
        trace = run["rollouts"][-1]
        xs = [s["step"] for s in trace["steps"]]
        marks = [s["step"] for s in trace["steps"] if s.get("hard")]
        chart = line_chart(
            f"Loops per step, evaluation episode at env step {trace['env_step']}",
            {"loops": (xs, [s["loops"] for s in trace["steps"]])},
            "episode step",
            "loops",
            marks=marks,
            mark_label="hard step",
        )
        table = "".join(
            f"<tr><td>{s['step']}</td><td>{s['loops']}</td><td>{int(bool(s.get('hard')))}</td>"
            f"<td>{s['reward']:.4g}</td><td>{s['pred_error']:.4g}</td></tr>"
            for s in trace["steps"]
        )
        sections.append(
            (
                "Depth per step",
                chart + "<details><summary>the trace as a table</summary><table>"
                "<tr><th>step</th><th>loops</th><th>hard</th><th>reward</th><th>pred_error</th></tr>"
                f"{table}</table></details>",
            )
        )

    if len(loops):
        cats = [str(k) for k in range(1, cap + 1)]
        groups = {"easy": [float(((loops == k) & ~hard).sum()) for k in range(1, cap + 1)]}
        if hard.any():
            groups["hard"] = [float(((loops == k) & hard).sum()) for k in range(1, cap + 1)]
        sections.append(
            ("Loop histogram", bar_chart("Transitions by loops used", cats, groups, "loops", "transitions"))
        )
        errs = [float(s["pred_error"]) for s in steps]
        pts = {"easy": ([int(v) for v in loops[~hard]], [e for e, h in zip(errs, hard, strict=True) if not h])}
        if hard.any():
            pts["hard"] = ([int(v) for v in loops[hard]], [e for e, h in zip(errs, hard, strict=True) if h])
        sections.append(
            (
                "Loops vs prediction error",
                scatter("One-step prediction error by loops used", pts, "loops", "pred_error"),
            )
        )

    strip = _filmstrip(run_dir, run["rollouts"])
    if strip:
        sections.append(("Filmstrip", strip))

    if len(loops) and all("step" in s for s in steps):
        sections.append(("Error over the episode", _error_by_episode_step(steps, cfg)))

    residual_keys = sorted(
        (k for k in last_eval if k.startswith("depth/residual_")), key=lambda k: int(k.rsplit("_", 1)[1])
    )
    if residual_keys:
        ks = [int(k.rsplit("_", 1)[1]) for k in residual_keys]
        chart = line_chart(
            "Convergence: relative latent change at loop k",
            {"residual": (ks, [last_eval[k] for k in residual_keys])},
            "loop k",
            "|Δh| / |h|",
        )
        sections.append(("Convergence curve", chart))

    curves = []
    for keys, title in (
        (("train/return", "eval/return_mean"), "Return"),
        (("train/wm_loss", "train/obs_mse", "train/consistency"), "World-model losses"),
        (("depth/loops_mean", "depth/loops_hard_mean", "depth/loops_easy_mean"), "Loops during training"),
    ):
        series = {k: _series(metrics, k) for k in keys if _series(metrics, k)[0]}
        if series:
            curves.append(line_chart(title, series, "env step", title.lower()))
    if curves:
        sections.append(("Training curves", "\n".join(curves)))
    if run["compare"]:
        sections.append(("Looped vs stacked", _md_table(run["compare"])))

    body = "\n".join(
        f'<section id="{html.escape(t.lower().replace(" ", "-"))}"><h2>{html.escape(t)}</h2>{c}</section>'
        for t, c in sections
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>loopwm-rl report: {html.escape(run_dir.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; max-width: 1200px; }}
section {{ margin-bottom: 28px; }} svg {{ margin: 4px 12px 4px 0; background: #fff; }}
.strip {{ display: flex; flex-wrap: wrap; gap: 6px; }}
figure.frame {{ margin: 0; width: 132px; font-size: 11px; }}
figure.frame img {{ width: 128px; border: 2px solid #ccc; }}
figure.hard img {{ border-color: #d62728; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; border-bottom: 1px solid #ddd; }}
</style></head>
<body><h1>loopwm-rl report: {html.escape(run_dir.name)}</h1>
{body}
</body></html>
"""


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    out = Path(out) if out else Path(run_dir) / "report.html"
    text = render(run_dir)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return out

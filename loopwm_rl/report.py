"""``loopwm-rl report RUN_DIR [RUN_DIR ...]``: one self-contained HTML dashboard, readable offline.

It draws from the runs' local files only: ``config.yaml``, ``metrics.jsonl``,
``rollouts.jsonl`` (per-step depth traces of every evaluation episode), ``frames/`` (the
last evaluation's first episode), ``scores.csv`` (from ``score``) and ``compare.csv`` /
``compare.md`` (from ``compare``) when present. Charts are Plotly (:mod:`loopwm_rl.charts`)
with one inlined copy of plotly.js, so the file loads nothing from the network. Several runs
are drawn side by side on shared axes.
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from . import charts
from .atomic import atomic_path
from .depth import auroc, residual_matrix
from .frames import filmstrip, png_base64


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
    compare_rows = []
    if (run_dir / "compare.csv").is_file():
        with (run_dir / "compare.csv").open() as handle:
            compare_rows = list(csv.DictReader(handle))
    has_depth = rollouts or scores or any(k.startswith("depth/") for m in metrics for k in m)
    if not has_depth and not compare:
        raise ReportError(
            f"{run_dir} holds no depth data: no rollouts.jsonl, scores.csv or depth/* metrics "
            "(train until the first evaluation, or run `loopwm-rl score` into this folder)"
        )
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    return {
        "name": run_dir.name,
        "dir": run_dir,
        "metrics": metrics,
        "rollouts": rollouts,
        "scores": scores,
        "config": config,
        "compare": compare,
        "compare_rows": compare_rows,
    }


def _series(metrics: list[dict], key: str) -> tuple[list[float], list[float]]:
    rows = [(m["env_step"], m[key]) for m in metrics if m.get(key) is not None]
    return [r[0] for r in rows], [r[1] for r in rows]


def _last_eval_episodes(run: dict) -> list[list[dict]]:
    """The step traces of every episode of the last evaluation (older runs logged one)."""
    if not run["rollouts"]:
        return []
    last = run["rollouts"][-1]["env_step"]
    rows = [r for r in run["rollouts"] if r["env_step"] == last]
    return [r["steps"] for r in sorted(rows, key=lambda r: r.get("episode", 0))]


def _transitions(run: dict) -> list[dict]:
    """The scored transitions the depth views use: the last evaluation's episodes, else the
    offline scores."""
    return [s for ep in _last_eval_episodes(run) for s in ep] or run["scores"]


def _frames(run: dict) -> tuple[np.ndarray, int] | None:
    """The frames of the last evaluation's first episode and their env step, when recorded."""
    path = run["dir"] / "frames" / "last_eval.npz"
    episodes = _last_eval_episodes(run)
    if not path.is_file() or not episodes:
        return None
    with np.load(path) as saved:
        frames, env_step = saved["frames"], int(saved["env_step"])
    if env_step != run["rollouts"][-1]["env_step"] or len(frames) != len(episodes[0]):
        return None
    return frames, env_step


def _caption(s: dict) -> str:
    n = s.get("events", 1)
    mark = f"hard ({n} event{'' if n == 1 else 's'})" if s.get("hard") else "easy"
    return f"step {s['step']} · {s['loops']} loops · error {s['pred_error']:.3g} · {mark}"


def _filmstrip(steps: list[dict], frames: np.ndarray, env_step: int, k: int = 8) -> str:
    """The frames at the episode's ``k`` steps with the most loops and its ``k`` with the
    fewest, each captioned with step, loops, error and hard/events."""
    top, bottom = filmstrip([s["loops"] for s in steps], k)

    def row(title: str, picks: list[int]) -> str:
        cells = []
        for i in picks:
            caption = html.escape(_caption(steps[i]))
            cls = "frame hard" if steps[i].get("hard") else "frame"
            cells.append(
                f'<figure class="{cls}"><img alt="{caption}" src="data:image/png;base64,{png_base64(frames[i])}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        return f'<h3>{html.escape(title)}</h3><div class="strip">{"".join(cells)}</div>'

    return (
        f"<p>Evaluation at env step {env_step}, first episode: the frame each step started from.</p>"
        + row(f"The {len(top)} steps with the most loops", top)
        + row(f"The {len(bottom)} steps with the fewest loops", bottom)
    )


def _hover_frames(steps: list[dict], frames: np.ndarray, div_id: str) -> str:
    """A panel beside the loops-per-step chart that shows the frame of the hovered step."""
    images = json.dumps([png_base64(f) for f in frames])
    captions = json.dumps([_caption(s) for s in steps])
    return f"""<div class="hover"><img id="{div_id}-img" alt="hover a step of the first episode">
<div id="{div_id}-caption">hover a point of episode 0 to see its frame</div></div>
<script>
window.addEventListener("load", function () {{
  const frames = {images}, captions = {captions};
  const chart = document.getElementById("{div_id}"), img = document.getElementById("{div_id}-img");
  const caption = document.getElementById("{div_id}-caption");
  function show(i) {{ img.src = "data:image/png;base64," + frames[i]; caption.textContent = captions[i]; }}
  show(0);
  chart.on("plotly_hover", function (ev) {{
    const p = ev.points.find(q => q.data.meta === "frames");
    if (p) show(p.pointIndex);
  }});
}});
</script>"""


def _md_table(markdown: str) -> str:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    if len(lines) < 2:
        return f"<pre>{html.escape(markdown)}</pre>"
    cells = [[html.escape(c.strip()) for c in line.strip("|").split("|")] for line in lines]
    head = "".join(f"<th>{c}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[2:])
    return f"<table><tr>{head}</tr>{body}</table>"


def _facts(run: dict) -> dict[str, str]:
    metrics, cfg = run["metrics"], run["config"]
    last_eval = next((m for m in reversed(metrics) if "eval/return_mean" in m or "depth/loops_mean" in m), {})
    steps = _transitions(run)
    loops = np.array([s["loops"] for s in steps]) if steps else np.zeros(0, int)
    hard = np.array([bool(s.get("hard", False)) for s in steps]) if steps else np.zeros(0, bool)
    both = hard.any() and (~hard).any()
    source = f"{len(_last_eval_episodes(run))} episodes of the last evaluation" if run["rollouts"] else "scores.csv"
    return {
        "env": cfg.get("env", {}).get("id", "-"),
        "model": cfg.get("model", {}).get("kind", "-"),
        "halting rule": cfg.get("model", {}).get("halting", {}).get("rule", "-"),
        "max loops": str(cfg.get("model", {}).get("max_loops", "-")),
        "env steps": str(metrics[-1]["env_step"]) if metrics else "-",
        "eval return": f"{last_eval['eval/return_mean']:.2f}" if "eval/return_mean" in last_eval else "-",
        "transitions scored": f"{len(loops)} ({source})",
        "mean loops": f"{loops.mean():.2f}" if len(loops) else "-",
        "loops hard / easy": f"{loops[hard].mean():.2f} / {loops[~hard].mean():.2f}" if both else "-",
        "AUROC loops → hard": f"{auroc(loops, hard):.3f}" if both else "-",
    }


def _run_sections(run: dict, div: Callable[[object, str], str]) -> list[tuple[str, str]]:
    """The sections of one run's report."""
    metrics, cfg = run["metrics"], run["config"]
    steps = _transitions(run)
    loops = np.array([s["loops"] for s in steps]) if steps else np.zeros(0, int)
    hard = np.array([bool(s.get("hard", False)) for s in steps]) if steps else np.zeros(0, bool)
    cap = max(int(loops.max()) if len(loops) else 1, int(cfg.get("model", {}).get("max_loops", 1) or 1))
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _facts(run).items())
    sections = [("Summary", f"<table>{rows}</table>")]

    episodes = _last_eval_episodes(run)
    frames = _frames(run)
    if episodes:
        env_step = run["rollouts"][-1]["env_step"]
        title = f"Loops per step, {len(episodes)} evaluation episodes at env step {env_step} (hard steps shaded)"
        chart = div(charts.loops_per_step(episodes, cap, title), "loops-per-step")
        if frames is not None:
            hover = _hover_frames(episodes[0], frames[0], "fig-loops-per-step")
            # the panel comes first: Plotly sizes a chart to its container when it draws it
            chart = f'<div class="with-hover">{hover}{chart}</div>'
        sections.append(("Depth per step", chart))

    if len(loops):
        groups = {"easy": loops[~hard].tolist(), "hard": loops[hard].tolist()} if hard.any() else {"all": loops}
        views = [div(charts.loops_box(groups, "Loops on hard and easy steps"), "loops-hard-easy")]
        events = [s.get("events") for s in steps]
        if all(e is not None for e in events):
            views.append(div(charts.loops_by_events(np.array(events), loops), "loops-by-events"))
        errors = np.array([float(s["pred_error"]) for s in steps])
        views.append(div(charts.error_by_loops(loops, errors, hard), "error-by-loops"))
        if all(s.get("residuals") for s in steps):
            res = residual_matrix(steps)
            curves = {"easy": res[~hard], "hard": res[hard]} if hard.any() else {"all": res}
            views.append(div(charts.convergence(curves), "convergence"))
        sections.append(("Where the loops go", "".join(views)))

    series = {
        name: _series(metrics, key)
        for key, name in (
            ("depth/loops_mean", "all steps"),
            ("depth/loops_hard_mean", "hard steps"),
            ("depth/loops_easy_mean", "easy steps"),
        )
        if _series(metrics, key)[0]
    }
    if series:
        chart = charts.line("Mean loops at each evaluation", series, "env step", "mean loops")
        sections.append(("Loops over training", div(chart, "loops-over-training")))

    if frames is not None:
        sections.append(("Filmstrip", _filmstrip(episodes[0], *frames)))

    if len(loops) and all("step" in s for s in steps):
        t = np.array([s["step"] for s in steps])
        err = np.array([float(s["pred_error"]) for s in steps])
        width = max(1, int(t.max()) // 20 + 1)
        bins = np.unique(t // width)
        memory = cfg.get("model", {}).get("memory", "none")
        chart = charts.line(
            f"One-step error by steps since the episode started (bins of {width}; memory: {memory})",
            {"pred_error": ([int(b * width) for b in bins], [float(err[t // width == b].mean()) for b in bins])},
            "episode step",
            "mean pred_error",
        )
        sections.append(("Error over the episode", div(chart, "error-over-episode")))

    curves = []
    for keys, title, log_y in (
        (("train/return", "eval/return_mean"), "Return", False),
        (("train/wm_loss", "train/obs_mse", "train/consistency"), "World-model losses", True),
    ):
        found = {k: _series(metrics, k) for k in keys if _series(metrics, k)[0]}
        if found:
            curves.append(div(charts.line(title, found, "env step", title.lower(), log_y=log_y), title))
    if curves:
        sections.append(("Training curves", "".join(curves)))

    if run["compare"]:
        body = _md_table(run["compare"])
        if run["compare_rows"]:
            rows = [r for r in run["compare_rows"] if r.get("pred_error") not in ("", None)]
            body += div(charts.compare_scatter(rows, "params", "pred_error", "parameters", "one-step error"), "cmp-p")
            body += div(
                charts.compare_scatter(
                    rows, "mflops_per_transition", "pred_error", "MFLOPs per transition", "one-step error"
                ),
                "cmp-f",
            )
        sections.append(("Looped vs stacked", body))
    return sections


def _many_sections(runs: list[dict], div: Callable[[object, str], str]) -> list[tuple[str, str]]:
    """Several runs side by side on shared axes."""
    names = [r["name"] for r in runs]
    facts = [_facts(r) for r in runs]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(
        f"<tr><th>{html.escape(k)}</th>" + "".join(f"<td>{html.escape(f[k])}</td>" for f in facts) + "</tr>"
        for k in facts[0]
    )
    sections = [("Summary", f"<table><tr><th></th>{head}</tr>{body}</table>")]
    box: dict[str, list[float]] = {}
    for run in runs:
        steps = _transitions(run)
        for label, want in (("hard", True), ("easy", False)):
            values = [s["loops"] for s in steps if bool(s.get("hard", False)) == want]
            if values:
                box[f"{run['name']}: {label}"] = values
    views = []
    if box:
        views.append(div(charts.loops_box(box, "Loops on hard and easy steps, per run"), "runs-box"))
    for key, title in (
        ("eval/return_mean", "Evaluation return"),
        ("depth/loops_mean", "Mean loops at each evaluation"),
        ("depth/loops_hard_mean", "Mean loops on hard steps"),
        ("eval/pred_error", "One-step prediction error at each evaluation"),
        ("fit/val_pred_error", "Held-out one-step error while fitting (fit and compare runs)"),
    ):
        series = {r["name"]: _series(r["metrics"], key) for r in runs if _series(r["metrics"], key)[0]}
        if series:
            # train runs log against env steps, fit runs against updates
            views.append(div(charts.line(title, series, "env step (train) or update (fit)", key), key))
    sections.append(("Side by side", "".join(views)))
    for run in runs:
        if run["compare"]:
            sections.append((f"Looped vs stacked: {run['name']}", _md_table(run["compare"])))
    return sections


STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1280px; }
section { margin-bottom: 28px; }
.strip { display: flex; flex-wrap: wrap; gap: 6px; }
figure.frame { margin: 0; width: 132px; font-size: 11px; }
figure.frame img { width: 128px; border: 2px solid #ccc; }
figure.hard img { border-color: #d62728; }
.with-hover { display: flex; gap: 12px; align-items: flex-start; }
.with-hover > div:last-child { flex: 1; min-width: 0; }
.hover { flex: 0 0 200px; font-size: 12px; } .hover img { width: 192px; border: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
h1 { font-size: 20px; } h2 { font-size: 16px; border-bottom: 1px solid #ddd; }
"""


def render(*run_dirs: str | Path) -> str:
    """The report's HTML for one run, or several side by side."""
    if not run_dirs:
        raise ReportError("give at least one run directory")
    runs = [load_run(Path(d)) for d in run_dirs]
    seen: dict[str, int] = {}
    for run in runs:  # the same folder twice (or two folders of one name) stay two series
        seen[run["name"]] = seen.get(run["name"], 0) + 1
        if seen[run["name"]] > 1:
            run["name"] = f"{run['name']} ({seen[run['name']]})"
    used: set[str] = set()

    def div(fig, name: str) -> str:
        # "fig-": section ids are taken by the sections themselves
        base = "fig-" + "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
        div_id, n = base, 1
        while div_id in used:
            n += 1
            div_id = f"{base}-{n}"
        used.add(div_id)
        return charts.to_div(fig, div_id)

    sections = _run_sections(runs[0], div) if len(runs) == 1 else _many_sections(runs, div)
    title = runs[0]["name"] if len(runs) == 1 else f"{len(runs)} runs: " + ", ".join(r["name"] for r in runs)
    anchor = lambda t: html.escape(t.lower().replace(" ", "-").replace(":", ""))  # noqa: E731
    body = "\n".join(f'<section id="{anchor(t)}"><h2>{html.escape(t)}</h2>{c}</section>' for t, c in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>loopwm-rl report: {html.escape(title)}</title>
<style>{STYLE}</style>
<script id="plotly-js">{charts.plotly_js()}</script>
</head>
<body><h1>loopwm-rl report: {html.escape(title)}</h1>
{body}
</body></html>
"""


def write_report(*run_dirs: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of one run (default ``RUN_DIR/report.html``) or several (``out`` needed)."""
    if out is None and len(run_dirs) != 1:
        raise ReportError("a report of several runs needs --out FILE.html")
    out = Path(out) if out else Path(run_dirs[0]) / "report.html"
    text = render(*run_dirs)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return out

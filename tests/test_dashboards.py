"""wandb logging of depth per step, the jsonl log, and the offline HTML report."""

import json
import re

import numpy as np
import pytest

from loopwm_rl.cli import main
from loopwm_rl.report import ReportError, render, write_report

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DEPTH_KEYS = [
    "depth/loops_mean",
    "depth/loops_p95",
    "depth/loops_hist",
    "depth/loops_hard_mean",
    "depth/loops_easy_mean",
    "depth/auroc_hard",
    "depth/residual_1",
    "depth/retention_max",
    "plan/loops_mean",
    "plan/latency_ms",
    "plan/imagined_per_s",
    "eval/return_mean",
]


def train_small(tmp_path, *extra):
    argv = [
        "train",
        "bouncing_ball",
        "debug",
        "train.total_steps=200",
        "train.seed_steps=100",
        "train.eval_every=200",
        "train.checkpoint_every=200",
        f"train.runs_dir={tmp_path}",
        "--quiet",
        *extra,
    ]
    assert main(argv) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.delenv("WANDB_MODE", raising=False)
    mp.delenv("WANDB_API_KEY", raising=False)
    try:
        return train_small(tmp_path_factory.mktemp("offline"), "wandb.mode=offline")
    finally:
        mp.undo()


def test_offline_wandb_run_holds_histogram_table_and_line_plot(offline_run):
    (wandb_dir,) = (offline_run / "wandb").glob("offline-run-*")
    data = next(wandb_dir.glob("*.wandb")).read_bytes()
    for key in (
        b"depth/loops_hist",
        b"rollout/depth_table",
        b"rollout/loops_plot",
        b"rollout/loops_vs_hard",
        b"rollout/loops",
        b"rollout/step",
        b"depth/auroc_hard",
        b"depth/view_hard_easy",
        b"depth/view_error_by_loops",
        b"depth/view_loops_by_events",
        b"depth/view_convergence",
    ):
        assert key in data, key
    tables = list((wandb_dir / "files" / "media" / "table" / "rollout").glob("depth_table*.table.json"))
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["step", "loops", "hard", "reward", "pred_error"] and len(table["data"]) == 50


def test_metrics_jsonl_holds_every_depth_metric(offline_run):
    records = [json.loads(line) for line in (offline_run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/return_mean" in r]
    assert evals, "no evaluation was logged"
    for key in DEPTH_KEYS:
        assert key in evals[-1], key
    hist = evals[-1]["depth/loops_hist"]
    assert len(hist) == 4 and sum(hist) == 50  # one 50-step episode, max_loops 4
    trace = json.loads((offline_run / "rollouts.jsonl").read_text().splitlines()[-1])
    assert len(trace["steps"]) == 50 and {"step", "loops", "hard", "reward", "pred_error"} <= set(trace["steps"][0])


def figure(text: str, div_id: str) -> list[dict]:
    """The traces of the Plotly chart drawn into ``div_id`` (the JSON after ``Plotly.newPlot``)."""
    start = text.index("[", text.index(f'Plotly.newPlot(                        "fig-{div_id}"'))
    traces, _ = json.JSONDecoder().raw_decode(text, start)
    return traces


def test_report_is_self_contained_with_sections_and_data(offline_run):
    path = offline_run / "report.html"
    assert path.is_file(), "train writes the report at the end"
    text = path.read_text()
    # nothing is fetched: no external scripts, styles or images; plotly.js is inlined once
    # (its own map code names tile servers, used only by map charts, which the report has none of)
    assert text.count('<script id="plotly-js">') == 1
    page = re.sub(r'<script id="plotly-js">.*?</script>', "", text, count=1, flags=re.S)
    assert "<script src" not in page and "<link" not in page
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page)
    assert page.count("Plotly.newPlot(") >= 6
    for section in (
        "summary",
        "depth-per-step",
        "where-the-loops-go",
        "loops-over-training",
        "training-curves",
        "error-over-the-episode",
        "filmstrip",
    ):
        assert f'id="{section}"' in text, section
    traces = [json.loads(line) for line in (offline_run / "rollouts.jsonl").read_text().splitlines()]
    last = [t for t in traces if t["env_step"] == traces[-1]["env_step"]]
    loops_traces = [t for t in figure(text, "loops-per-step") if t["type"] == "scatter"]
    assert len(loops_traces) == len(last)  # every evaluation episode, not one
    for chart, episode in zip(loops_traces, last, strict=True):
        assert chart["y"] == [s["loops"] for s in episode["steps"]]
    hard_bars = [t for t in figure(text, "loops-per-step") if t["type"] == "bar"]
    assert sum(len(t["x"]) for t in hard_bars) == sum(s["hard"] for e in last for s in e["steps"])
    boxes = figure(text, "loops-hard-easy")
    assert {b["name"].split(" ")[0] for b in boxes} <= {"hard", "easy", "all"}
    assert sum(len(b["y"]) for b in boxes) == sum(len(e["steps"]) for e in last)
    assert len(figure(text, "convergence")) >= 1 and len(figure(text, "loops-by-events")) == 1
    # hovering a point of the first episode shows its frame
    assert 'chart.on("plotly_hover"' in text and loops_traces[0]["meta"] == "frames"


def test_report_on_bad_directories(tmp_path, capsys):
    with pytest.raises(ReportError, match="is not a run directory"):
        render(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"env_step": 10, "train/return": -5.0}) + "\n")
    with pytest.raises(ReportError, match="holds no depth data"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no depth data" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_online_without_a_key_falls_back_to_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc credentials either
    from loopwm_rl.logger import Logger
    from loopwm_rl.runconfig import WandbConfig

    with pytest.warns(UserWarning, match="falling back to offline"):
        logger = Logger(tmp_path / "run", {"a": 1}, WandbConfig(mode="online"))
    try:
        assert logger.wandb is not None and logger.wandb.settings.mode == "offline"
        logger.log({"train/return": 1.0, "depth/loops_hist": [1, 2]}, 5)
    finally:
        logger.close()
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["depth/loops_hist"] == [1, 2]


class _Broken:
    """A wandb run whose server stopped answering: every call raises."""

    def log(self, *_args, **_kwargs):
        raise ConnectionError("server stopped answering")

    def finish(self, *_args, **_kwargs):
        raise ConnectionError("server stopped answering")


def test_wandb_failing_mid_run_falls_back_to_offline_and_loses_no_step(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    from loopwm_rl.logger import Logger
    from loopwm_rl.runconfig import WandbConfig

    logger = Logger(tmp_path / "run", {"a": 1}, WandbConfig(mode="offline"))
    try:
        logger.log({"train/return": 1.0}, 1)
        first = logger.wandb
        first.finish()
        logger.wandb, logger.mode = _Broken(), "online"  # as if an online run lost its server
        with pytest.warns(RuntimeWarning, match="wandb.log failed mid-run .*server stopped answering"):
            logger.log({"train/return": 2.0}, 2)
        assert logger.mode == "offline" and logger.wandb is not None and logger.wandb is not first
        logger.log({"train/return": 3.0}, 3)
        logger.wandb = _Broken()  # an offline run that fails too: wandb is given up, the log goes on
        with pytest.warns(RuntimeWarning, match="mid-run"):
            logger.log({"train/return": 4.0}, 4)
        assert logger.wandb is None
        logger.log({"train/return": 5.0}, 5)
    finally:
        logger.close()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_step"] for r in rows] == [1, 2, 3, 4, 5]


def test_a_train_run_whose_wandb_breaks_completes_with_every_step_logged(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    import wandb.sdk.wandb_run as wandb_run

    calls = {"n": 0}
    real_log = wandb_run.Run.log

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:  # the server goes away after three logs
            raise ConnectionError("server stopped answering")
        return real_log(self, *args, **kwargs)

    monkeypatch.setattr(wandb_run.Run, "log", flaky)
    with pytest.warns(RuntimeWarning, match="wandb.log failed mid-run"):
        run_dir = train_small(tmp_path, "wandb.mode=offline")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(r["env_step"] for r in rows) == 200 and any("eval/return_mean" in r for r in rows)
    assert calls["n"] > 3


def test_filmstrip_picks_the_most_and_fewest_loop_steps_of_a_hand_made_trace():
    from loopwm_rl.frames import annotate, filmstrip

    loops = [1, 5, 2, 5, 1, 8, 3, 1, 2, 7]
    top, bottom = filmstrip(loops, k=3)
    assert top == [1, 5, 9]  # 8, 7, and the earlier of the two 5s
    assert bottom == [0, 4, 7]  # the three 1s
    top, bottom = filmstrip([4, 4, 4], k=2)
    assert top == [0, 1] and bottom == [2]  # no step in both
    frame = np.full((32, 40, 3), 255, np.uint8)
    marked = annotate(frame, loops=2, cap=8, hard=True)
    assert frame.min() == 255  # the input is left alone
    assert (marked[-1, 3:10] == (31, 119, 180)).all() and (marked[-1, 11:30] == (225, 225, 225)).all()
    assert (marked[0, :, 0] == 214).all() and (annotate(frame, 2, 8, hard=False)[0] == 255).all()


def test_report_filmstrip_shows_the_recorded_frames(offline_run):
    text = (offline_run / "report.html").read_text()
    assert 'id="filmstrip"' in text
    images = re.findall(r'<img alt="(step \d+ · \d+ loops[^"]*)" src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 16
    import base64
    import io

    from PIL import Image

    for _, data in images:  # every image decodes to the env's 128 x 128 frame
        assert Image.open(io.BytesIO(base64.b64decode(data))).size == (128, 128)
    trace = json.loads((offline_run / "rollouts.jsonl").read_text().splitlines()[-1])["steps"]
    most = max(s["loops"] for s in trace)
    assert f"· {most} loops" in images[0][0] or any(f"· {most} loops" in alt for alt, _ in images[:8])
    assert (offline_run / "frames" / "last_eval.gif").is_file()


def test_pendulum_records_no_frames_by_default(tmp_path):
    from loopwm_rl.runconfig import load_run_config
    from loopwm_rl.trainer import Trainer

    trainer = Trainer(load_run_config(["pendulum", "debug"], []), tmp_path, progress=False)
    assert trainer.frames is False
    suite = Trainer(load_run_config(["bouncing_ball", "debug"], ["train.frames=never"]), tmp_path, progress=False)
    assert suite.frames is False


CHECK = """<script>window.addEventListener("load", () => setTimeout(() => {
  const plots = [...document.querySelectorAll(".plotly-graph-div")];
  const drawn = plots.filter(p => p.querySelector(".main-svg"));
  const images = [...document.images], bad = images.filter(i => !(i.complete && i.naturalWidth > 0));
  document.body.setAttribute("data-check", JSON.stringify(
    {plots: plots.length, drawn: drawn.length, images: images.length, bad: bad.length, errors: window.__errors}));
}, 500));</script>"""
CATCH = """<script>window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message)));
const consoleError = console.error;
console.error = (...args) => { window.__errors.push(args.join(" ")); consoleError(...args); };</script>"""


def test_the_report_renders_in_headless_chromium(offline_run, tmp_path):
    """The report opened in a browser: no console errors, every chart drawn, every image decoded."""
    import shutil
    import subprocess

    browser = next(
        (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )
    if browser is None:
        pytest.skip(
            "headless Chromium is not installed (apt-get install chromium): the report was not opened in a browser"
        )
    text = (offline_run / "report.html").read_text()
    page = tmp_path / "report.html"  # an instrumented copy: errors are caught, results written into the DOM
    page.write_text(text.replace("<head>", "<head>" + CATCH, 1).replace("</body>", CHECK + "</body>", 1))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000", "--dump-dom"]
    dom = subprocess.run([browser, *flags, page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-check="([^"]*)"', dom)
    assert found, "the page never finished loading"
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["errors"] == []
    assert check["plots"] >= 6 and check["drawn"] == check["plots"]
    assert check["images"] >= 17 and check["bad"] == 0  # 16 filmstrip frames and the hover frame


def test_a_report_of_two_runs_puts_them_side_by_side(offline_run, tmp_path):
    out = tmp_path / "both.html"
    assert main(["report", str(offline_run), str(offline_run), "--out", str(out)]) == 0
    text = out.read_text()
    assert 'id="side-by-side"' in text and f"<th>{offline_run.name}</th><th>{offline_run.name} (2)</th>" in text
    returns = figure(text, "eval-return-mean")
    assert len(returns) == 2 and returns[0]["y"] == returns[1]["y"]
    assert main(["report", str(offline_run), str(offline_run)]) == 2  # several runs need --out

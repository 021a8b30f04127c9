"""One logger: ``metrics.jsonl`` always, wandb alongside (offline unless a key is set).

A run never fails or hangs because wandb cannot reach a server: an online init that fails
falls back to offline with a warning, and an offline init that fails turns wandb off.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .depth import residual_matrix


def resolve_wandb_mode(mode: str) -> str:
    """``offline`` becomes ``online`` when WANDB_API_KEY is set; WANDB_MODE=disabled wins."""
    if os.environ.get("WANDB_MODE") == "disabled" or mode == "disabled":
        return "disabled"
    if mode == "offline" and os.environ.get("WANDB_API_KEY"):
        return "online"
    return mode


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


class Logger:
    """Writes metric dicts against ``env_step``.

    Args:
        run_dir: the run directory; ``metrics.jsonl`` and ``wandb/`` go there.
        config: the full resolved config, passed to ``wandb.init`` at once (offline runs keep
            only the initial config).
        wandb_cfg: a :class:`~loopwm_rl.runconfig.WandbConfig`.
        run_id: resume this wandb run id.
    """

    def __init__(self, run_dir: str | Path, config: dict, wandb_cfg, run_id: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self._file = self.path.open("a")
        self.wandb = None
        self.run_id = run_id
        self._wandb_args = (config, wandb_cfg)
        self.mode = resolve_wandb_mode(wandb_cfg.mode)
        if self.mode != "disabled":
            self.wandb = self._init_wandb(self.mode, config, wandb_cfg, run_id)

    def _init_wandb(self, mode: str, config: dict, wandb_cfg, run_id: str | None):
        try:
            import wandb
        except ImportError:  # pragma: no cover - wandb is a dependency
            warnings.warn("wandb is not installed; logging to metrics.jsonl only", stacklevel=3)
            return None
        os.environ.setdefault("WANDB_SILENT", "true")
        kwargs = {
            "project": wandb_cfg.project,
            "group": wandb_cfg.group or None,
            "tags": list(wandb_cfg.tags) or None,
            "name": wandb_cfg.name or self.run_dir.name,
            "config": config,
            "dir": str(self.run_dir),
            "id": run_id,
            "resume": "allow" if run_id else None,
            "settings": wandb.Settings(init_timeout=60, silent=True),
        }
        for attempt in (mode, "offline") if mode == "online" else (mode,):
            try:
                run = wandb.init(mode=attempt, **kwargs)
            except Exception as err:  # wandb raises many types for network/auth problems
                warnings.warn(
                    f"wandb.init(mode={attempt!r}) failed ({err}); "
                    + ("falling back to offline" if attempt == "online" else "wandb is off"),
                    stacklevel=3,
                )
                continue
            run.define_metric("env_step")
            for prefix in ("train", "eval", "depth", "plan", "fit"):
                run.define_metric(f"{prefix}/*", step_metric="env_step")
            run.define_metric("rollout/step")
            run.define_metric("rollout/*", step_metric="rollout/step")
            self.run_id, self.mode = run.id, attempt
            return run
        return None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Write ``metrics`` at ``env_step = step``.

        Scalars and lists go to ``metrics.jsonl``; a ``*_hist`` list of counts per loop
        (1, 2, ...) becomes a ``wandb.Histogram``.
        """
        plain = {
            k: _jsonable(v) if not isinstance(v, list) else v
            for k, v in metrics.items()
            if isinstance(v, int | float | list | str) or hasattr(v, "item")
        }
        self._file.write(json.dumps({"env_step": int(step), **plain}) + "\n")
        self._file.flush()
        if self.wandb is not None:
            import wandb

            payload = {"env_step": int(step)}
            for key, value in metrics.items():
                if key.endswith("_hist") and isinstance(value, list):
                    counts = np.asarray(value, dtype=np.float64)
                    edges = np.arange(len(counts) + 1) + 0.5  # bins centred on loops 1..K
                    value = wandb.Histogram(np_histogram=(counts, edges))
                payload[key] = value
            self._wandb_log(payload)

    def _wandb_log(self, payload: dict[str, Any]) -> None:
        """``wandb.log``; if it fails mid-run (a server that stopped answering, a revoked key),
        warn, finish the run as far as it can, and carry on in an offline run of the same id
        (or without wandb if that fails too): ``metrics.jsonl`` already has the step."""
        try:
            self.wandb.log(payload)
            return
        except Exception as err:  # wandb raises many types for network/auth problems
            warnings.warn(f"wandb.log failed mid-run ({err}); continuing offline", RuntimeWarning, stacklevel=3)
        broken, self.wandb = self.wandb, None
        with contextlib.suppress(Exception):  # the run is already broken; an offline run replaces it
            broken.finish(quiet=True)
        if self.mode != "offline":
            self.mode = "offline"
            self.wandb = self._init_wandb("offline", *self._wandb_args, self.run_id)
            if self.wandb is not None:
                try:
                    self.wandb.log(payload)
                except Exception as err:  # an offline run that cannot log either: give wandb up
                    warnings.warn(f"offline wandb.log failed too ({err}); wandb is off", RuntimeWarning, stacklevel=3)
                    self.wandb = None

    def log_depth_trace(self, steps: list[dict[str, Any]], env_step: int, max_loops: int, episode: int = 0) -> None:
        """One evaluation episode's depth per step: ``rollouts.jsonl`` always (every episode);
        in wandb, for the first episode, ``rollout/loops`` against ``rollout/step``, a Table and
        a line plot with hard steps marked."""
        self.log_record("rollouts", {"env_step": int(env_step), "episode": int(episode), "steps": steps})
        if self.wandb is None or episode != 0:
            return
        import wandb

        for s in steps:
            self._wandb_log(
                {
                    "rollout/step": s["step"],
                    "rollout/loops": s["loops"],
                    "rollout/hard": int(s["hard"]),
                    "rollout/pred_error": s["pred_error"],
                }
            )
            if self.wandb is None:
                return
        columns = ["step", "loops", "hard", "reward", "pred_error"]
        table = wandb.Table(columns=columns, data=[[s[c] for c in columns] for s in steps])
        xs = [s["step"] for s in steps]
        self._wandb_log(
            {
                "env_step": int(env_step),
                "rollout/depth_table": table,
                "rollout/loops_plot": wandb.plot.line(table, "step", "loops", title=f"loops per step @ {env_step}"),
                "rollout/loops_vs_hard": wandb.plot.line_series(
                    xs=xs,
                    ys=[[s["loops"] for s in steps], [max_loops if s["hard"] else 0 for s in steps]],
                    keys=["loops", "hard step"],
                    title=f"loops per step, hard steps marked @ {env_step}",
                    xname="step",
                ),
            }
        )

    def log_depth_views(self, steps: list[dict[str, Any]], env_step: int) -> None:
        """The report's depth views of one evaluation (every episode's steps) as wandb charts:
        mean loops on hard and easy steps, by events, error by loops (scatter) and the
        convergence curve per class, each with its table (``depth/view_*``)."""
        if self.wandb is None or not steps:
            return
        import wandb

        hard = np.array([bool(s.get("hard")) for s in steps])
        loops = np.array([s["loops"] for s in steps], dtype=float)
        rows = [[c, float(loops[m].mean()), int(m.sum())] for c, m in (("easy", ~hard), ("hard", hard)) if m.any()]
        by_class = wandb.Table(columns=["class", "mean loops", "steps"], data=rows)
        payload = {
            "env_step": int(env_step),
            "depth/view_hard_easy": wandb.plot.bar(by_class, "class", "mean loops", title="mean loops, hard vs easy"),
        }
        points = wandb.Table(
            columns=["loops", "pred_error", "hard"], data=[[s["loops"], s["pred_error"], int(s["hard"])] for s in steps]
        )
        payload["depth/view_error_by_loops"] = wandb.plot.scatter(points, "loops", "pred_error", title="error by loops")
        if all("events" in s for s in steps):
            events = np.array([s["events"] for s in steps])
            data = [[str(e), float(loops[events == e].mean())] for e in sorted(set(events.tolist()))]
            table = wandb.Table(columns=["events", "mean loops"], data=data)
            chart = wandb.plot.bar(table, "events", "mean loops", title="loops by events")
            payload["depth/view_loops_by_events"] = chart
        if all(s.get("residuals") for s in steps):
            res = residual_matrix(steps)
            K = res.shape[1]
            classes = [(c, m) for c, m in (("easy", ~hard), ("hard", hard)) if m.any()]
            with warnings.catch_warnings():  # a loop no step of a class reached has no mean
                warnings.simplefilter("ignore", RuntimeWarning)
                curves = [np.nan_to_num(np.nanmean(res[m], 0)).tolist() for _, m in classes]
            payload["depth/view_convergence"] = wandb.plot.line_series(
                xs=list(range(1, K + 1)),
                ys=curves,
                keys=[c for c, _ in classes],
                title="relative latent change at loop k",
                xname="loop k",
            )
        self._wandb_log(payload)

    def log_video(self, path: str | Path, env_step: int) -> None:
        """An evaluation episode's clip (a GIF: wandb logs it without a video encoder) as
        ``rollout/video``."""
        if self.wandb is None:
            return
        import wandb

        self._wandb_log({"env_step": int(env_step), "rollout/video": wandb.Video(str(path), format="gif")})

    def log_record(self, name: str, record: dict[str, Any]) -> None:
        """Append a structured record (e.g. an episode depth trace) to ``{name}.jsonl``."""
        with (self.run_dir / f"{name}.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self._file.close()
        if self.wandb is not None:
            try:
                self.wandb.finish()
            except Exception as err:  # a server gone at the end must not fail a finished run
                warnings.warn(f"wandb.finish failed ({err}); metrics.jsonl is complete", RuntimeWarning, stacklevel=2)
            self.wandb = None

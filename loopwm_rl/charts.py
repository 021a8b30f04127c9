"""The report's charts, drawn with Plotly.

Plotly rather than Matplotlib: the report is read in a browser, and hover (a step's frame,
its loops and error), zoom and per-series toggling are what a researcher uses to ask "what
happened at step 37?". Every function returns a ``plotly.graph_objects.Figure``; the report
embeds them with one shared copy of plotly.js (:func:`to_div`, :func:`plotly_js`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.offline

HARD, EASY = "#d62728", "#1f77b4"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def plotly_js() -> str:
    """plotly.js itself (about 4.9 MB), inlined once per report so it opens with no network."""
    return plotly.offline.get_plotlyjs()


def to_div(fig: go.Figure, div_id: str) -> str:
    """The figure as a ``<div>`` and the script that draws it (no plotly.js of its own)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False})


def _layout(fig: go.Figure, title: str, xlabel: str, ylabel: str, *, height: int = 340) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        xaxis_title=xlabel,
        yaxis_title=ylabel,
        template="plotly_white",
        height=height + 40,
        margin={"l": 60, "r": 20, "t": 50, "b": 90},
        # below the axis: above it the legend would cover the title and the toolbar
        legend={"orientation": "h", "yanchor": "top", "y": -0.25, "xanchor": "left", "x": 0.0},
    )
    return fig


def line(
    title: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    *,
    log_y: bool = False,
) -> go.Figure:
    """One line per named series ``name -> (xs, ys)``."""
    fig = go.Figure()
    for i, (name, (xs, ys)) in enumerate(series.items()):
        fig.add_trace(
            go.Scatter(x=list(xs), y=list(ys), name=name, mode="lines+markers", line={"color": PALETTE[i % 9]})
        )
    if log_y:
        fig.update_yaxes(type="log")
    return _layout(fig, title, xlabel, ylabel)


def loops_per_step(episodes: Sequence[Sequence[dict]], cap: int, title: str) -> go.Figure:
    """Loops at every step of each evaluation episode, with its hard steps shaded behind.

    The first episode's trace carries ``meta="frames"``: the report's hover shows its frames.
    """
    fig = go.Figure()
    for e, steps in enumerate(episodes):
        hard = [s["step"] for s in steps if s.get("hard")]
        group = f"episode {e}"
        if hard:
            fig.add_trace(
                go.Bar(
                    x=hard,
                    y=[cap + 0.5] * len(hard),
                    width=1.0,
                    marker={"color": HARD, "opacity": 0.18, "line": {"width": 0}},
                    name=f"hard steps, {group}",
                    legendgroup=group,
                    hoverinfo="skip",
                    showlegend=e == 0,
                )
            )
        fig.add_trace(
            go.Scatter(
                x=[s["step"] for s in steps],
                y=[s["loops"] for s in steps],
                mode="lines+markers",
                marker={"size": 4},
                line={"width": 1.5, "color": PALETTE[e % 9], "shape": "hv"},
                name=f"loops, {group}",
                legendgroup=group,
                meta="frames" if e == 0 else None,
                customdata=[[s.get("pred_error", float("nan")), "hard" if s.get("hard") else "easy"] for s in steps],
                hovertemplate="step %{x}: %{y} loops<br>error %{customdata[0]:.3g} (%{customdata[1]})<extra></extra>",
            )
        )
    fig.update_layout(barmode="overlay", bargap=0)
    fig.update_yaxes(range=[0.5, cap + 0.5], dtick=1)
    return _layout(fig, title, "episode step", "loops")


def loops_box(groups: dict[str, Sequence[float]], title: str, ylabel: str = "loops") -> go.Figure:
    """Box plots of one value per group (hard vs easy steps, or one box per run)."""
    fig = go.Figure()
    for i, (name, values) in enumerate(groups.items()):
        color = HARD if name.startswith("hard") else EASY if name.startswith("easy") else PALETTE[i % 9]
        fig.add_trace(go.Box(y=list(values), name=f"{name} (n={len(values)})", marker_color=color, boxmean=True))
    return _layout(fig, title, "", ylabel)


def loops_by_events(events: np.ndarray, loops: np.ndarray) -> go.Figure:
    """Mean loops (± std) by how many events the env reported in the step."""
    counts = sorted(set(events.tolist()))
    means = [float(loops[events == c].mean()) for c in counts]
    stds = [float(loops[events == c].std()) for c in counts]
    n = [int((events == c).sum()) for c in counts]
    fig = go.Figure(
        go.Bar(
            x=[str(c) for c in counts],
            y=means,
            error_y={"type": "data", "array": stds},
            text=[f"n={k}" for k in n],
            textposition="outside",
            marker_color=[EASY if c == 0 else HARD for c in counts],
        )
    )
    return _layout(fig, "Mean loops by events in the step", "events in the step", "mean loops")


def error_by_loops(loops: np.ndarray, errors: np.ndarray, hard: np.ndarray) -> go.Figure:
    """Prediction error for each loop count used, hard and easy steps side by side."""
    fig = go.Figure()
    for name, mask, color in (("easy", ~hard, EASY), ("hard", hard, HARD)):
        if mask.any():
            fig.add_trace(go.Box(x=loops[mask], y=errors[mask], name=name, marker_color=color, boxpoints="outliers"))
    fig.update_layout(boxmode="group")
    fig.update_yaxes(type="log")
    return _layout(fig, "One-step prediction error by loops used", "loops", "pred_error (log)")


def convergence(curves: dict[str, np.ndarray]) -> go.Figure:
    """Mean relative latent change at each loop, one curve per class (``name -> (N, K)``, NaN
    past the loops a step ran: loop k averages the steps that reached it)."""
    fig = go.Figure()
    for i, (name, res) in enumerate(curves.items()):
        reached = (~np.isnan(res)).sum(0)  # (K,)
        k = np.arange(1, res.shape[1] + 1)[reached > 0]
        res = res[:, reached > 0]
        color = HARD if name.startswith("hard") else EASY if name.startswith("easy") else PALETTE[i % 9]
        fig.add_trace(
            go.Scatter(
                x=k,
                y=np.nanmean(res, 0),
                error_y={"type": "data", "array": np.nanstd(res, 0), "visible": True},
                customdata=reached[reached > 0],
                hovertemplate="loop %{x}: %{y:.3g} over %{customdata} steps<extra></extra>",
                name=f"{name} (n={len(res)})",
                mode="lines+markers",
                line={"color": color},
            )
        )
    fig.update_yaxes(type="log")
    return _layout(fig, "Convergence: relative latent change at loop k", "loop k", "|Δh| / |h| (log)")


def compare_scatter(rows: Sequence[dict], x: str, y: str, xlabel: str, ylabel: str) -> go.Figure:
    """One marker per (model, seed) of a ``compare`` table, coloured by model."""
    fig = go.Figure()
    models = list(dict.fromkeys(r["model"] for r in rows))
    for i, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model]
        fig.add_trace(
            go.Scatter(
                x=[float(r[x]) for r in mine],
                y=[float(r[y]) for r in mine],
                mode="markers",
                marker={"size": 10, "color": PALETTE[i % 9]},
                name=model,
                text=[f"seed {r['seed']}" for r in mine],
            )
        )
    fig.update_xaxes(type="log")
    return _layout(fig, f"{ylabel} against {xlabel}", xlabel, ylabel)

"""Minimal inline-SVG charts for the offline HTML report (no plotting library, no network)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

W, H, PAD = 560, 220, 44
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi == lo:
        return [lo]
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def _frame(
    title: str, xlabel: str, ylabel: str, xs: tuple[float, float], ys: tuple[float, float], x_ticks: bool = True
) -> list[str]:
    sx = _scale(*xs, PAD, W - 10)
    sy = _scale(*ys, H - PAD + 10, 24)
    out = [
        f'<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{W / 2}" y="15" text-anchor="middle" font-size="13" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{PAD}" y1="{H - PAD + 10}" x2="{W - 10}" y2="{H - PAD + 10}" stroke="#444"/>',
        f'<line x1="{PAD}" y1="24" x2="{PAD}" y2="{H - PAD + 10}" stroke="#444"/>',
        f'<text x="{W / 2}" y="{H - 4}" text-anchor="middle" font-size="11">{html.escape(xlabel)}</text>',
        f'<text x="11" y="{H / 2}" text-anchor="middle" font-size="11" transform="rotate(-90 11 {H / 2})">'
        f"{html.escape(ylabel)}</text>",
    ]
    for t in _ticks(*xs) if x_ticks else ():
        out.append(f'<text x="{sx(t):.1f}" y="{H - PAD + 24}" text-anchor="middle" font-size="10">{_fmt(t)}</text>')
    for t in _ticks(*ys):
        out.append(f'<text x="{PAD - 4}" y="{sy(t) + 3:.1f}" text-anchor="end" font-size="10">{_fmt(t)}</text>')
        out.append(f'<line x1="{PAD}" y1="{sy(t):.1f}" x2="{W - 10}" y2="{sy(t):.1f}" stroke="#eee"/>')
    return out


def line_chart(
    title: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    marks: Sequence[float] = (),
    mark_label: str = "",
) -> str:
    """Lines ``{name: (xs, ys)}``; ``marks`` are x positions drawn as red ticks (e.g. hard steps)."""
    all_x = _finite([x for xs, _ in series.values() for x in xs])
    all_y = _finite([y for _, ys in series.values() for y in ys])
    if not all_x or not all_y:
        return f"<p>{html.escape(title)}: no data.</p>"
    xs_rng, ys_rng = (min(all_x), max(all_x)), (min(all_y), max(all_y))
    out = _frame(title, xlabel, ylabel, xs_rng, ys_rng)
    sx, sy = _scale(*xs_rng, PAD, W - 10), _scale(*ys_rng, H - PAD + 10, 24)
    for m in marks:
        out.append(
            f'<rect class="mark" x="{sx(m) - 1.5:.1f}" y="24" width="3" height="{H - PAD - 14}" '
            f'fill="#d62728" opacity="0.25"><title>{html.escape(mark_label)} {m:g}</title></rect>'
        )
    for i, (name, (xs, ys)) in enumerate(series.items()):
        pts = " ".join(
            f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(y)
        )
        color = COLORS[i % len(COLORS)]
        out.append(
            f'<polyline class="series" data-name="{html.escape(name)}" fill="none" stroke="{color}" '
            f'stroke-width="1.6" points="{pts}"/>'
        )
        out.append(
            f'<text x="{W - 12}" y="{30 + 13 * i}" text-anchor="end" font-size="11" fill="{color}">'
            f"{html.escape(name)}</text>"
        )
    if marks:
        out.append(f'<text x="{PAD + 4}" y="36" font-size="11" fill="#d62728">{html.escape(mark_label)}</text>')
    return "\n".join([*out, "</svg>"])


def bar_chart(
    title: str, categories: Sequence[str], groups: dict[str, Sequence[float]], xlabel: str, ylabel: str
) -> str:
    """Grouped bars: one bar per group in every category."""
    values = [v for vs in groups.values() for v in vs]
    if not values:
        return f"<p>{html.escape(title)}: no data.</p>"
    top = max(max(values), 1e-9)
    out = _frame(title, xlabel, ylabel, (0, len(categories)), (0, top), x_ticks=False)
    sy = _scale(0, top, H - PAD + 10, 24)
    slot = (W - 10 - PAD) / max(len(categories), 1)
    width = slot * 0.8 / max(len(groups), 1)
    for gi, (name, vs) in enumerate(groups.items()):
        color = COLORS[gi % len(COLORS)]
        for ci, v in enumerate(vs):
            x = PAD + ci * slot + slot * 0.1 + gi * width
            out.append(
                f'<rect class="bar" data-group="{html.escape(name)}" x="{x:.1f}" y="{sy(v):.1f}" '
                f'width="{width:.1f}" height="{H - PAD + 10 - sy(v):.1f}" fill="{color}">'
                f"<title>{html.escape(name)} {html.escape(categories[ci])}: {v:.3g}</title></rect>"
            )
        out.append(
            f'<text x="{W - 12}" y="{30 + 13 * gi}" text-anchor="end" font-size="11" fill="{color}">'
            f"{html.escape(name)}</text>"
        )
    for ci, cat in enumerate(categories):
        out.append(
            f'<text x="{PAD + (ci + 0.5) * slot:.1f}" y="{H - PAD + 36}" text-anchor="middle" '
            f'font-size="10">{html.escape(cat)}</text>'
        )
    return "\n".join([*out, "</svg>"])


def scatter(title: str, groups: dict[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str) -> str:
    all_x = _finite([x for xs, _ in groups.values() for x in xs])
    all_y = _finite([y for _, ys in groups.values() for y in ys])
    if not all_x or not all_y:
        return f"<p>{html.escape(title)}: no data.</p>"
    xs_rng, ys_rng = (min(all_x) - 0.5, max(all_x) + 0.5), (min(all_y), max(all_y))
    out = _frame(title, xlabel, ylabel, xs_rng, ys_rng)
    sx, sy = _scale(*xs_rng, PAD, W - 10), _scale(*ys_rng, H - PAD + 10, 24)
    for gi, (name, (xs, ys)) in enumerate(groups.items()):
        color = COLORS[gi % len(COLORS)]
        for x, y in zip(xs, ys, strict=True):
            jitter = (hash((x, y)) % 100 - 50) / 250
            out.append(
                f'<circle class="point" cx="{sx(x + jitter):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{color}" '
                f'opacity="0.6"/>'
            )
        out.append(
            f'<text x="{W - 12}" y="{30 + 13 * gi}" text-anchor="end" font-size="11" fill="{color}">'
            f"{html.escape(name)}</text>"
        )
    return "\n".join([*out, "</svg>"])

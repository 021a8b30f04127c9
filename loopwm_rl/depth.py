"""Depth statistics: do loops rise on hard transitions?"""

from __future__ import annotations

import warnings

import numpy as np


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``labels`` (Mann-Whitney U with
    average ranks for ties, so a constant score gives exactly 0.5). NaN when a class is empty."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..N of ``values`` (N,), tied values sharing their average rank."""
    values = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of x and y (average ranks for ties); NaN when either is
    constant. Loop counts and event counts are heavily tied, hence the tie handling."""
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def depth_summary(loops: np.ndarray, hard: np.ndarray | None = None, residuals: np.ndarray | None = None) -> dict:
    """``depth/*`` metrics of per-transition loop counts (and hard labels, residuals (N, K))."""
    loops = np.asarray(loops, dtype=np.float64).ravel()
    out = {
        "depth/loops_mean": float(loops.mean()),
        "depth/loops_p95": float(np.percentile(loops, 95)),
    }
    if hard is not None:
        hard = np.asarray(hard, dtype=bool).ravel()
        if hard.any():
            out["depth/loops_hard_mean"] = float(loops[hard].mean())
        if (~hard).any():
            out["depth/loops_easy_mean"] = float(loops[~hard].mean())
        out["depth/auroc_hard"] = auroc(loops, hard)
    if residuals is not None and len(residuals):
        res = np.asarray(residuals, dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # loops no sample reached are all NaN
            curve = np.nanmean(res, axis=0)
        for k, value in enumerate(curve, start=1):
            if np.isfinite(value):
                out[f"depth/residual_{k}"] = float(value)
    return out


def contraction_warning(curve: np.ndarray, tolerance: float = 0.95) -> str | None:
    """A warning when a residual curve (K,) at fixed depth stops shrinking: the last loop's
    relative change is at least ``tolerance`` times loop 2's (loop 1 starts from h = 0, so its
    change is always about 1). None while the recurrence contracts, or with under 3 loops."""
    curve = np.asarray(curve, dtype=np.float64)
    if len(curve) < 3 or not np.isfinite(curve).all() or curve[-1] < tolerance * curve[1]:
        return None
    shown = ", ".join(f"{v:.3g}" for v in curve)
    return (
        f"the loop is not contracting on held-out data: relative change per loop {shown} "
        f"(loop {len(curve)} at {curve[-1] / curve[1]:.2f}x loop 2); extra loops will not converge"
    )


def residual_matrix(steps: list[dict]) -> np.ndarray:
    """(N, K) relative latent change at each loop of evaluation trace steps (their
    ``residuals`` lists), NaN past the loops a step ran."""
    K = max(len(s["residuals"]) for s in steps)
    out = np.full((len(steps), K), np.nan)
    for i, s in enumerate(steps):
        out[i, : len(s["residuals"])] = s["residuals"]
    return out

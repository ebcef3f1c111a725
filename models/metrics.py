"""Offline metrics (numpy only): ranking, classification/calibration and distribution distance."""

from __future__ import annotations

import numpy as np


def ranking_metrics(
    top: np.ndarray, targets: np.ndarray, ks: tuple[int, ...] = (10, 20)
) -> dict[str, float]:
    """HitRate/Recall, NDCG, precision and F1 at each k, and MRR, for one held-out item per user.

    `top` is [N, >=max(ks)] ranked item indices; MRR counts ranks within `top` (0 beyond).
    """
    targets = np.asarray(targets).reshape(-1, 1)
    hit = top == targets
    found = hit.any(axis=1)
    rank = np.where(found, hit.argmax(axis=1), top.shape[1])
    out: dict[str, float] = {"users": float(len(targets))}
    for k in ks:
        within = rank < k
        recall = within.mean()
        precision = recall / k
        out[f"hit_rate@{k}"] = float(recall)
        out[f"recall@{k}"] = float(recall)
        out[f"precision@{k}"] = float(precision)
        out[f"f1@{k}"] = float(2 * precision * recall / (precision + recall)) if recall else 0.0
        out[f"ndcg@{k}"] = float(np.where(within, 1.0 / np.log2(rank + 2), 0.0).mean())
    out["mrr"] = float(np.where(found, 1.0 / (rank + 1), 0.0).mean())
    return out


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (rank statistic, ties averaged)."""
    y = np.asarray(labels).ravel() > 0.5
    s = np.asarray(scores, np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # Average ranks over ties so a constant predictor scores exactly 0.5.
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy."""
    y = np.asarray(labels, np.float64).ravel()
    p = np.clip(np.asarray(probs, np.float64).ravel(), eps, 1 - eps)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over equal-width probability bins."""
    y = np.asarray(labels, np.float64).ravel()
    p = np.asarray(probs, np.float64).ravel()
    which = np.clip((p * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(total / max(len(y), 1))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two histograms."""
    p = np.asarray(p, np.float64) + 1e-12
    q = np.asarray(q, np.float64) + 1e-12
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    return float(0.5 * (p * np.log2(p / m)).sum() + 0.5 * (q * np.log2(q / m)).sum())


def js_of_samples(
    real: np.ndarray, generated: np.ndarray, bins: int = 20, log: bool = True
) -> float:
    """JS divergence between two samples, histogrammed on bins spanning the real sample."""
    r = np.asarray(real, np.float64)
    g = np.asarray(generated, np.float64)
    if log:
        r, g = np.log(np.maximum(r, 1e-9)), np.log(np.maximum(g, 1e-9))
    edges = np.linspace(r.min(), r.max() + 1e-9, bins + 1)
    g = np.clip(g, edges[0], edges[-1] - 1e-12)  # out-of-range generated values count at the ends
    return js_divergence(np.histogram(r, edges)[0], np.histogram(g, edges)[0])

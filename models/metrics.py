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


def classification_metrics(
    labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """AUC, accuracy, precision, recall, F1 (predicted positive: prob >= `threshold`), log loss
    and expected calibration error, plus the base rate and mean prediction beside them."""
    y = np.asarray(labels, np.float64).ravel() > 0.5
    p = np.asarray(probs, np.float64).ravel()
    predicted = p >= threshold
    tp = float((predicted & y).sum())
    precision = tp / predicted.sum() if predicted.any() else 0.0
    recall = tp / y.sum() if y.any() else 0.0
    return {
        "auc": auc(y, p),
        "accuracy": float((predicted == y).mean()) if len(y) else float("nan"),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
        "log_loss": log_loss(y, p),
        "calibration_error": calibration_error(y, p),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
        "mean_prediction": float(p.mean()) if len(p) else float("nan"),
        "n": float(len(y)),
    }


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties averaged."""
    v = np.asarray(values, np.float64)
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(1, len(v) + 1)
    for value in np.unique(v):
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties averaged); NaN if either side is constant."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b over all pairs (few items: the number of recommenders compared)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    i, j = np.triu_indices(len(a), k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    denominator = np.sqrt((da != 0).sum() * (db != 0).sum())
    return float((da * db).sum() / denominator) if denominator else float("nan")

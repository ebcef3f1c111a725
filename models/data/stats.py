"""Per-user activity statistics (what the user generator learns to reproduce)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recloop.models.data.preprocess import UserSequences

DAY = 86_400.0


@dataclass(slots=True)
class UserStats:
    """Per-user activity statistics measured from a sessionised log."""

    sessions_per_day: np.ndarray
    session_length: np.ndarray
    inter_arrival_seconds: np.ndarray
    patience_seconds: np.ndarray

    def matrix(self) -> np.ndarray:
        return np.stack(
            [
                self.sessions_per_day,
                self.session_length,
                self.inter_arrival_seconds,
                self.patience_seconds,
            ],
            axis=1,
        )


def user_stats(seqs: UserSequences) -> UserStats:
    """Sessions per active day, mean events per session, mean in-session gap, mean session span."""
    rows = []
    for times, sessions in zip(seqs.times, seqs.sessions, strict=True):
        _, start, counts = np.unique(sessions, return_index=True, return_counts=True)
        span_days = max((times.max() - times.min()) / DAY, 1.0)
        gaps, spans = [], []
        for s, c in zip(start, counts, strict=True):
            t = np.sort(times[s : s + c])
            gaps.extend(np.diff(t))
            spans.append(t[-1] - t[0])
        gaps_arr = np.asarray(gaps) if gaps else np.asarray([1.0])
        rows.append(
            (
                len(counts) / span_days,
                counts.mean(),
                max(float(np.mean(np.maximum(gaps_arr, 1.0))), 1.0),
                max(float(np.mean(spans)), 1.0),
            )
        )
    a = np.asarray(rows, np.float64)
    return UserStats(a[:, 0], a[:, 1], a[:, 2], a[:, 3])

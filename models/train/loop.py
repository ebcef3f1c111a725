"""The epoch loop shared by every model trained here (TensorFlow-free itself)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def run_epochs(
    n_rows: int,
    epochs: int,
    batch_size: int,
    seed: int,
    step: Callable[[np.ndarray], float],
    on_epoch: Callable[[int], None] | None = None,
) -> list[float]:
    """Shuffle row indices each epoch, call `step` per batch of indices; mean loss per epoch."""
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    for epoch in range(epochs):
        order = rng.permutation(n_rows)
        batches = [order[i : i + batch_size] for i in range(0, n_rows, batch_size)]
        losses.append(sum(step(b) for b in batches) / len(batches))
        if on_epoch is not None:
            on_epoch(epoch)
    return losses

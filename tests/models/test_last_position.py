"""The recommender's serving graph computes only the last position in its last block
(`SASRec.last_hidden`): it must give the same hidden state as the full sequence pass."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.train, pytest.mark.timeout(300)]


@pytest.mark.parametrize("blocks", [1, 2])
def test_last_hidden_equals_the_full_pass_at_the_last_position(blocks: int) -> None:
    from keras import ops

    from recloop.models.train.config import RecommenderConfig
    from recloop.models.train.recommender import SASRec

    model = SASRec(40, 12, RecommenderConfig(dim=16, heads=2, blocks=blocks, dropout=0.0))
    rng = np.random.default_rng(0)
    seq = rng.integers(2, 40, (5, 12)).astype(np.int64)
    seq[0, :9] = 0  # left padding, as served
    seq[1, :] = 0  # an empty history
    full = ops.convert_to_numpy(model(seq))[:, -1, :]
    last = ops.convert_to_numpy(model.last_hidden(seq))
    np.testing.assert_allclose(last, full, rtol=1e-5, atol=1e-5)

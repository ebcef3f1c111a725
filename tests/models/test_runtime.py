"""Runtime pieces that need no trained model: vocabulary, baselines, metrics (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recloop.models.metrics import (
    auc,
    calibration_error,
    js_divergence,
    js_of_samples,
    ranking_metrics,
)
from recloop.models.runtime import CooccurrenceRecommender, PopularRecommender, Vocabulary


def test_vocabulary_roundtrip(tmp_path) -> None:
    v = Vocabulary(["a", "b", "c"])
    assert len(v) == 5
    assert v.encode(["b", "zzz", "a"]).tolist() == [3, 1, 2]
    assert v.decode([2, 4, 0, 1]) == ["a", "c", "<pad>", "<oov>"]
    v.save(tmp_path / "items.json")
    assert Vocabulary.load(tmp_path / "items.json").sha256() == v.sha256()
    assert v.encode(["<pad>"]).tolist() == [1]  # a raw id can never alias the padding index
    with pytest.raises(IndexError):
        v.decode([9])


# Real ids spelled like the reserved tokens map to OOV by design (asserted above), so they are
# not expected to round-trip.
_RAW_IDS = st.text(min_size=1, max_size=5).filter(lambda s: s not in ("<pad>", "<oov>"))


@given(st.lists(_RAW_IDS, min_size=1, max_size=30, unique=True))
def test_vocabulary_encode_decode_inverse(ids: list[str]) -> None:
    v = Vocabulary(ids)
    assert v.decode(v.encode(ids)) == ids


def test_popular_baseline_excludes_seen_and_reserved() -> None:
    counts = np.array([0, 0, 5, 9, 1, 7])
    rec = PopularRecommender(counts, "v", history_length=4)
    items, scores = rec.recommend(np.array([[0, 0, 3, 5], [0, 0, 0, 0]]), k=2)
    assert items.tolist() == [[2, 4], [3, 5]]
    assert scores.dtype == np.float32 and (np.diff(scores, axis=1) <= 0).all()
    items, _ = rec.recommend(np.array([[0, 0, 3, 5]]), k=2, exclude_seen=False)
    assert items.tolist() == [[3, 5]]


def test_cooccurrence_baseline_follows_neighbours() -> None:
    n = 6
    neighbours = np.zeros((n, 2), np.int64)
    weights = np.zeros((n, 2), np.float32)
    neighbours[2], weights[2] = [4, 5], [1.0, 0.5]
    rec = CooccurrenceRecommender(neighbours, weights, np.ones(n), "v", history_length=3)
    items, _ = rec.recommend(np.array([[0, 0, 2]]), k=2)
    assert items.tolist() == [[4, 5]]


def test_ranking_metrics() -> None:
    top = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    m = ranking_metrics(top, np.array([1, 6, 0]), ks=(2, 3))
    assert m["hit_rate@2"] == pytest.approx(1 / 3)
    assert m["hit_rate@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / np.log2(4)) / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 3) / 3)
    assert m["precision@3"] == pytest.approx(2 / 9)


def test_classification_metrics() -> None:
    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(y, np.full(4, 0.3)) == 0.5
    assert calibration_error(y, y.astype(float)) == 0.0
    assert js_divergence(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(size=5000), rng.lognormal(size=5000)
    assert js_of_samples(a, b) < 0.01 < js_of_samples(a, b * 10)

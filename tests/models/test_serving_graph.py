"""The recommender's serving graph (`serving.serving_graph`, written from the weights instead of
by tf2onnx) must rank like the Keras model: scores equal to float tolerance, the same items
(top 10 identical on MovieLens), with and without seen-item exclusion, any top-k size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.train, pytest.mark.timeout(600)]

N_ITEMS, MAX_LEN, MAX_K = 40, 12, 20


def _histories(width: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    seq = rng.integers(2, N_ITEMS, (9, width)).astype(np.int64)
    seq[0, : width - 3] = 0  # left padding, as served
    seq[1, :] = 0  # an empty history
    seq[2, :-1] = 0  # one item
    seq[3, width // 2] = 1  # an out-of-vocabulary item inside
    seq[4, -3:] = seq[4, -1]  # repeats
    return seq


def _perturb(core: object) -> None:
    """LayerNorm gamma/beta and biases away from their 1/0 init, as after training."""
    from keras import ops

    rng = np.random.default_rng(0)
    for v in core.weights:  # type: ignore[attr-defined]
        v.assign(rng.normal(0.0, 0.3, v.shape).astype(np.float32) + ops.convert_to_numpy(v))


def _session(path: Path) -> object:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("blocks", [1, 2])
def test_serving_graph_ranks_like_the_keras_model(blocks: int, tmp_path: Path) -> None:
    import onnx
    from keras import ops

    from recloop.models.train import serving
    from recloop.models.train.config import RecommenderConfig
    from recloop.models.train.recommender import SASRec, inference_model

    core = SASRec(N_ITEMS, MAX_LEN, RecommenderConfig(dim=16, heads=2, blocks=blocks, dropout=0.0))
    core(ops.zeros((1, MAX_LEN), dtype="int64"))
    _perturb(core)
    reference = inference_model(core, MAX_K)
    path = tmp_path / "recommender.onnx"
    onnx.save(serving.serving_graph(serving.weights_of(core), MAX_K), str(path))
    session = _session(path)
    names = [serving.ITEMS_OUTPUT, serving.SCORES_OUTPUT]
    for width in (MAX_LEN, 7):  # the trained length and a shorter batch
        hist = _histories(width)
        exclude = np.array([1, 0, 1, 0, 1, 1, 0, 0, 1], np.float32)
        want = [ops.convert_to_numpy(t) for t in reference([hist, exclude])]
        got = session.run(names, {"history": hist, "exclude_seen": exclude})
        assert got[0].shape == (len(hist), MAX_K)
        serving.check_same_ranking(*want, *got)
        top5 = session.run(names, {"history": hist, "exclude_seen": exclude, "k": np.array([5])})
        np.testing.assert_array_equal(top5[0], got[0][:, :5])
        np.testing.assert_array_equal(top5[1], got[1][:, :5])


def test_rebuilt_from_a_tf2onnx_export_gives_the_same_answers(tmp_path: Path) -> None:
    """`serving.rebuild` (the `rebuilt graph` variant of existing model directories) reads
    the weights out of a tf2onnx export: the new graph answers like the old file."""
    from keras import ops

    from recloop.models.train import serving
    from recloop.models.train.config import RecommenderConfig
    from recloop.models.train.export import export_keras
    from recloop.models.train.recommender import SASRec, inference_model, signature

    core = SASRec(N_ITEMS, MAX_LEN, RecommenderConfig(dim=16, heads=2, blocks=2, dropout=0.0))
    core(ops.zeros((1, MAX_LEN), dtype="int64"))
    _perturb(core)
    old, new = tmp_path / "tf2onnx.onnx", tmp_path / "serving.onnx"
    export_keras(inference_model(core, MAX_K), signature(), old, "sasrec")
    assert not serving.is_serving_graph(old)
    serving.rebuild(old, new, heads=2)
    assert serving.is_serving_graph(new)
    hist = _histories(MAX_LEN)
    feed = {"history": hist, "exclude_seen": np.ones(len(hist), np.float32)}
    want = _session(old).run(None, feed)
    got = _session(new).run([serving.ITEMS_OUTPUT, serving.SCORES_OUTPUT], feed)
    names = [o.name for o in _session(old).get_outputs()]
    want_items, want_scores = want[names.index("item_indices")], want[names.index("scores")]
    serving.check_same_ranking(want_items, want_scores, *got)


def test_movielens_runtime_top10_equals_the_keras_model(movielens_models) -> None:
    """The exported MovieLens recommender, through the runtime (which passes k=10 to the
    graph), gives the Keras model's top 10 on every test user's history."""
    from keras import ops

    from recloop.models.data.preprocess import left_pad
    from recloop.models.runtime import RecommenderRuntime
    from recloop.models.train.serving import check_same_ranking

    rec = RecommenderRuntime.load(movielens_models.path, threads=1)
    assert movielens_models.card.models["recommender"].config["k_input"] == "k"
    split = movielens_models.prep.held.split
    hist = left_pad(split.test_histories(), rec.history_length)
    exclude = np.ones(len(hist), np.float32)
    want_items, want_scores = (
        ops.convert_to_numpy(t) for t in movielens_models.keep["recommender"]([hist, exclude])
    )
    items, scores = rec.recommend(hist, 10)
    check_same_ranking(want_items[:, :10], want_scores[:, :10], items, scores)
    np.testing.assert_array_equal(items, want_items[:, :10])

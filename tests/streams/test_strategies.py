"""Strategies against the real `recloop.models.runtime` loaders, and hot reload of a model directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recloop.streams.strategies import (
    ModelStrategy,
    ModelWatcher,
    RandomStrategy,
    StrategyError,
    build_strategy,
)
from tests.streams.modeldir import write_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("models") / "m", "v1")


def test_onnx_ranks_through_the_real_runtime(model_dir: Path) -> None:
    s = ModelStrategy("onnx", model_dir)
    assert (s.name, s.version, s.history_length) == ("onnx", "v1", 20)
    slates = s.recommend([["3"], ["3", "4"], []], 3, exclude_seen=True)
    assert [i for i, _ in slates[0]] == ["4", "5", "6"]
    assert [i for i, _ in slates[1]] == ["5", "6", "7"]  # "3" and "4" were seen
    assert all(len(slate) == 3 for slate in slates)
    scores = [sc for _, sc in slates[0]]
    assert scores == sorted(scores, reverse=True)
    unmasked = s.recommend([["4", "3"]], 3, exclude_seen=False)[0]
    assert [i for i, _ in unmasked] == ["4", "5", "6"]


def test_unknown_items_are_out_of_vocabulary_not_errors(model_dir: Path) -> None:
    for name in ("onnx", "popular", "cooccurrence"):
        s = ModelStrategy(name, model_dir)
        slates = s.recommend([["no-such-item"], ["no-such-item", "7"], ["x"] * 500], 5, True)
        for slate in slates:
            assert len(slate) == 5, name
            assert all(item not in {"<pad>", "<oov>", "no-such-item"} for item, _ in slate)
            assert len({item for item, _ in slate}) == 5


def test_k_beyond_the_model_limit_is_capped_and_excluded_items_never_leak(
    model_dir: Path,
) -> None:
    s = ModelStrategy("popular", model_dir)
    seen = [str(i) for i in range(20)]  # exactly the model's history length
    slate = s.recommend([seen], 1000, exclude_seen=True)[0]
    assert {i for i, _ in slate} == {str(i) for i in range(20, 40)}  # no -inf, no reserved
    onnx = ModelStrategy("onnx", model_dir)
    assert len(onnx.recommend([["1"]], 1000, exclude_seen=False)[0]) == 20  # card max_k


def test_baselines_on_the_same_interface(model_dir: Path) -> None:
    pop = ModelStrategy("popular", model_dir)
    assert pop.version == "v1+popular"
    assert [i for i, _ in pop.recommend([["0"]], 2, True)[0]] == ["1", "2"]
    co = ModelStrategy("cooccurrence", model_dir)
    assert [i for i, _ in co.recommend([["10"]], 2, True)[0]] == ["11", "12"]


def test_missing_model_directory_is_an_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(StrategyError, match="recloop train"):
        build_strategy("onnx", tmp_path / "nothing")
    with pytest.raises(StrategyError, match="unknown strategy"):
        build_strategy("magic", tmp_path)


def test_random_uses_the_model_catalogue_when_there_is_one(model_dir: Path) -> None:
    s = build_strategy("random", model_dir)
    assert isinstance(s, RandomStrategy)
    slate = s.recommend([["1", "2"]], 10, exclude_seen=True)[0]
    assert len(slate) == 10 and not {"1", "2"} & {i for i, _ in slate}
    assert {i for i, _ in slate} <= {str(i) for i in range(40)}


def test_watcher_swaps_to_a_new_version_and_survives_a_broken_card(tmp_path: Path) -> None:
    path = write_model_dir(tmp_path / "m", "v1")
    current = ModelStrategy("onnx", path)
    watcher = ModelWatcher("onnx", path, current.card_version)
    assert watcher.check() is None  # nothing changed

    write_model_dir(path, "v2")
    fresh = watcher.check()
    assert fresh is not None and fresh.version == "v2"
    assert watcher.check() is None
    # The old strategy object still serves in-flight batches.
    assert current.recommend([["3"]], 1, True)[0][0][0] == "4"

    (path / "card.json").write_text(json.dumps({"broken": True}))
    assert watcher.check() is None
    assert watcher.last_error and "card" in watcher.last_error
    write_model_dir(path, "v3")
    fresh = watcher.check()
    assert fresh is not None and fresh.version == "v3" and watcher.last_error is None


def test_random_picks_k_distinct_unseen_items_uniformly_on_both_paths() -> None:
    """Large catalogue: rejection sampling; small one (or a long history): the filtered pool.
    Both give k distinct items, never a seen one, each item about equally often."""
    big = [f"i{n}" for n in range(200)]
    s = RandomStrategy(big, seed=1)
    history = big[:20]
    counts: dict[str, int] = {}
    for _ in range(400):
        (slate,) = s.recommend([history], 10, exclude_seen=True)
        items = [i for i, _ in slate]
        assert len(items) == len(set(items)) == 10
        assert not set(items) & set(history)
        assert [sc for _, sc in slate] == sorted((sc for _, sc in slate), reverse=True)
        for i in items:
            counts[i] = counts.get(i, 0) + 1
    # 4,000 picks over 180 items: ~22 each; a biased sampler leaves some far off.
    assert len(counts) == 180 and min(counts.values()) > 5 and max(counts.values()) < 50
    small = RandomStrategy([f"i{n}" for n in range(12)], seed=1)
    (slate,) = small.recommend([["i0", "i1", "i2"]], 10, exclude_seen=True)
    assert sorted(i for i, _ in slate) == sorted(f"i{n}" for n in range(3, 12))
    assert len(small.recommend([[]], 5, exclude_seen=False)[0]) == 5
    assert RandomStrategy([]).recommend([["x"]], 5, exclude_seen=True) == [[]]

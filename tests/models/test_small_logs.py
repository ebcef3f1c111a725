"""Small logs in the public layouts (generated from the synthetic world): loading, the
favourite event type, sessions in `recloop data`, and training when the catalogue is smaller
than the embedding (issue 14, item 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recloop.core.contract import ITEM_EVENTS, EventType
from recloop.models.data.examples import ACTION_FAVOURITE, from_interactions
from recloop.models.data.loaders import load
from recloop.models.data.preprocess import build_vocabulary, k_core, sessionise
from recloop.models.data.schema import EVENT_CODE
from recloop.models.data.synthetic import LAYOUTS, SyntheticWorld, write_layout


@pytest.fixture(scope="module")
def small_taobao(tmp_path_factory: pytest.TempPathFactory) -> str:
    """About 4,800 Taobao-layout events; 54 items survive the k-core filter."""
    world = SyntheticWorld.generate(60, 55, seed=0)
    return write_layout(world, "taobao", tmp_path_factory.mktemp("taobao"))


@pytest.mark.parametrize("kind", LAYOUTS)
def test_layouts_load_back(kind: str, tmp_path: Path) -> None:
    log = load(write_layout(SyntheticWorld.generate(40, 30, seed=1), kind, tmp_path))
    summary = log.summary()
    assert summary.users == 40 and summary.events > 300
    expected = {
        "movielens": {"click"},
        "taobao": {"view", "favourite", "cart", "purchase"},
        "retailrocket": {"view", "cart", "purchase"},
    }[kind]
    assert set(summary.by_type) == expected


def test_favourite_is_its_own_event_type(small_taobao: str) -> None:
    assert EventType.FAVOURITE in ITEM_EVENTS
    log = load(small_taobao)
    assert log.summary().by_type["favourite"] > 0
    log = sessionise(k_core(log))
    assert (log.event_type == EVENT_CODE[EventType.FAVOURITE]).any()  # item events keep it
    examples = from_interactions(log, build_vocabulary(log.item), 20, 10, seed=0)
    assert (examples.actions == ACTION_FAVOURITE).any()


def test_data_reports_sessions(small_taobao: str) -> None:
    import json

    from typer.testing import CliRunner

    from recloop.cli import app

    result = CliRunner().invoke(app, ["data", small_taobao])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["sessions"] > summary["users"]  # sessionised by the 30-minute gap
    assert summary["by_type"]["favourite"] > 0


@pytest.mark.train
@pytest.mark.timeout(1200)
def test_training_on_a_catalogue_smaller_than_the_embedding(small_taobao: str, tmp_path) -> None:
    """Was: `variable.shape=(51, 64), Received: value.shape=(51, 51)` from the PPMI init, then
    a top-100 over a 56-item catalogue."""
    from recloop.models.train.config import TrainConfig
    from recloop.models.train.pipeline import train_all

    config = TrainConfig.preset_named("small")
    config.recommender.dim = 64
    config.recommender.epochs = 1
    config.behaviour.epochs = 1
    card = train_all(load(small_taobao), tmp_path / "models", config)
    assert card.vocab_size < config.recommender.dim
    assert card.models["recommender"].config["max_k"] == card.vocab_size
    ndcg = card.metrics["recommender/transformer"]["ndcg@10"]
    assert np.isfinite(ndcg) and ndcg > 0

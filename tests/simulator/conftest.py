"""Simulator test fixtures: a model directory trained once per session on a synthetic world."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

WORLD = {"users": 500, "items": 300, "seed": 0}
"""The world the test models learn from; closed-loop scenarios use its ground truth."""


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models engineer's small preset trained on `WORLD` (recommender, behaviour, generator).

    Set RECLOOP_TEST_MODEL_DIR to reuse an existing directory trained on the same world.
    """
    if cached := os.environ.get("RECLOOP_TEST_MODEL_DIR"):
        return Path(cached)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pytest.fail("training the test models needs the training extra: pip install -e '.[train]'")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from recloop.models.data.synthetic import SyntheticWorld
    from recloop.models.train.config import TrainConfig
    from recloop.models.train.pipeline import train_all

    config = TrainConfig.preset_named("small")
    config.behaviour.epochs = 1
    out = tmp_path_factory.mktemp("sim-models") / "models"
    started = time.perf_counter()
    train_all(SyntheticWorld.generate(**WORLD).log, out, config)
    print(f"trained test models in {time.perf_counter() - started:.0f}s")
    return out


@pytest.fixture(scope="session")
def tansu(_local_brokers: dict) -> object:
    """The embedded broker only (or RECLOOP_BOOTSTRAP's), for broker-independent behaviour."""
    from tests.conftest import EXTERNAL, Broker, _started

    return Broker("external", EXTERNAL) if EXTERNAL else _started("tansu", _local_brokers)

"""Session-scoped trained model directories: train once, share across the models tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support import MOVIELENS


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    if not (MOVIELENS / "ratings.csv").is_file():
        # The data set is part of the repository; a missing copy is a broken checkout, not a skip.
        pytest.fail(f"MovieLens not found at {MOVIELENS}: restore data/ from git")
    return MOVIELENS


def _require_training_extra() -> None:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pytest.fail(
            "these tests train models: install the training extra (pip install -e '.[train]')"
        )


class Trained:
    def __init__(self, path: Path, card: object, keep: dict, seconds: float, prep: object) -> None:
        self.path, self.card, self.keep, self.seconds, self.prep = path, card, keep, seconds, prep


@pytest.fixture(scope="session")
def movielens_models(tmp_path_factory: pytest.TempPathFactory, movielens_dir: Path) -> Trained:
    """All models trained on MovieLens with the full (default) config: the quality claims, the
    fidelity report and the learned users' closed loop are about the models `recloop train`
    makes. (Behaviour models trained for 2 epochs on 15,000 examples, as this fixture did
    before, stay near item popularity: click AUC 0.66, and simulated users who click
    most-popular slates more than the transformer's.)"""
    _require_training_extra()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from recloop.models.data.loaders import load
    from recloop.models.train.config import TrainConfig
    from recloop.models.train.pipeline import prepare, train_all

    config = TrainConfig.preset_named("full")
    keep: dict = {}
    out = tmp_path_factory.mktemp("ml") / "models"
    log = load(f"movielens:{movielens_dir}")
    started = time.perf_counter()
    card = train_all(log, out, config, keep=keep)
    return Trained(out, card, keep, time.perf_counter() - started, prepare(log, config))


@pytest.fixture(scope="session")
def synthetic_models(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """All models trained on a synthetic world with known ground truth."""
    _require_training_extra()
    from recloop.models.data.synthetic import SyntheticWorld
    from recloop.models.train.config import TrainConfig
    from recloop.models.train.pipeline import prepare, train_all

    config = TrainConfig.preset_named("small")
    config.behaviour.epochs = 4
    config.behaviour.max_examples = 30_000
    keep: dict = {}
    out = tmp_path_factory.mktemp("syn") / "models"
    log = SyntheticWorld.generate(1000, 400, seed=0).log
    started = time.perf_counter()
    card = train_all(log, out, config, keep=keep)
    return Trained(out, card, keep, time.perf_counter() - started, prepare(log, config))

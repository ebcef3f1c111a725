"""Learned users (`population.source: model`) without a broker: a batch of answered users reacts
through one onnxruntime call, and a user's past reaches the recommender before the first slate."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from recloop.core.contract import EventType, Recommendation, ScoredItem, StageTimes, UserEvent
from recloop.simulator.pacing import RunClock
from recloop.simulator.population import Shard, build_population
from recloop.simulator.requests import Pending, Source
from recloop.simulator.scenario import scenario_from_dict
from recloop.simulator.sessions import SessionEngine


class CountingSession:
    """An onnxruntime session that counts its `run` calls and the rows they scored."""

    def __init__(self, session: object) -> None:
        self.session, self.calls, self.rows = session, 0, 0

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        self.rows += len(feed["history"])
        return self.session.run(names, feed)  # type: ignore[attr-defined]


def engine_on(
    model_dir: Path, users: int, sent: list[UserEvent], send_history: bool = True
) -> SessionEngine:
    """A session engine of `users` learned users whose sent events go to `sent`."""
    population = {"size": users, "source": "model", "model_dir": str(model_dir)}
    sc = scenario_from_dict(
        {
            "seed": 5,
            "stages": [{"kind": "constant", "rate": 1, "duration": 1}],
            "population": {**population, "send_history": send_history},
        }
    )
    population = build_population(sc.population, sc.user, sc.seed, Shard())
    source = Source.bind("sim", "learned", n_items=len(population[0].item_ids))

    def emit(_s: Source, _k: bytes, event: UserEvent, *_: object) -> float:
        sent.append(event)
        return time.monotonic()

    clock = RunClock()
    engine = SessionEngine(sc, Shard(), "learned", source, clock, emit, population)
    clock.start()
    return engine


def test_a_batch_of_learned_users_reacts_in_one_onnxruntime_call(trained_models: Path) -> None:
    sent: list[UserEvent] = []
    engine = engine_on(trained_models, 300, sent)
    counting = CountingSession(engine.behaviour.runtime.session)  # type: ignore[attr-defined]
    engine.behaviour.runtime.session = counting  # type: ignore[attr-defined]
    items = engine.pop.item_ids[engine.pop.first_item :]
    batch = []
    for user in engine.users:
        user.start_session("learned")
        user.waiting = f"e{user.row}"
        slate = [ScoredItem(items[(user.row + k) % len(items)], 1.0) for k in range(10)]
        rec = Recommendation(
            request_id=f"r{user.row}",
            user_id=user.user_id,
            event_id=user.waiting,
            items=slate,
            model_version="test",
            strategy="test",
            times=StageTimes(event=time.time()),
        )
        batch.append((rec, Pending(engine.source, user.row, 0.0, 0.0, True)))
    engine.answered(batch, time.monotonic())
    assert (counting.calls, counting.rows) == (1, 300)
    assert engine.stats.counts["impressions"] == 3000
    assert all(u.waiting is None and u.step == 1 for u in engine.users)


@pytest.mark.parametrize("send_history", [True, False])
def test_a_learned_users_past_is_sent_as_views_before_the_first_session(
    trained_models: Path, send_history: bool
) -> None:
    sent: list[UserEvent] = []
    engine = engine_on(trained_models, 20, sent, send_history)
    engine.arrival(time.monotonic())
    start = [e for e in sent if e.event_type is EventType.SESSION_START]
    assert len(start) == 1 and sent[-1] is start[0]
    user = engine.by_id[start[0].user_id]
    past = [engine.pop.item_ids[i] for i in user.history]
    assert past, "the generator gives every learned user a seed history"
    views = [e.item_id for e in sent if e.event_type is EventType.VIEW]
    assert views == (past if send_history else [])
    assert all(e.user_id == user.user_id and e.session_id == user.session_id for e in sent)
    assert len(user.history) == len(past)  # the past is sent, not remembered twice


def test_the_demo_uses_learned_users_for_models_trained_on_a_real_log(
    trained_models: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    from recloop.cli.demo import demo_scenario, models_used, users_used

    synthetic = demo_scenario(30, 10, trained_models)
    assert synthetic.population.source == "world"
    said = users_used(synthetic, models_used(trained_models, "onnx"))
    assert said.startswith("synthetic world's users (500 users x 300 items, seed 0)")
    # The same models as if trained on a real log: the card says what the data was.
    real = tmp_path / "models"
    shutil.copytree(trained_models, real)
    card = json.loads((real / "card.json").read_text())
    card["data_source"] = "movielens:data/movielens-latest-small"
    (real / "card.json").write_text(json.dumps(card))
    learned = demo_scenario(30, 10, real)
    assert learned.population.source == "model" and learned.population.model_dir == real
    said = users_used(learned, models_used(real, "onnx"))
    assert said.startswith("learned users: user generator and behaviour model (lstm)")
    assert "trained on movielens:data/movielens-latest-small" in said

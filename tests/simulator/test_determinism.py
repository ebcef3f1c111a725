"""Same scenario and seed: same users and the same decisions given the same recommendations."""

from __future__ import annotations

import numpy as np

from recloop.core.contract import Recommendation, ScoredItem, StageTimes
from recloop.core.settings import Settings
from recloop.simulator.requests import Pending
from recloop.simulator.runner import Simulation
from recloop.simulator.scenario import scenario_from_dict
from recloop.simulator.sessions import SEND, Outgoing


def decisions(seed: int, reverse: bool = False) -> list[tuple[str, str, str | None]]:
    sc = scenario_from_dict(
        {
            "seed": seed,
            "stages": [{"kind": "constant", "rate": 1, "duration": 1}],
            "population": {"size": 120, "world": {"users": 100, "items": 40, "seed": 2}},
            "user": {"organic_share": 0.5},
        }
    )
    sim = Simulation(sc, Settings(), run_id="det")
    rng = np.random.default_rng(0)  # the same slates for every call
    recs = []
    engine = sim.engine
    for user in engine.users:
        user.start_session("det")
        user.waiting = f"e-{user.user_id}"
        sim.tracker.pending[user.waiting] = Pending(sim.simulated, user.row, 0.0, 0.0, True)
        items = rng.choice(40, 10, replace=False)
        recs.append(
            Recommendation(
                request_id=f"r-{user.user_id}",
                user_id=user.user_id,
                event_id=user.waiting,
                items=[ScoredItem(f"i{i}", 1.0) for i in items],
                model_version="v",
                strategy="s",
                times=StageTimes(event=0.0),
            )
        )
    sim.on_recommendations(recs[::-1] if reverse else recs, now=1.0)
    out = []
    for _, _, kind, row, arg in engine.schedule.heap:
        if kind == SEND:
            assert isinstance(arg, Outgoing)
            item = None if arg.item is None else engine.pop.item_ids[arg.item]
            out.append((engine.users[row].user_id, arg.kind.value, item))
    return sorted(out)


def test_same_seed_same_decisions_whatever_the_arrival_order() -> None:
    first = decisions(seed=3)
    assert first == decisions(seed=3)
    assert first == decisions(seed=3, reverse=True)
    assert first != decisions(seed=4)
    kinds = {k for _, k, _ in first}
    assert {"click", "request"} <= kinds

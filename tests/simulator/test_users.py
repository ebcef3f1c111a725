"""Users: deterministic population split, decisions that depend on what was recommended."""

from __future__ import annotations

import numpy as np

from recloop.simulator.population import Shard, build_population
from recloop.simulator.reactions import WorldBehaviour, uniforms
from recloop.simulator.scenario import PopulationSpec, UserSpec, WorldSpec
from recloop.simulator.users import EndReason, decide

SPEC = PopulationSpec(size=300, world=WorldSpec(users=200, items=60, seed=3))


def test_shards_split_the_id_space_and_agree_with_the_whole() -> None:
    whole, _ = build_population(SPEC, UserSpec(), seed=5)
    parts = [build_population(SPEC, UserSpec(), seed=5, shard=Shard(i, 3))[0] for i in range(3)]
    ids = sorted(u for p in parts for u in p.user_ids)
    assert ids == sorted(whole.user_ids) and len(set(ids)) == 300
    for p in parts:
        rows = p.global_index
        assert np.array_equal(p.preference, whole.preference[rows])
        assert np.array_equal(p.patience, whole.patience[rows])
    again, _ = build_population(SPEC, UserSpec(), seed=5)
    assert np.array_equal(again.patience, whole.patience)
    assert Shard.parse("1/3") == Shard(1, 3)


def test_better_slates_get_more_clicks_and_same_inputs_same_decisions() -> None:
    pop, world = build_population(SPEC, UserSpec(), seed=5)
    behaviour = WorldBehaviour(world)
    n, k = 200, 10
    pref = pop.preference[:n]
    scores = pref @ pop.item_vectors.T
    best = np.argsort(-scores, axis=1)[:, :k]
    worst = np.argsort(scores, axis=1)[:, :k]
    steps = np.zeros(n)
    hist = np.zeros((n, 5), np.int64)
    p_best = behaviour.react(pref, hist, best, steps).p_click.mean()
    p_worst = behaviour.react(pref, hist, worst, steps).p_click.mean()
    assert p_best > 3 * p_worst

    def run() -> list:
        r = behaviour.react(pref, hist, best, steps)
        u = uniforms(5, pop.global_index[:n], np.zeros(n, np.int64), 2 * k + 6)
        return decide(
            r,
            u,
            steps,
            np.zeros(n),
            pop.session_length[:n],
            fatigue=0.1,
            boredom=1.0,
            organic_share=0.1,
            return_probability=0.5,
            satisfaction=np.zeros(n),
        )

    a, b = run(), run()
    assert a == b
    assert any(d.click is not None for d in a)
    assert all(d.leave in (None, *EndReason) for d in a)
    u1 = uniforms(5, np.arange(4), np.zeros(4, np.int64), 3)
    u2 = uniforms(5, np.arange(4), np.ones(4, np.int64), 3)
    assert not np.allclose(u1, u2) and (u1 >= 0).all() and (u1 < 1).all()

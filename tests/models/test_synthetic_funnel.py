"""The synthetic world's funnel follows published e-commerce rates (models/README.md: Taobao
UserBehavior buys 2.25 % of page views, RetailRocket 0.84 %); it bought 63 % of clicks before."""

from __future__ import annotations

import numpy as np

from recloop.core.contract import EventType
from recloop.models.data.schema import EVENT_CODE
from recloop.models.data.synthetic import SyntheticWorld, reaction_probabilities


def test_share_of_clicks_bought_is_a_real_funnel_rate() -> None:
    world = SyntheticWorld.generate(400, 300, seed=0)
    types = world.log.event_type
    clicks = int((types == EVENT_CODE[EventType.CLICK]).sum())
    purchases = int((types == EVENT_CODE[EventType.PURCHASE]).sum())
    print(f"\nsynthetic log: {purchases} purchases / {clicks} clicks = {purchases / clicks:.4f}")
    assert 0.008 <= purchases / clicks <= 0.04


def test_even_perfect_slates_convert_few_clicks() -> None:
    """A simulated run's conversion (purchases / clicks) is bounded by clicks on each user's
    best items; it stays under 5 % (it was 81 % with the old buy model)."""
    world = SyntheticWorld.generate(300, 200, seed=1)
    clicks = buys = 0.0
    for user in range(300):
        slate = world.best_items(user, 10)
        affinity = world.item_vectors[slate] @ world.user_vectors[user]
        p_click, p_buy, _ = reaction_probabilities(
            world.params, affinity, world.popularity[slate], world.position_bias, 0, affinity.max()
        )
        clicks += float(p_click.sum())
        buys += float((p_click * p_buy).sum())
    print(f"\nbest slates: expected purchases per click {buys / clicks:.4f}")
    assert np.isfinite(buys) and buys / clicks < 0.05

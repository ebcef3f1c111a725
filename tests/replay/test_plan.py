"""Selection, cloning, ordering, scheduling and the scenario-facing `ReplaySource` (no broker)."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recloop.core.contract import EventType, UserEvent
from recloop.models.data.schema import EVENT_CODE, EventLog
from recloop.simulator.replay.amplify import (
    Selection,
    clone,
    in_replay_order,
    schedule_offsets,
    select,
    user_sampled,
)
from recloop.simulator.replay.replayer import Options, ReplaySource, make_plan
from recloop.simulator.replay.sources import Row, from_event_log


def _rows(spec: list[tuple[str, float]]) -> list[Row]:
    """Rows of (user, time); events are views numbered in input order."""
    rows = []
    for i, (user, t) in enumerate(spec):
        ev = UserEvent(
            event_id=f"e{i}",
            user_id=user,
            event_type=EventType.VIEW,
            event_time=t,
            seq=i,
            item_id=str(i),
            session_id=f"{user}#0",
        )
        rows.append(Row(t, user.encode(), ev, origin=f"row {i}"))
    return rows


def test_schedule_caps_gaps_and_scales() -> None:
    assert schedule_offsets([0, 1, 101, 102], speed=1.0) == [0, 1, 101, 102]
    assert schedule_offsets([0, 1, 101, 102], speed=10.0, max_gap=5) == pytest.approx(
        [0, 0.1, 0.6, 0.7]
    )
    assert schedule_offsets([0, 5, 9], speed=math.inf) == [0, 0, 0]
    with pytest.raises(ValueError, match="speed"):
        schedule_offsets([0], speed=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.floats(0, 100)), min_size=1, max_size=60))
def test_replay_order_never_reorders_a_user(spec: list[tuple[str, float]]) -> None:
    ordered = in_replay_order(_rows(spec))
    per_user: dict[str, list[int]] = defaultdict(list)
    for row in ordered:
        per_user[row.user].append(int(row.event.event_id[1:]))  # type: ignore[union-attr]
    for ids in per_user.values():
        assert ids == sorted(ids)
    times = [r.time for r in ordered]
    assert times == sorted(times)


def test_selection_window_users_sample_types() -> None:
    rows = _rows([(f"u{i % 50}", float(i)) for i in range(500)])
    assert len(select(rows, Selection(start=100, end=200))) == 100
    assert {r.user for r in select(rows, Selection(users=frozenset({"u1", "u2"})))} == {"u1", "u2"}
    half = {r.user for r in select(rows, Selection(sample=0.5, seed=3))}
    assert 10 < len(half) < 40
    assert half == {r.user for r in select(rows, Selection(sample=0.5, seed=3))}, "deterministic"
    assert half == {f"u{i}" for i in range(50) if user_sampled(f"u{i}", 0.5, 3)}
    assert select(rows, Selection(event_types=frozenset({"click"}))) == []
    with pytest.raises(ValueError, match="sample"):
        Selection(sample=0)


async def test_clones_and_loops_keep_ids_unique_and_seq_contiguous() -> None:
    rows = _rows([("a", 0.0), ("b", 0.5), ("a", 1.0), ("b", 2.0), ("a", 3.0)])
    plan = make_plan(rows, copies=2, clone_shift=0.25, speed=100.0)
    assert len(plan.rows) == 15
    cloned = clone(rows, 1, 10.0)
    assert {r.user for r in cloned} == {"a", "b", "a~c1", "b~c1"}
    assert cloned[5].time == rows[0].time + 10.0
    assert cloned[5].event.event_time == rows[0].event.event_time + 10.0  # type: ignore[union-attr]

    source = ReplaySource(plan, Options(topic="t", loops=2))
    got = [(at, ev) async for at, ev in source.events(start_monotonic=1000.0, start_wall=5000.0)]
    assert len(got) == 30
    ids = [ev.event_id for _, ev in got]
    assert len(set(ids)) == len(ids), "event ids unique across clones and loops"
    intended = [at for at, _ in got]
    assert intended == sorted(intended) and intended[0] == 1000.0
    seqs: dict[str, list[int]] = defaultdict(list)
    for at, ev in got:
        seqs[ev.user_id].append(ev.seq)
        assert ev.event_time == pytest.approx(5000.0 + (at - 1000.0))  # scale: intended wall
    assert len(seqs) == 6
    for user, numbers in seqs.items():
        assert numbers == list(range(len(numbers))), f"{user}: seq renumbered +1 per event"


def test_event_log_mapping_inserts_session_starts() -> None:
    click = EVENT_CODE[EventType.CLICK]
    log = EventLog.from_columns(
        user=["1", "1", "1", "2"],
        item=["10", "11", "12", "10"],
        event_type=[click] * 4,
        time=[100.0, 160.0, 100.0 + 7200, 50.0],
        value=[4.0, 3.5, 5.0, 1.0],
    )
    loaded = from_event_log(log, prefix="ml")
    kinds = [(r.user, r.event.event_type.value) for r in loaded.rows]  # type: ignore[union-attr]
    assert kinds == [
        ("1", "session_start"),
        ("1", "click"),
        ("1", "click"),
        ("1", "session_start"),  # a 2 h gap starts a new session
        ("1", "click"),
        ("2", "session_start"),
        ("2", "click"),
    ]
    first = loaded.rows[1].event
    assert first is not None and first.value == 4.0 and first.item_id == "10"
    assert first.session_id == "1#0" and loaded.rows[4].event.session_id == "1#1"  # type: ignore[union-attr]
    assert len({r.event.event_id for r in loaded.rows}) == 7  # type: ignore[union-attr]

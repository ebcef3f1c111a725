"""Loaders, preprocessing and the synthetic world (fast; no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recloop.core.contract import EventType
from recloop.models.data.loaders import (
    ColumnMapping,
    load,
    load_movielens,
    load_movielens_items,
    load_retailrocket,
    load_table,
    load_taobao,
    write_jsonl,
)
from recloop.models.data.preprocess import (
    build_vocabulary,
    chronological_split,
    deduplicate,
    k_core,
    leave_last_out,
    left_pad,
    sessionise,
    user_sequences,
)
from recloop.models.data.schema import EVENT_CODE, DataError, EmptyDataError, EventLog
from recloop.models.data.synthetic import SyntheticWorld


def test_movielens_loads_real_data(movielens_dir: Path) -> None:
    log, report = load_movielens(movielens_dir)
    summary = log.summary()
    assert summary.events == 100_836 and summary.users == 610
    assert report.rows == 100_836 and not report.skipped
    assert set(summary.by_type) == {"click"}
    assert np.nanmax(log.value) == 5.0
    items = load_movielens_items(movielens_dir)
    assert items["1"].title.startswith("Toy Story") and "Animation" in items["1"].genres


def test_strict_errors_name_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "timestamp,visitorid,event,itemid,transactionid\n1433221332117,1,view,5,\n"
        "1433221332118,1,teleport,5,\n"
    )
    with pytest.raises(DataError, match=r"events.csv, line 3, column 'event': unknown event type"):
        load_retailrocket(path)
    path.write_text("timestamp,visitorid,event,itemid,transactionid\nyesterday,1,view,5,\n")
    with pytest.raises(DataError, match=r"line 2, column 'timestamp': unparsable timestamp"):
        load_retailrocket(path)
    path.write_text("ts,visitorid,event,itemid\n1,1,view,5\n")
    with pytest.raises(DataError, match=r"missing column 'timestamp'"):
        load_retailrocket(path)


def test_lenient_skips_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "UserBehavior.csv"
    path.write_text(
        "1,10,3,pv,1511544070\n1,11,3,buy,1511544080\n1,12,3,wink,1511544090\n"
        "2,10,3,cart,not-a-time\n"
    )
    log, report = load_taobao(path, lenient=True)
    assert len(log) == 2 and report.skipped == {"unknown_event_type": 1, "bad_time": 1}
    assert [EventType(e.event_type) for e in log.events()] == [EventType.VIEW, EventType.PURCHASE]
    with pytest.raises(DataError, match="line 3"):
        load_taobao(path)


def test_empty_and_too_small(tmp_path: Path) -> None:
    empty = tmp_path / "ratings.csv"
    empty.write_text("")
    with pytest.raises(EmptyDataError, match="empty"):
        load_movielens(empty)
    empty.write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    with pytest.raises(EmptyDataError, match="only 1 events, at least 10"):
        load(f"movielens:{empty}")
    with pytest.raises(DataError, match="unknown data kind"):
        load("nonsense:x")


def test_generic_jsonl_roundtrip(tmp_path: Path) -> None:
    world = SyntheticWorld.generate(20, 30, seed=1)
    path = tmp_path / "events.jsonl"
    n = write_jsonl(world.log, path)
    log, _ = load_table(path, ColumnMapping(value="value", session="session_id"))
    assert len(log) == n == len(world.log)
    assert log.fingerprint() == EventLog.from_events(world.log.events()).fingerprint()


def test_preprocessing_is_deterministic() -> None:
    log = SyntheticWorld.generate(60, 40, seed=2).log
    doubled = log.take(np.concatenate([np.arange(len(log)), np.arange(len(log))]))
    assert len(deduplicate(doubled)) == len(log)
    core = k_core(log, 3, 3)
    _, ucount = np.unique(core.user, return_counts=True)
    assert ucount.min() >= 3 and np.unique(core.item, return_counts=True)[1].min() >= 3
    a, b = build_vocabulary(core.item), build_vocabulary(core.item[::-1])
    assert a.ids == b.ids and a.encode(["nope"])[0] == 1
    s = sessionise(core, gap_seconds=60)
    assert all(sid.startswith(u + "#") for u, sid in zip(s.user, s.session, strict=True))
    split = leave_last_out(user_sequences(s, a))
    seqs = user_sequences(s, a)
    for u, train, target in zip(split.users, split.train, split.test_target, strict=True):
        full = seqs.items[seqs.users.index(u)]
        assert full[-1] == target and np.array_equal(full[:-2], train)
    tr, va, te = chronological_split(core, 0.1, 0.1)
    assert tr.time.max() <= va.time.min() and va.time.max() <= te.time.min()
    assert left_pad([np.array([5, 6, 7])], 2).tolist() == [[6, 7]]
    assert left_pad([np.array([5])], 3).tolist() == [[0, 0, 5]]


def test_synthetic_world_has_ground_truth() -> None:
    a = SyntheticWorld.generate(50, 60, seed=3)
    b = SyntheticWorld.generate(50, 60, seed=3)
    assert a.log.fingerprint() == b.log.fingerprint()
    assert a.log.exposures and len(a.log.exposures[0].slate) == a.params.slate_size
    types = set(a.log.event_type.tolist())
    assert EVENT_CODE[EventType.SESSION_START] in types and EVENT_CODE[EventType.LEAVE] in types
    # Popularity is skewed and the click model prefers the user's best items.
    assert np.sort(a.popularity)[-5:].mean() > np.median(a.popularity) + 1
    best = a.best_items(0, 10)
    worst = np.argsort(a.item_vectors @ a.user_vectors[0])[:10]
    assert a.click_probability(0, best).mean() > a.click_probability(0, worst).mean()

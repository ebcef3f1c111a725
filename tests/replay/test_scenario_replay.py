"""A scenario's `replay:` section (no broker): loading, sharding, prefixes, errors; and the
`--measure` tracker, which records into the simulator's `RunStats`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from recloop.core.contract import EventType, UserEvent
from recloop.core.settings import Settings
from recloop.simulator.population import Shard
from recloop.simulator.replay.replayer import RecommendationTracker
from recloop.simulator.replay.scenario import load_scenario_replay, user_shard
from recloop.simulator.scenario import ReplaySpec, ScenarioError, load_scenario
from recloop.simulator.stats import RunStats

SAMPLE = Path(__file__).parents[2] / "simulator" / "scenarios" / "data" / "replay-sample.jsonl"


def spec(**kw: object) -> ReplaySpec:
    return ReplaySpec.model_validate({"path": f"jsonl:{SAMPLE}", **kw})


def test_shards_split_replayed_users_and_prefix_applies() -> None:
    whole = load_scenario_replay(spec(user_prefix="r-"))
    assert whole.users and all(u.startswith("r-shopper") for u in whole.users)
    assert all(r.key == r.user.encode() for r in whole.plan.rows)
    parts = [load_scenario_replay(spec(user_prefix="r-"), Shard(i, 3)) for i in range(3)]
    assert set.union(*(set(p.users) for p in parts)) == set(whole.users)
    assert sum(len(p.users) for p in parts) == len(whole.users)
    assert all(user_shard(u, 3) == i for i, p in enumerate(parts) for u in p.users)
    assert sum(len(p.plan.rows) for p in parts) == len(whole.plan.rows)


def test_selection_clones_and_speed() -> None:
    base = load_scenario_replay(spec())
    picked = load_scenario_replay(spec(users=["shopper1", "shopper2"], clones=1, speed="4x"))
    assert picked.users == {"shopper1", "shopper2", "shopper1~c1", "shopper2~c1"}
    assert picked.plan.speed == 4.0 and base.plan.speed == 1.0
    clicks = load_scenario_replay(spec(event_types=["click"]))
    assert {r.event.event_type for r in clicks.plan.rows} == {EventType.CLICK}  # type: ignore[union-attr]


def test_bad_replay_inputs_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"replay\.path: cannot load .*nope"):
        load_scenario_replay(ReplaySpec(path=str(tmp_path / "nope.rec.zst")))
    with pytest.raises(ScenarioError, match="replay: the selection keeps no events"):
        load_scenario_replay(spec(users=["nobody"]))


def test_relative_replay_path_is_relative_to_the_scenario_file(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "stages: [{kind: constant, rate: 1, duration: 1}]\n"
        "replay: {path: 'jsonl:logs/x.jsonl', speed: 2}\n"
    )
    sc = load_scenario(tmp_path / "s.yaml")
    assert sc.replay is not None and sc.replay.path == f"jsonl:{tmp_path / 'logs/x.jsonl'}"


def test_measure_tracker_uses_the_simulators_stats() -> None:
    tracker = RecommendationTracker(Settings(), "unit")
    assert isinstance(tracker.stats, RunStats)
    now = tracker.requests.t0 + 1.0
    for i, kind in enumerate([EventType.SESSION_START, EventType.VIEW, EventType.CLICK]):
        item = None if kind is EventType.SESSION_START else "i1"
        event = UserEvent(
            event_id=f"e{i}", user_id="u", event_type=kind, event_time=0.0, seq=i, item_id=item
        )
        tracker.expect(event, now - 0.2, now - 0.1)
    assert tracker.expected == 2  # view does not ask for a slate
    assert tracker.match("e0", now) == pytest.approx((0.2, 0.1))
    assert tracker.match("e1", now) is None
    summary = tracker.summary()
    assert (summary.expected, summary.answered) == (2, 1)
    # One of two requests unanswered: the p99 is infinite, as in a simulation.
    assert math.isinf(summary.latency_intended_ms["p99"])
    assert summary.latency_actual_ms["p50"] == pytest.approx(100, rel=0.01)
    tracker.match("e2", now)
    assert tracker.summary().latency_intended_ms["p99"] == pytest.approx(200, rel=0.01)


def test_summaries_carry_and_merge_the_replay_section(tmp_path: Path) -> None:
    from recloop.simulator.report import Summary, merge_summaries, summarise, write_report
    from recloop.simulator.runner import RunResult
    from recloop.simulator.scenario import quick_scenario

    parts = []
    for i in range(2):
        replay = RunStats()
        replay.count("requests", 0.5, 2)
        replay.count("recommendations", 0.6)
        replay.record_latency(0.6, 0.02 * (i + 1), 0.01)
        result = RunResult(
            run_id="r",
            scenario=quick_scenario(1, 1),
            shard=Shard(i, 2),
            stats=RunStats(),
            verdicts=[],
            aborted=False,
            started=0.0,
            finished=1.0,
            replay_stats=replay,
        )
        write_report(summarise(result, "test"), tmp_path / f"s{i}")
        parts.append(Summary.from_json((tmp_path / f"s{i}" / "summary.json").read_text()))
    assert parts[0].replay is not None and math.isinf(parts[0].replay["figures"]["latency.p99"])
    merged = merge_summaries(parts)
    assert merged.replay is not None
    assert merged.replay["counts"]["requests"] == 4
    assert RunStats.from_dict(merged.replay["stats"]).latency.get_total_count() == 2
    assert "Replayed users" in (write_report(merged, tmp_path / "m")).read_text()

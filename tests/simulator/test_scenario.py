"""Scenario files: valid ones load, bad ones name the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.simulator.scenario import (
    ScenarioError,
    load_scenario,
    parse_duration,
    scenario_from_dict,
)

GOOD = """
name: mixed
seed: 7
population: {size: 200, source: world, world: {users: 100, items: 50, seed: 1}}
user: {patience: 1500ms, think_time: 0.5s, organic_share: 0.2}
recommendation_timeout: 4s
stages:
  - {kind: ramp, start: 1, end: 10, duration: 10s}
  - {kind: constant, rate: 10, duration: 1m}
  - {kind: step, rates: [5, 10, 20], duration: 30}
  - {kind: spike, rate: 5, peak: 50, at: 5s, width: 2s, duration: 20s}
  - {kind: soak, rate: 3, duration: 1h}
  - {kind: diurnal, mean: 10, amplitude: 0.5, period: 60s, duration: 2m}
thresholds: ["p99 latency < 100ms", "abandonment < 1%", "ctr > 0.05"]
abort_on_breach: true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_good_scenario_loads_with_every_stage_kind(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, GOOD))
    assert [s.kind for s in sc.stages] == ["ramp", "constant", "step", "spike", "soak", "diurnal"]
    assert sc.user.patience == pytest.approx(1.5)
    assert sc.duration == pytest.approx(10 + 60 + 30 + 20 + 3600 + 120)
    assert sc.rate_at(5) == pytest.approx(5.5)  # halfway up the ramp
    assert sc.rate_at(10 + 60 + 25) == 20  # third step
    assert sc.rate_at(100 + 6) == 50  # in the spike
    assert sc.rate_at(1e9) == 0
    assert [t.key for t in sc.parsed_thresholds()] == ["latency.p99", "abandonment", "ctr"]


def test_unknown_key_names_the_key_and_the_allowed_keys(tmp_path: Path) -> None:
    bad = GOOD.replace("organic_share: 0.2", "organic_shar: 0.2")
    with pytest.raises(ScenarioError) as err:
        load_scenario(write(tmp_path, bad))
    msg = str(err.value)
    assert "user.organic_shar: unknown key" in msg
    assert "organic_share" in msg and "patience" in msg


def test_unknown_stage_kind_lists_the_kinds() -> None:
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict({"stages": [{"kind": "wave", "rate": 1, "duration": 1}]})
    msg = str(err.value)
    assert "stages.0" in msg and "'wave'" in msg
    assert "constant, ramp, step, spike, soak, diurnal" in msg


def test_bad_value_names_the_key_and_allowed_values() -> None:
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(
            {
                "stages": [{"kind": "constant", "rate": 1, "duration": 1}],
                "population": {"source": "csv"},
            }
        )
    assert "population.source" in str(err.value) and "'world'" in str(err.value)
    with pytest.raises(ScenarioError, match=r"stages.0.constant.duration.*'10 parsecs'"):
        scenario_from_dict({"stages": [{"kind": "constant", "rate": 1, "duration": "10 parsecs"}]})
    with pytest.raises(ScenarioError, match="stages"):
        scenario_from_dict({"stages": []})


def test_bad_threshold_names_the_allowed_metrics() -> None:
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(
            {
                "stages": [{"kind": "constant", "rate": 1, "duration": 1}],
                "thresholds": ["p99 latancy < 100ms"],
            }
        )
    assert "thresholds.0" in str(err.value) and "allowed values: latency" in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.yaml")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(write(tmp_path, "stages: [\n"))


def test_durations() -> None:
    assert parse_duration("250ms") == pytest.approx(0.25)
    assert parse_duration("2m") == 120
    assert parse_duration(3) == 3
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_replay_section_is_validated() -> None:
    stages = [{"kind": "constant", "rate": 1, "duration": 1}]
    sc = scenario_from_dict(
        {"stages": stages, "replay": {"path": "r.rec.zst", "speed": "10x", "max_gap": "5s"}}
    )
    assert sc.replay is not None and sc.replay.speed == 10 and sc.replay.max_gap == 5
    cases = [
        ({"path": "x", "sped": 2}, "replay.sped: unknown key; allowed keys: path, speed"),
        ({"path": "kaggle:x.csv"}, "replay.path.*allowed values: movielens, taobao"),
        ({"path": "x", "speed": "max"}, "replay.speed.*finite"),
        ({"path": "x", "sample": 0}, "replay.sample"),
        ({"path": "x", "event_types": ["clik"]}, "replay.event_types.0.*'click'"),
        ({"speed": 1}, "replay.path"),
    ]
    for replay, message in cases:
        with pytest.raises(ScenarioError, match=message):
            scenario_from_dict({"stages": stages, "replay": replay})


@pytest.mark.parametrize(
    "name", ["example.yaml", "slow-recommender.yaml", "replay-and-simulate.yaml"]
)
def test_shipped_scenarios_load(name: str) -> None:
    sc = load_scenario(Path(__file__).parents[2] / "simulator" / "scenarios" / name)
    assert sc.duration > 0 and sc.parsed_thresholds()

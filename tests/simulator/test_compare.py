"""`--fail-if` gates: parsing, the direction of a regression, and missing or infinite figures."""

from __future__ import annotations

import math
from typing import Any

import pytest

from recloop.simulator.compare import (
    GateError,
    better_when,
    check_gate,
    parse_gate,
    verdict,
)
from recloop.simulator.report import Summary
from tests.support import run_recloop


def summary(**figures: Any) -> Summary:
    return Summary(
        run_id="r",
        scenario_name="s",
        scenario={},
        seed=0,
        shards=["0/1"],
        started=0.0,
        finished=1.0,
        git_revision="x",
        broker="b",
        versions={},
        recommender={},
        passed=True,
        aborted=False,
        figures=figures,
        counts={},
        ended_by={},
        verdicts=[],
        stats={},
    )


@pytest.mark.parametrize(
    ("text", "key", "sign", "limit", "relative"),
    [
        ("p99 latency +10%", "latency.p99", 1, 0.10, True),
        ("ctr -5%", "ctr", -1, 0.05, True),
        ("abandonment +2pp", "abandonment", 1, 0.02, False),
        ("p99 latency +50ms", "latency.p99", 1, 0.05, False),
        ("P99.9 Latency + 1s", "latency.p99.9", 1, 1.0, False),
        ("mean session_depth -0.5", "session_depth", -1, 0.5, False),
    ],
)
def test_gates_parse(text: str, key: str, sign: int, limit: float, relative: bool) -> None:
    g = parse_gate(text)
    assert (g.key, g.sign, g.relative) == (key, sign, relative)
    assert g.limit == pytest.approx(limit)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p99 latency 10%", "cannot parse gate 'p99 latency 10%'"),
        ("latency +10%", "latency needs a statistic"),
        ("p99 ctr +10%", "ctr takes no percentile"),
        ("ctr +5ms", "ctr is not a duration"),
        ("p99 latency +2pp", "pp (percentage points) is for ratios"),
        ("p99 latency +3", "give the change in % of the baseline, ms or s"),
        ("speed -5%", "unknown metric 'speed'"),
    ],
)
def test_bad_gates_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(GateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_gate(text)


def test_a_gate_fails_only_past_its_limit_in_its_direction() -> None:
    base = summary(**{"latency.p99": 0.100, "ctr": 0.10, "abandonment": 0.01})
    gate = parse_gate("p99 latency +10%")
    assert check_gate(gate, "b", base, summary(**{"latency.p99": 0.109})).passed
    assert not check_gate(gate, "b", base, summary(**{"latency.p99": 0.111})).passed
    assert check_gate(gate, "b", base, summary(**{"latency.p99": 0.010})).passed  # faster
    fell = check_gate(parse_gate("ctr -5%"), "b", base, summary(ctr=0.09))
    assert not fell.passed and fell.change == "-10.0 %"
    rose = check_gate(parse_gate("abandonment +2pp"), "b", base, summary(abandonment=0.05))
    assert not rose.passed and rose.change == "+4.00 pp"


def test_unanswered_and_missing_figures() -> None:
    gate = parse_gate("p99 latency +10%")
    base = summary(**{"latency.p99": 0.1})
    slow = check_gate(gate, "slow", base, summary(**{"latency.p99": math.inf}))
    assert not slow.passed and slow.change == "+∞"
    both = summary(**{"latency.p99": math.inf})
    assert check_gate(gate, "b", both, both).passed  # no measurable change
    missing = check_gate(parse_gate("ctr -5%"), "b", summary(ctr=0.1), summary(ctr=None))
    assert not missing.passed and missing.change == "not measured in b"


def test_direction_of_better() -> None:
    assert better_when("latency.p99") == "lower" and better_when("ctr") == "higher"
    assert verdict("lower", "latency.p99", 0.2, 0.1) == "better"
    assert verdict("higher", "ctr", 0.2, 0.1) == "worse"
    assert verdict("higher", "ctr", 0.2, 0.2) == "same"


def test_bad_gate_on_the_command_line_is_one_line_exit_2() -> None:
    proc = run_recloop("compare", "a.json", "b.json", "--fail-if", "p99 latency 10%")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot parse gate" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr

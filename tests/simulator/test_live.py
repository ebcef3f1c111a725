"""The live view renders a snapshot with every figure and the threshold states."""

from __future__ import annotations

import math

from rich.console import Console

from recloop.simulator.live import render
from recloop.simulator.runner import Snapshot
from recloop.simulator.stats import COUNTERS
from recloop.simulator.thresholds import Verdict


def test_render_shows_figures_and_verdicts() -> None:
    snap = Snapshot(
        elapsed=12.0,
        duration=60.0,
        target_rate=120.0,
        achieved_rate=118.0,
        active_sessions=42,
        figures={"latency.p99": math.inf, "latency.p50": 0.012, "ctr": 0.07, "abandonment": None},
        verdicts=[Verdict("p99 latency < 100ms", "latency.p99", math.inf, 0.1, False)],
        counts=dict.fromkeys(COUNTERS, 3),
    )
    console = Console(record=True, width=120)
    console.print(render(snap))
    text = console.export_text()
    assert "12.0 / 60 s" in text and "12.0 ms" in text and "∞" in text
    assert "7.00 %" in text and "✗ p99 latency < 100ms" in text

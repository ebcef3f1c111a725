"""`recloop replay --web`: the replay's progress as the dashboard's snapshots, and its end page.

A replay has no users and no thresholds, only events sent at their intended times and, with
`--measure`, the answers' latency (in the replay `Source`'s `RunStats`). `feed` turns that into
the same `Snapshot` a simulation's ticker makes, so the live page is the same page.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Callable

from recloop.simulator.replay.replayer import Replayer
from recloop.simulator.runner import Snapshot, last_second_latency
from recloop.simulator.stats import RunStats
from recloop.simulator.web.charts import inline_assets, render_script, run_specs

TICK_SECONDS = 0.5


def snapshot(replayer: Replayer, elapsed: float, achieved: float, duration: float) -> Snapshot:
    """What the replay did so far, as a simulation's snapshot (no users, no verdicts)."""
    stats = replayer.source.stats
    counts = dict(stats.counts)
    counts["events_sent"] = replayer.result.sent  # sends are counted by the replayer itself
    plan = replayer.plan
    target = 0.0 if plan.as_fast_as_possible or plan.span <= 0 else len(plan.rows) / plan.span
    return Snapshot(
        elapsed=elapsed,
        duration=max(duration, elapsed),
        target_rate=target,
        achieved_rate=achieved,
        active_sessions=0,
        figures=stats.figures(),
        verdicts=[],
        counts=counts,
        last_second=last_second_latency(stats, len(stats.timeline) - 2),
    )


def expected_duration(replayer: Replayer) -> float:
    """Seconds the replay should take (its --duration, or the plan's span times its loops)."""
    if replayer.options.duration is not None:
        return replayer.options.duration
    return replayer.plan.span * max(replayer.options.loops, 1)


async def feed(replayer: Replayer, on_tick: Callable[[Snapshot], None]) -> None:
    """Call `on_tick` with a snapshot every half second until cancelled."""
    started = last_t = time.monotonic()
    last_sent = 0
    duration = expected_duration(replayer)
    while True:
        await asyncio.sleep(TICK_SECONDS)
        now = time.monotonic()
        sent = replayer.result.sent
        on_tick(snapshot(replayer, now - started, (sent - last_sent) / (now - last_t), duration))
        last_sent, last_t = sent, now


def end_page(title: str, lines: list[str], stats: RunStats | None) -> str:
    """The page shown when the replay is over: its terminal lines, and charts when measured."""
    charts = ""
    if stats is not None and stats.counts["requests"]:
        charts = '<h2>Over time</h2><div id="charts"></div>' + render_script(
            "charts", run_specs(stats)
        )
    body = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
{inline_assets()}<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #111; }}
.chart {{ display: inline-block; margin: 6px; border: 1px solid #eee; vertical-align: top; }}
</style></head><body>
<h1>{html.escape(title)}: finished</h1><ul>{body}</ul>{charts}
</body></html>
"""

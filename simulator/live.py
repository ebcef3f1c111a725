"""The live terminal view (rich): progress and the key figures, refreshed every tick."""

from __future__ import annotations

import dataclasses
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from recloop.simulator.figures import MISSING, ms, percent, rate
from recloop.simulator.runner import Snapshot

INF = "∞"
"""An unanswered latency percentile, short for the table."""


def render(s: Snapshot, title: str = "RecLoop simulation") -> Group:
    """One frame of the live view."""
    f, c = s.figures, s.counts
    table = Table(title=title, show_header=False, expand=False, min_width=60)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("target events/s", rate(s.target_rate), "achieved events/s", rate(s.achieved_rate)),
        ("active sessions", str(s.active_sessions), "events sent", str(c["events_sent"])),
        (
            "p50 latency",
            ms(f.get("latency.p50"), INF),
            "p99 latency",
            ms(f.get("latency.p99"), INF),
        ),
        (
            "p99 actual-send latency",
            ms(f.get("actual_latency.p99"), INF),
            "p99 schedule lag",
            ms(f.get("schedule_lag.p99"), INF),
        ),
        ("late sends", str(c["late_sends"]), "timeouts", str(c["timeouts"])),
        ("abandonment", percent(f.get("abandonment")), "CTR", percent(f.get("ctr"))),
        (
            "conversion",
            percent(f.get("conversion")),
            "session depth",
            MISSING if f.get("session_depth") is None else f"{f['session_depth']:.2f}",
        ),
        ("hit rate", percent(f.get("hit_rate")), "coverage", percent(f.get("coverage"))),
    ]
    if (r := s.replay_counts) is not None:
        rows.append(
            (
                "replayed events sent",
                str(r["events_sent"]),
                "replayed answered",
                f"{r['recommendations']}/{r['requests']}",
            )
        )
    for row in rows:
        table.add_row(*row)
    bar = ProgressBar(total=max(s.duration, 1e-9), completed=min(s.elapsed, s.duration), width=50)
    progress = Text(f" {s.elapsed:5.1f} / {s.duration:.0f} s")
    lines = [Group(bar, progress), table]
    for v in s.verdicts:
        style = "green" if v.passed else "bold red"
        lines.append(Text(f"{'✓' if v.passed else '✗'} {v.threshold}", style=style))
    return Group(*lines)


class LiveView:
    """Context manager: `with LiveView() as view: ... view.update(snapshot)`.

    The frame left on screen at the end has no threshold lines: the command prints the final
    verdicts, with what was measured, once below it.
    """

    def __init__(self, title: str = "RecLoop simulation", console: Console | None = None) -> None:
        self.title = title
        self.live = Live(console=console, refresh_per_second=2, transient=False)
        self.last: Snapshot | None = None

    def update(self, snapshot: Snapshot) -> None:
        self.last = snapshot
        self.live.update(render(snapshot, self.title))

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.last is not None:
            self.live.update(render(dataclasses.replace(self.last, verdicts=[]), self.title))
        self.live.__exit__(et, ev, tb)
        if not self.live.console.is_terminal:
            # rich ends the last frame with a newline on terminals only; without it the next
            # line printed (the verdicts) would be glued to the frame's last line.
            self.live.console.line()

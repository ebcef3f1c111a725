"""`--web` and the terminal lines without a broker: a taken port, bad options, verdict lines."""

from __future__ import annotations

import socket

from recloop.simulator.report import verdict_lines
from recloop.simulator.thresholds import Verdict
from tests.support import run_recloop


def test_a_taken_dashboard_port_is_one_line_exit_3() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_recloop(
            "simulate", "--duration", "1", "--no-live", "--metrics-port", "0",
            "--bootstrap", "127.0.0.1:1", "--web", "--web-port", str(port),
        )  # fmt: skip
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"cannot serve the dashboard on 127.0.0.1:{port}" in proc.stderr
    assert "choose another --web-port" in proc.stderr


def test_a_bad_web_port_is_a_usage_error() -> None:
    proc = run_recloop("simulate", "--no-live", "--web", "--web-port", "70000")
    assert proc.returncode == 2 and "--web-port" in proc.stderr, proc.stderr


def test_verdict_lines_are_aligned_with_units() -> None:
    verdicts = [
        Verdict("p99 latency < 3s", "latency.p99", 0.9713, 3.0, True),
        Verdict("abandonment < 15%", "abandonment", 0.172, 0.15, False),
        Verdict("mean session_depth > 2", "session_depth", 2.5, 2.0, True),
        Verdict("p50 latency < 1s", "latency.p50", float("inf"), 1.0, False),
    ]
    assert verdict_lines(verdicts) == [
        "✓ p99 latency < 3s        measured 971.3 ms",
        "✗ abandonment < 15%       measured 17.20 %",
        "✓ mean session_depth > 2  measured 2.5",
        "✗ p50 latency < 1s        measured ∞ (unanswered requests)",
    ]

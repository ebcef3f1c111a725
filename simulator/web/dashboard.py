"""The live web dashboard (`--web`): an aiohttp server in its own thread, fed by snapshots.

The runner calls `on_tick` with a `Snapshot` twice a second (the same snapshots the terminal
view draws); `Dashboard.update` turns each into one JSON point and the current tables and
hands them to the server thread, which pushes them to every open page over Server-Sent Events.
A page that connects late first gets the whole history. When the run is over, `finish` gives
the server the final report; pages are told, fetch `/report` and show it. `close` waits (up to
`linger` seconds) for the open pages to have fetched it, so the report reaches a browser even
though the process ends right after the run.

The server has its own thread and event loop so that serving pages never delays the
simulation's scheduler (only the JSON building happens on the simulator's loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from recloop.core.errors import RunError
from recloop.simulator.figures import MISSING, figure, ms, percent
from recloop.simulator.runner import Snapshot
from recloop.simulator.thresholds import unit_of
from recloop.simulator.web.charts import asset

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8089
KEEPALIVE_SECONDS = 15.0
PAGE = "dashboard.html"
STATIC_TYPES = {".js": "application/javascript", ".css": "text/css"}
STATIC_FILES = ("uPlot.iife.min.js", "uPlot.min.css", "charts.js", "dashboard.js")


class DashboardError(RunError):
    """The dashboard could not be served (the port is taken, the address is not local)."""


@dataclass(slots=True)
class Window:
    """Cumulative counters at the previous snapshot, for per-window CTR and abandonment."""

    counts: dict[str, int] = field(default_factory=dict)

    def shares(self, counts: dict[str, int]) -> dict[str, float | None]:
        d = {k: v - self.counts.get(k, 0) for k, v in counts.items()}
        self.counts = dict(counts)
        return {
            "ctr": d["clicks"] / d["impressions"] if d["impressions"] else None,
            "conversion": d["purchases"] / d["clicks"] if d["clicks"] else None,
            "abandonment": d["abandoned"] / d["sessions_ended"] if d["sessions_ended"] else None,
        }


def source_row(name: str, c: dict[str, int], f: dict[str, float | None]) -> dict[str, str]:
    """One row of the per-source table, written for people."""
    return {
        "source": name,
        "events sent": str(c["events_sent"]),
        "answered": f"{c['recommendations']}/{c['requests']}",
        "timeouts": str(c["timeouts"]),
        "late sends": str(c["late_sends"]),
        "p50 latency": ms(f.get("latency.p50"), "∞"),
        "p99 latency": ms(f.get("latency.p99"), "∞"),
        "CTR": percent(f.get("ctr")),
        "abandonment": percent(f.get("abandonment")),
    }


class Dashboard:
    """Serve the live page on `host:port`; `update` per snapshot, `finish`, then `close`."""

    def __init__(
        self,
        *,
        title: str,
        meta: dict[str, str],
        scenario: dict[str, Any],
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        source_names: tuple[str, str] = ("simulated", "replayed"),
    ) -> None:
        self.title = title
        self.meta = meta
        self.scenario = scenario
        self.host = host
        self.port = port
        self.source_names = source_names
        self.points: list[dict[str, Any]] = []
        self.latest: dict[str, Any] = {}
        self.changes: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        self.report_html: str | None = None
        self.report_fetches = 0
        self.clients: set[asyncio.Queue[tuple[str, Any] | None]] = set()
        self._window = Window()
        self._passed: dict[str, bool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # -- the simulator's side ---------------------------------------------------------------

    def update(self, s: Snapshot) -> None:
        """Turn one snapshot into a point and tables and publish them (any thread)."""
        recent = s.last_second or {}
        point = {
            "t": round(s.elapsed, 3),
            "target": s.target_rate,
            "achieved": s.achieved_rate,
            **{
                q: (v * 1000 if (v := recent.get(q)) is not None else None)
                for q in ("p50", "p90", "p99")
            },
            **self._window.shares(s.counts),
        }
        point = {k: v if v is None or math.isfinite(v) else None for k, v in point.items()}
        for v in s.verdicts:
            if self._passed.get(v.threshold) != v.passed:
                self._passed[v.threshold] = v.passed
                self.changes.append(
                    {
                        "t": f"{s.elapsed:.1f} s",
                        "threshold": v.threshold,
                        "passed": v.passed,
                        "value": figure(v.value, unit_of(v.key)),
                    }
                )
        f, c = s.figures, s.counts
        sources = [source_row(self.source_names[0], c, f)]
        if s.replay_counts is not None:
            rf = s.replay_figures or {}
            row = source_row(self.source_names[1], s.replay_counts, rf)
            row["CTR"] = row["abandonment"] = MISSING  # replayed users do not react
            sources.append(row)
        latest = {
            "elapsed": s.elapsed,
            "duration": s.duration,
            "figures": {
                "target rate": f"{s.target_rate:.0f} /s",
                "achieved rate": f"{s.achieved_rate:.0f} /s",
                "active sessions": str(s.active_sessions),
                "p50 latency": ms(f.get("latency.p50"), "∞"),
                "p99 latency": ms(f.get("latency.p99"), "∞"),
                "p99 schedule lag": ms(f.get("schedule_lag.p99"), "∞"),
                "CTR": percent(f.get("ctr")),
                "conversion": percent(f.get("conversion")),
                "abandonment": percent(f.get("abandonment")),
            },
            "sources": sources,
            "verdicts": [
                {
                    "threshold": v.threshold,
                    "passed": v.passed,
                    "value": figure(v.value, unit_of(v.key)),
                }
                for v in s.verdicts
            ],
            "changes": list(self.changes),
        }
        self._call(self._publish_tick, point, latest)

    def finish(self, report_html: str, status: str) -> None:
        """The run is over: hand over the final report (`status`: PASSED, FAILED, ABORTED)."""
        self._call(self._publish_final, report_html, {"status": status, "report": "report"})

    # -- the server thread ------------------------------------------------------------------

    def start(self) -> Dashboard:
        """Bind and serve in a daemon thread; raises `DashboardError` if it cannot bind."""
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="recloop-dashboard", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise DashboardError(
                f"cannot serve the dashboard on {self.host}:{self.port}: {failure[0]}; "
                "choose another --web-port (or --web-host)"
            )
        return self

    def close(self, linger: float = 10.0) -> None:
        """Stop serving, after the pages open at `finish` fetched the report (at most `linger` s)."""
        loop = self._loop
        if loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError, TimeoutError):  # the loop stopped, or hangs
            asyncio.run_coroutine_threadsafe(self._shutdown(linger), loop).result(linger + 10)
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    def _call(self, fn: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(fn, *args)

    async def _start_site(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/events", self._events)
        app.router.add_get("/state", self._state_json)
        app.router.add_get("/report", self._report)
        app.router.add_get("/static/{name}", self._static)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def _shutdown(self, linger: float) -> None:
        deadline = time.monotonic() + linger
        waiting = len(self.clients) if self.final is not None else 0
        while self.report_fetches < waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for q in self.clients:
            q.put_nowait(None)  # ends the event streams
        if self._runner is not None:
            await self._runner.cleanup()

    def _broadcast(self, event: str, data: Any) -> None:
        for q in self.clients:
            q.put_nowait((event, data))

    def _publish_tick(self, point: dict[str, Any], latest: dict[str, Any]) -> None:
        self.points.append(point)
        self.latest = latest
        self._broadcast("tick", {"point": point, "latest": latest})

    def _publish_final(self, report_html: str, final: dict[str, Any]) -> None:
        self.report_html = report_html
        self.final = final
        self._broadcast("final", final)

    def _state(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "meta": self.meta,
            "scenario": self.scenario,
            "points": self.points,
            "latest": self.latest,
            "final": self.final,
        }

    # -- handlers ---------------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=asset(PAGE), content_type="text/html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        kind = STATIC_TYPES[name[name.rfind(".") :]]
        return web.Response(text=asset(name), content_type=kind)

    async def _state_json(self, request: web.Request) -> web.Response:
        return web.json_response(self._state())

    async def _report(self, request: web.Request) -> web.Response:
        if self.report_html is None:
            raise web.HTTPNotFound(text="the run is not over yet")
        self.report_fetches += 1
        return web.Response(text=self.report_html, content_type="text/html")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        self.clients.add(queue)
        try:
            await _send(resp, "state", self._state())
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    break
                await _send(resp, *item)
        except (ConnectionResetError, ConnectionError):
            pass  # the page went away
        finally:
            self.clients.discard(queue)
        return resp


async def _send(resp: web.StreamResponse, event: str, data: Any) -> None:
    payload = json.dumps(data, separators=(",", ":"), default=_jsonable)
    await resp.write(f"event: {event}\ndata: {payload}\n\n".encode())


def _jsonable(v: Any) -> Any:
    if hasattr(v, "__dataclass_fields__"):
        return asdict(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")

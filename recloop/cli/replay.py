"""`recloop record` and `recloop replay`."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import uuid
from pathlib import Path
from typing import Annotated

import typer

from recloop.cli.web import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    WebFlag,
    WebHost,
    WebPort,
    open_dashboard,
    web_options,
)
from recloop.core.errors import InvalidInputError


def _epoch(value: str | None) -> float | None:
    """Epoch seconds from a number or an ISO 8601 time (UTC when no zone is given)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither epoch seconds nor ISO 8601") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()


def _speed(value: str) -> float:
    if value.lower() in ("max", "afap", "inf", "0"):
        return math.inf
    try:
        speed = float(value.lower().removesuffix("x"))
    except ValueError:
        raise typer.BadParameter(f"speed {value!r}: use a factor like 1, 0.5, 10x or max") from None
    if speed <= 0:
        raise typer.BadParameter("speed must be > 0 (or max)")
    return speed


def register(app: typer.Typer) -> None:
    """Add `record` and `replay` to the `recloop` CLI."""

    @app.command()
    def record(
        path: Annotated[Path, typer.Argument(help="Recording file to write (.rec.zst)")],
        topic: Annotated[
            list[str] | None, typer.Option("--topic", "-t", help="Topic to record (repeatable)")
        ] = None,
        bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers")] = None,
        from_latest: Annotated[
            bool, typer.Option(help="Start at the end (new records only), not the beginning")
        ] = False,
        max_records: Annotated[int | None, typer.Option(help="Stop after this many")] = None,
        max_seconds: Annotated[float | None, typer.Option(help="Stop after this long")] = None,
        follow: Annotated[
            bool, typer.Option(help="Keep recording past the current end offsets")
        ] = False,
        idle_seconds: Annotated[
            float | None, typer.Option(help="Stop after this long without a record")
        ] = None,
    ) -> None:
        """Capture topics (default: the events and recommendations topics) to a file."""
        from rich.console import Console

        from recloop.core.settings import load_settings
        from recloop.simulator.replay.capture import Bounds

        console = Console(stderr=True, soft_wrap=True)  # paths in warnings stay whole
        settings = load_settings(bootstrap=bootstrap)
        topics = topic or [settings.topics.events, settings.topics.recommendations]
        bounds = Bounds(
            start="latest" if from_latest else "earliest",
            max_records=max_records,
            max_seconds=max_seconds,
            to_end=not follow,
            idle_seconds=idle_seconds,
        )
        with console.status("recording") as status:
            trailer = asyncio.run(
                _record(settings, topics, path, bounds, lambda n: status.update(f"{n} records"))
            )
        console.print(
            f"{trailer.count} records from {', '.join(topics)} -> {path} "
            f"(stopped by {trailer.stopped_by}; {path.stat().st_size / 1e6:.2f} MB)"
        )

    @app.command()
    def replay(
        source: Annotated[
            str,
            typer.Argument(
                help="A recording file, or an event log: movielens:DIR, taobao:FILE, "
                "retailrocket:DIR, csv:FILE, jsonl:FILE, parquet:FILE"
            ),
        ],
        speed: Annotated[
            str, typer.Option(help="Speed factor (1, 0.5, 10x, 1000) or max (as fast as possible)")
        ] = "1",
        max_gap: Annotated[
            float | None, typer.Option(help="Cap idle gaps at this many original seconds")
        ] = None,
        timestamps: Annotated[
            str, typer.Option(help="keep (original), shift (start now), scale (with the speed)")
        ] = "scale",
        topic: Annotated[str | None, typer.Option(help="Target topic (default: events)")] = None,
        source_topic: Annotated[
            list[str] | None, typer.Option(help="Replay only these recorded topics")
        ] = None,
        start: Annotated[str | None, typer.Option(help="Window start (epoch s or ISO)")] = None,
        end: Annotated[str | None, typer.Option(help="Window end (epoch s or ISO)")] = None,
        user: Annotated[list[str] | None, typer.Option(help="Only these users")] = None,
        users_file: Annotated[
            Path | None, typer.Option(help="File of user ids, one a line")
        ] = None,
        sample: Annotated[float, typer.Option(help="Fraction of users to keep")] = 1.0,
        seed: Annotated[int, typer.Option(help="Seed of the user sample")] = 0,
        event_type: Annotated[list[str] | None, typer.Option(help="Only these event types")] = None,
        clones: Annotated[int, typer.Option(help="Extra copies of every user, new ids")] = 0,
        clone_shift: Annotated[
            float, typer.Option(help="Original seconds between copies' start times")
        ] = 60.0,
        loops: Annotated[int, typer.Option(help="Times to replay (0: forever)")] = 1,
        duration: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = None,
        strict: Annotated[
            bool, typer.Option(help="Stop on the first bad row, before anything is sent")
        ] = False,
        raw: Annotated[
            bool, typer.Option(help="Send recorded values untouched (not contract events)")
        ] = False,
        keep_seq: Annotated[bool, typer.Option(help="Do not renumber per-user seq")] = False,
        measure: Annotated[
            bool, typer.Option(help="Match recommendations to replayed events, report latency")
        ] = False,
        wait: Annotated[float, typer.Option(help="With --measure, seconds to wait")] = 30.0,
        limit: Annotated[int | None, typer.Option(help="Read only the first rows of a log")] = None,
        bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers")] = None,
        metrics_port: Annotated[
            int | None, typer.Option(help="Serve Prometheus metrics on this port")
        ] = None,
        run_id: Annotated[str | None, typer.Option(help="run_id label of the metrics")] = None,
        dry_run: Annotated[bool, typer.Option(help="Load and validate only")] = False,
        web: WebFlag = False,
        web_port: WebPort = DEFAULT_PORT,
        web_host: WebHost = DEFAULT_HOST,
    ) -> None:
        """Publish a recording or an event log to Kafka, paced, keyed by user."""
        from rich.console import Console

        from recloop.core.settings import load_settings
        from recloop.simulator.replay.amplify import Selection, clone, in_replay_order, select
        from recloop.simulator.replay.replayer import Options, Plan
        from recloop.simulator.replay.sources import load_source

        console = Console(stderr=True, soft_wrap=True)  # paths in warnings stay whole
        if timestamps not in ("keep", "shift", "scale"):
            raise typer.BadParameter("--timestamps must be keep, shift or scale")
        factor = _speed(speed)
        users = set(user or [])
        if users_file is not None:
            users |= {u.strip() for u in users_file.read_text().splitlines() if u.strip()}
        settings = load_settings(bootstrap=bootstrap)
        try:
            selection = Selection(
                start=_epoch(start),
                end=_epoch(end),
                users=frozenset(users) if users else None,
                sample=sample,
                seed=seed,
                event_types=frozenset(event_type) if event_type else None,
            )
        except ValueError as exc:  # --sample, --start/--end
            raise typer.BadParameter(str(exc)) from None
        with console.status(f"loading {source}"):
            loaded = load_source(
                source,
                strict=strict,
                topics=set(source_topic) if source_topic else None,
                raw=raw,
                limit=limit,
            )
        for problem in loaded.problems[:10]:
            console.print(f"[yellow]skipped {problem}")
        if loaded.skipped_total:
            reasons = ", ".join(f"{k} {v}" for k, v in loaded.skipped.most_common())
            console.print(f"[yellow]{loaded.skipped_total} rows skipped ({reasons})")
        if loaded.truncated is not None:
            console.print(
                f"[yellow]recording truncated: {loaded.truncated}; replaying the "
                f"{len(loaded.rows)} records before it"
            )
        rows = in_replay_order(clone(select(loaded.rows, selection), clones, clone_shift))
        if not rows:
            raise InvalidInputError("the selection is empty: nothing to replay")
        plan = Plan.build(rows, factor, max_gap)
        pace = "as fast as possible" if plan.as_fast_as_possible else f"over {plan.span:.1f} s"
        console.print(f"{len(rows)} events from {loaded.source}, {pace} per loop")
        if dry_run:
            return
        options = Options(
            topic=topic or settings.topics.events,
            time_mode=timestamps,  # type: ignore[arg-type]
            loops=loops,
            renumber_seq=not keep_seq,
            duration=duration,
            run_id=run_id or f"replay-{uuid.uuid4().hex[:8]}",
        )
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port)
        web_at = web_options(web, web_port, web_host)
        with contextlib.ExitStack() as stack:
            dashboard = None
            if web_at is not None:
                meta = {"run id": options.run_id, "source": str(loaded.source), "speed": speed}
                meta |= {"events per loop": str(len(rows)), "topic": options.topic}
                meta["broker"] = settings.bootstrap
                title = f"RecLoop replay · run {options.run_id}"
                shown = {"source": source, "speed": speed, "max_gap": max_gap, "loops": loops}
                shown |= {"timestamps": timestamps, "sample": sample, "clones": clones}
                shown |= {"duration": duration, "measure": measure, "event_type": event_type}
                dashboard = stack.enter_context(
                    open_dashboard(web_at, title, meta, shown, "replayed")
                )
            result = asyncio.run(
                _replay(settings, plan, options, measure, wait, console, dashboard)
            )
            lines = [
                f"sent {result.sent} events in {result.seconds:.2f} s "
                f"({result.rate:,.0f} events/s) to {options.topic}"
            ]
            if not plan.as_fast_as_possible:
                lines.append(
                    f"schedule lag p50 {result.lag_p50 * 1e3:.2f} ms, p99 "
                    f"{result.lag_p99 * 1e3:.2f} ms, max {result.lag_max * 1e3:.2f} ms; "
                    f"{result.late} late"
                )
            if (recs := result.recommendations) is not None:
                lines.append(
                    f"recommendations {recs.answered}/{recs.expected}; latency from intended "
                    f"send {recs.latency_intended_ms} ms, from actual send "
                    f"{recs.latency_actual_ms} ms"
                )
            if dashboard is not None:
                from recloop.simulator.web.replayfeed import end_page

                stats = None if recs is None else recs.stats
                dashboard.finish(end_page(dashboard.title, lines, stats), "DONE")
        for line in lines:
            console.print(line)


async def _record(settings, topics, path, bounds, progress):  # type: ignore[no-untyped-def]
    from recloop.simulator.replay.capture import record

    return await record(settings, topics, path, bounds, progress)


async def _replay(settings, plan, options, measure, wait, console, dashboard=None):  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from recloop.core.topics import ensure_topics
    from recloop.simulator.replay.replayer import RecommendationTracker, Replayer, progress_loop

    await ensure_topics(settings, extra=[options.topic])
    tracker = RecommendationTracker(settings, options.run_id) if measure else None
    replayer = Replayer(settings, plan, options, tracker)
    started = asyncio.get_running_loop().time()
    with Progress(
        TextColumn("replay"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total} {task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=replayer.total, rate="")

        def report(sent: int, total: int | None) -> None:
            elapsed = asyncio.get_running_loop().time() - started
            rate = f"{sent / elapsed:,.0f}/s" if elapsed > 0 else ""
            bar.update(task, completed=sent, rate=rate)

        ticker = asyncio.create_task(progress_loop(replayer, report))
        feeder = None
        if dashboard is not None:
            from recloop.simulator.web.replayfeed import feed

            feeder = asyncio.create_task(feed(replayer, dashboard.update))
        try:
            result = await replayer.run()
            if tracker is not None:
                await tracker.wait(wait)
                result.recommendations = tracker.summary()
        finally:
            for task in (ticker, feeder):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if tracker is not None:
                await tracker.stop()
    return result

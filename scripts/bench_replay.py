"""Replay benchmark on real Kafka: as-fast-as-possible rate beside a raw aiokafka producer, and
1x pacing accuracy.

    .venv/bin/python scripts/bench_replay.py [--events 200000] [--paced-seconds 20]

Uses RECLOOP_BOOTSTRAP if set, else starts a local Apache Kafka (`recloop.brokers`). Both the
replay and the raw producer send the same pre-encoded contract events (same keys, same value
sizes) into fresh topics, in the same run; the raw producer is the baseline all producing
benchmarks share (`benchlib.raw_producer`).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

from recloop.core.contract import EventType, UserEvent, encode
from recloop.core.settings import Settings, Topics
from recloop.core.topics import ensure_topics
from recloop.simulator.replay.recording import Header, Record, RecordingWriter
from recloop.simulator.replay.replayer import Options, Replayer, make_plan
from recloop.simulator.replay.sources import load_recording

TYPES = [EventType.VIEW] * 6 + [EventType.CLICK] * 3 + [EventType.CART, EventType.PURCHASE]


def synthetic(n: int, users: int, mean_gap: float, seed: int = 1) -> list[tuple[float, UserEvent]]:
    """Sessions of realistic events: per-user exponential think times, per-user `seq`."""
    rng = random.Random(seed)
    base = 1_700_000_000.0
    clock = {f"user-{u}": base + rng.uniform(0, mean_gap * 10) for u in range(users)}
    seq = dict.fromkeys(clock, 0)
    names = list(clock)
    out = []
    for i in range(n):
        user = rng.choice(names)
        clock[user] += rng.expovariate(1 / (mean_gap * users))
        kind = EventType.SESSION_START if seq[user] == 0 else rng.choice(TYPES)
        out.append(
            (
                clock[user],
                UserEvent(
                    event_id=f"ev-{i:09d}",
                    user_id=user,
                    event_type=kind,
                    event_time=clock[user],
                    seq=seq[user],
                    item_id=None if kind is EventType.SESSION_START else str(rng.randrange(50_000)),
                    session_id=f"{user}#0",
                    value=round(rng.uniform(1, 100), 2) if kind is EventType.PURCHASE else None,
                ),
            )
        )
        seq[user] += 1
    out.sort(key=lambda p: p[0])
    return out


def write_recording(path: Path, events: list[tuple[float, UserEvent]]) -> None:
    with RecordingWriter(path, Header(created=time.time(), topics=["bench"])) as writer:
        for i, (ts, e) in enumerate(events):
            writer.write(Record.of("bench", 0, i, int(ts * 1000), e.user_id.encode(), encode(e)))


def fresh(settings: Settings, tag: str) -> Settings:
    topics = benchlib.fresh_topics(tag, settings.topics.partitions)
    return settings.model_copy(update={"topics": topics})


async def bench(
    bootstrap: str, n: int, paced_seconds: float, partitions: int, rounds: int = 3
) -> dict[str, Any]:
    """Replay as fast as possible beside the shared raw-producer baseline (alternating, best of
    `rounds`), then 1x pacing accuracy; the result's figures."""
    settings = Settings(bootstrap=bootstrap, topics=Topics(partitions=partitions))
    tmp = benchlib.tmpdir("bench-replay-")
    events = synthetic(n, users=5000, mean_gap=0.01)
    path = tmp / "bench.rec.zst"
    write_recording(path, events)
    size = sum(len(encode(e)) for _, e in events) / n
    print(f"recording: {n} events, mean value {size:.0f} bytes, {path.stat().st_size / 1e6:.1f} MB")

    records = [(e.user_id.encode(), encode(e)) for _, e in events]
    results: dict[str, list[float]] = {"replay": [], "replay+load": [], "raw": []}
    cpu: dict[str, list[float]] = {"replay+load": [], "raw": []}
    for _ in range(rounds):  # alternate, so machine noise hits both alike
        s = fresh(settings, "raw")
        await ensure_topics(s)
        raw = await benchlib.raw_producer(s, records)
        results["raw"].append(raw["events_per_s"])
        cpu["raw"].append(raw["cpu_us_per_event"])

        s = fresh(settings, "replay")
        await ensure_topics(s)
        cpu0, t0 = time.process_time(), time.monotonic()
        loaded = load_recording(path, strict=True)
        plan = make_plan(loaded.rows, speed=math.inf)
        load_s = time.monotonic() - t0
        options = Options(topic=s.topics.events, time_mode="scale")
        result = await Replayer(s, plan, options).run()
        assert result.sent == n
        cpu["replay+load"].append((time.process_time() - cpu0) * 1e6 / n)
        results["replay"].append(result.rate)
        results["replay+load"].append(n / (result.seconds + load_s))
    print("as fast as possible, events/s (best first):")
    for name, rates in results.items():
        print(f"  {name:12s} " + "  ".join(f"{r:>9,.0f}" for r in sorted(rates, reverse=True)))
    print("  (replay: send phase, from planned rows; replay+load: file read, decode, plan, send)")

    # 1x pacing: ~paced_seconds of a recording with realistic gaps (mean 5 ms between events).
    paced = synthetic(int(paced_seconds / 0.005), users=300, mean_gap=0.005, seed=2)
    ppath = tmp / "paced.rec.zst"
    write_recording(ppath, paced)
    s = fresh(settings, "paced")
    await ensure_topics(s)
    plan = make_plan(load_recording(ppath, strict=True).rows, speed=1.0)
    result = await Replayer(s, plan, Options(topic=s.topics.events)).run()
    print(
        f"1x pacing: {result.sent} events over {plan.span:.1f} s (took {result.seconds:.1f} s): "
        f"|actual - scheduled| p50 {result.lag_p50 * 1e3:.3f} ms, p99 {result.lag_p99 * 1e3:.3f} ms, "
        f"max {result.lag_max * 1e3:.2f} ms, {result.late} over 5 ms; "
        f"after send() returned p99 {result.sent_lag_p99 * 1e3:.3f} ms"
    )
    best = {name: max(rates) for name, rates in results.items()}
    return {
        "events": n,
        "mean_value_bytes": round(size),
        "rounds": rounds,
        "raw_producer": {"events_per_s": best["raw"], "cpu_us_per_event": min(cpu["raw"])},
        "replay_events_per_s": best["replay+load"],
        "replay_send_phase_events_per_s": best["replay"],
        "cpu_us_per_event": min(cpu["replay+load"]),
        "ratio_to_raw": best["replay+load"] / best["raw"],
        "paced_1x": {
            "events": result.sent,
            "lag_p50_ms": result.lag_p50 * 1e3,
            "lag_p99_ms": result.lag_p99 * 1e3,
            "lag_max_ms": result.lag_max * 1e3,
            "over_5ms": result.late,
        },
    }


def run(
    bootstrap: str, events: int = 200_000, paced_seconds: float = 20.0, rounds: int = 3
) -> dict[str, Any]:
    """`bench` on an existing broker (4 partitions)."""
    return asyncio.run(bench(bootstrap, events, paced_seconds, 4, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with benchlib.kafka(os.environ.get("RECLOOP_BOOTSTRAP")) as bootstrap:
        print(f"Kafka at {bootstrap}")
        asyncio.run(bench(bootstrap, args.events, args.paced_seconds, args.partitions, args.rounds))


if __name__ == "__main__":
    main()

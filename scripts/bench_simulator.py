"""Benchmark: the highest open-loop event rate one simulator process sustains, vs raw aiokafka.

For each target rate (ascending) the real `Simulation` runs a scenario whose sessions start
by Poisson arrivals and, with no recommender answering, end when the user's patience runs out
(a session start, then a leave: two events per session). That exercises the whole send path:
arrivals, the scheduling heap, event encoding, the aiokafka producer, deadlines and stats. A
rate is sustained when the achieved rate is within 3% of the target and the p99 scheduling lag
(actual minus intended send time) is under 5 ms. Beside it, a raw aiokafka producer sends the
same-sized messages as fast as it can, measured in the same run on the same broker.

    .venv/bin/python scripts/bench_simulator.py                 # embedded Tansu broker
    .venv/bin/python scripts/bench_simulator.py --bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaProducer

from recloop.core.contract import EventType, UserEvent, encode
from recloop.core.settings import Settings, Topics
from recloop.core.topics import ensure_topics
from recloop.simulator.runner import Simulation
from recloop.simulator.scenario import scenario_from_dict

LAG_P99_LIMIT = 0.005


async def raw_producer_rate(settings: Settings, n: int) -> float:
    """Messages/s of a bare aiokafka producer (same settings as the simulator's)."""
    producer = AIOKafkaProducer(**settings.kafka_kwargs(), linger_ms=2, acks=1)
    await producer.start()
    try:
        now = time.time()
        payloads = [
            (
                f"u{i % 5000}".encode(),
                encode(
                    UserEvent(
                        event_id=f"bench-{i}",
                        user_id=f"u{i % 5000}",
                        event_type=EventType.SESSION_START,
                        event_time=now,
                        seq=i,
                        produce_time=now,
                        session_id=f"bench:u{i % 5000}:1",
                    )
                ),
            )
            for i in range(n)
        ]
        started = time.perf_counter()
        for key, value in payloads:
            await producer.send(settings.topics.events, value, key=key)
        await producer.flush()
        return n / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def simulated(settings: Settings, event_rate: float, seconds: float) -> tuple[float, float]:
    """(achieved events/s, p99 schedule lag in s) of one simulator process at `event_rate`."""
    sc = scenario_from_dict(
        {
            "name": f"bench-{event_rate:.0f}",
            "stages": [{"kind": "constant", "rate": event_rate / 2, "duration": seconds}],
            "population": {"size": 50_000, "world": {"users": 500, "items": 300}},
            "user": {"patience": "100ms", "return_probability": 0},
            "recommendation_timeout": "200ms",
        }
    )
    sim = Simulation(sc, settings)
    result = await sim.run()
    c = result.stats.counts
    return c["events_sent"] / seconds, sim.simulated.pacer.lag_percentile(99) / 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", help="existing Kafka (default: start embedded Tansu)")
    parser.add_argument("--rates", default="2000,5000,8000,10000,12000,15000,20000")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--raw-messages", type=int, default=100_000)
    args = parser.parse_args()

    broker = None
    if args.bootstrap is None:
        from recloop.brokers import EmbeddedBroker

        broker = EmbeddedBroker().start()
        args.bootstrap = broker.bootstrap
    try:
        settings = Settings(
            bootstrap=args.bootstrap,
            topics=Topics(events="bench.events", recommendations="bench.recs", partitions=4),
        )
        asyncio.run(ensure_topics(settings))
        raw = asyncio.run(raw_producer_rate(settings, args.raw_messages))
        print(f"raw aiokafka producer: {raw:,.0f} events/s ({args.raw_messages} messages)")
        best = 0.0
        for rate in (float(r) for r in args.rates.split(",")):
            achieved, lag = asyncio.run(simulated(settings, rate, args.seconds))
            ok = lag < LAG_P99_LIMIT and achieved >= 0.97 * rate
            print(
                f"simulator target {rate:8,.0f}/s  achieved {achieved:8,.0f}/s  "
                f"lag p99 {lag * 1000:6.2f} ms  {'sustained' if ok else 'NOT sustained'}"
            )
            if ok:
                best = max(best, achieved)
            else:
                break
        print(
            f"max sustained open-loop rate (lag p99 < 5 ms): {best:,.0f} events/s; "
            f"raw aiokafka producer: {raw:,.0f} events/s"
        )
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()

"""The simulator's fast versions of library code give exactly the library's results."""

from __future__ import annotations

import random

import numpy as np
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hdrh.histogram import HdrHistogram
from prometheus_client import CollectorRegistry, Counter, Histogram

from recloop.simulator.metrics import Tally
from recloop.simulator.sender import murmur2
from recloop.simulator.stats import percentile_values, record


def test_murmur2_and_partition_equal_aiokafkas() -> None:
    rng = random.Random(0)
    for length in range(0, 41):
        for _ in range(30):
            key = bytes(rng.randrange(256) for _ in range(length))
            assert murmur2(key) == aiokafka_murmur2(key)
    partitions = list(range(7))
    for i in range(500):
        key = f"user-{i}".encode()
        expected = DefaultPartitioner()(key, partitions, partitions)
        assert partitions[(murmur2(key) & 0x7FFFFFFF) % 7] == expected


def test_record_equals_record_value() -> None:
    rng = np.random.default_rng(0)
    for digits in (2, 3):
        a, b = HdrHistogram(1, 3_600_000_000, digits), HdrHistogram(1, 3_600_000_000, digits)
        values = [1, 2, 3, 2047, 2048, 3_600_000_000, 3_600_000_001, 10**12]
        values += [int(v) + 1 for v in rng.exponential(5000, 2000) * rng.choice([1, 1e4], 2000)]
        for v in values:
            a.record_value(v)
            record(b, v)
        assert list(a.counts) == list(b.counts)
        assert (a.total_count, a.min_value, a.max_value) == (
            b.total_count,
            b.min_value,
            b.max_value,
        )


def test_percentile_values_equal_hdrhs() -> None:
    rng = np.random.default_rng(1)
    qs = [0, 50, 90, 95, 99, 99.9, 100]
    for n in (0, 1, 7, 5000):
        h = HdrHistogram(1, 3_600_000_000, 3)
        for v in rng.exponential(2000, n) * rng.choice([1, 1000], n):
            h.record_value(int(v) + 1)
        assert percentile_values(h, qs) == h.get_percentile_to_value_dict(qs)
        decoded = HdrHistogram(1, 3_600_000_000, 3)
        if n:
            decoded.decode_and_add(h.encode())
        assert percentile_values(decoded, qs) == decoded.get_percentile_to_value_dict(qs)


def test_tally_publishes_what_direct_updates_would() -> None:
    registry = CollectorRegistry()
    buckets = (0.001, 0.01, 0.1)
    direct_h = Histogram("direct_h", "", buckets=buckets, registry=registry)
    tallied_h = Histogram("tallied_h", "", buckets=buckets, registry=registry)
    direct_c = Counter("direct_c", "", registry=registry)
    tallied_c = Counter("tallied_c", "", registry=registry)
    tally = Tally()
    for v in [0.0, 0.001, 0.0011, 0.05, 0.1, 0.5, 7.0, 0.0005]:
        direct_h.observe(v)
        tally.observe(tallied_h, v)
        direct_c.inc()
        tally.inc(tallied_c)
    assert registry.get_sample_value("tallied_c_total") == 0
    tally.publish()
    tally.publish()  # nothing new: no double counting

    def samples(name: str) -> list[tuple[str, dict, float]]:
        return [
            (s.name.replace(name, ""), s.labels, s.value)
            for metric in registry.collect()
            if metric.name == name
            for s in metric.samples
            if not s.name.endswith("_created")
        ]

    assert samples("tallied_h") == samples("direct_h")
    assert samples("tallied_c") == samples("direct_c")

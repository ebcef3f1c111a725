"""Broker fixtures: every Kafka test runs on the embedded Tansu broker and on real Apache Kafka.

Set RECLOOP_BOOTSTRAP=host:port to run them against an already running Kafka instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from recloop.brokers import BROKERS, LocalBroker
from tests.support import require_tool

EXTERNAL = os.environ.get("RECLOOP_BOOTSTRAP")
BROKER_KINDS = ["external"] if EXTERNAL else ["tansu", "kafka"]


class Broker:
    """What a test needs to know about the broker it runs on."""

    def __init__(self, kind: str, bootstrap: str) -> None:
        self.kind = kind
        self.bootstrap = bootstrap

    def __repr__(self) -> str:
        return f"Broker({self.kind}, {self.bootstrap})"


@pytest.fixture(scope="session")
def _local_brokers() -> Iterator[dict[str, LocalBroker]]:
    started: dict[str, LocalBroker] = {}
    yield started
    for broker in started.values():
        broker.stop()


@pytest.fixture(scope="session", params=BROKER_KINDS)
def broker(request: pytest.FixtureRequest, _local_brokers: dict[str, LocalBroker]) -> Broker:
    """A running broker; each kind is started once per session and shared."""
    kind: str = request.param
    if kind == "external":
        assert EXTERNAL
        return Broker(kind, EXTERNAL)
    return _started(kind, _local_brokers)


@pytest.fixture(scope="session")
def kafka(_local_brokers: dict[str, LocalBroker]) -> Broker:
    """Real Apache Kafka only (for features Tansu lacks, such as transactions)."""
    return Broker("external", EXTERNAL) if EXTERNAL else _started("kafka", _local_brokers)


@pytest.fixture(scope="session")
def tansu(_local_brokers: dict[str, LocalBroker]) -> Broker:
    """The embedded Tansu broker only (for its own behaviour, such as fetch latency)."""
    return _started("tansu", _local_brokers)


def _started(kind: str, started: dict[str, LocalBroker]) -> Broker:
    if kind == "kafka":
        # Real Apache Kafka runs on Java; its jars come through Maven (`make kafka-jars`).
        require_tool("java")
        require_tool("mvn")
    if kind not in started:
        started[kind] = BROKERS[kind]().start()
    return Broker(kind, started[kind].bootstrap)

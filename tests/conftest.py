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


TRAINED_FIXTURES = ("movielens_models", "synthetic_models", "trained_models")
"""Session fixtures that train models (minutes of CPU): tests sharing one run in one process."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups for pytest-xdist's `--dist loadgroup` (`make test` runs the suite in parallel
    processes, see the Makefile): each test module runs whole in one process, so its module
    fixtures (a Prometheus, Chromium, six workers) start once; modules that use the same
    trained-model fixture run in one process, which trains those models once. Without xdist
    the marks do nothing."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.get(name, name) != name:
            name = parent[name]
        return name

    for item in items:
        module = root(_module_name(item))
        for fixture in TRAINED_FIXTURES:
            if fixture in getattr(item, "fixturenames", ()):
                shared = root(fixture)
                if shared != module:
                    parent[module] = shared
                    module = shared
    for item in items:
        if not any(item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(root(_module_name(item))))


def _module_name(item: pytest.Item) -> str:
    module = getattr(item, "module", None)
    return module.__name__ if module is not None else item.nodeid

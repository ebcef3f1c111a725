"""All of RecLoop's runtime configuration, in one place.

Values come from (highest first) explicit arguments, `RECLOOP_*` environment variables
(nested groups use `__`, e.g. `RECLOOP_WORKER__BATCH_SIZE=128`), a YAML file named by
`RECLOOP_CONFIG`, then the defaults below. `RECLOOP_BOOTSTRAP` points everything at a Kafka
cluster. pydantic-settings does the parsing, so a bad value is reported with its key.
"""

from __future__ import annotations

import enum
import json
import os
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, FilePath, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from recloop.core.contract import DEFAULT_MAX_MESSAGE_BYTES
from recloop.core.errors import InvalidInputError


class ConfigError(InvalidInputError, ValueError):
    """The configuration is invalid; the message names each bad key and what it expects."""


class KafkaSecurity(BaseModel):
    """Client security settings, passed to aiokafka and Faust.

    Tested on Apache Kafka (tests/faults/test_security.py): SASL_SSL with SCRAM-SHA-512, and SSL
    with a client certificate (mTLS). Files must exist and parse when the settings load, so a
    wrong path is a bad setting (exit 2), not a connection failure. The password is kept out of
    `repr` (and so out of tracebacks and logged settings)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = Field(None, repr=False)
    ssl_cafile: FilePath | None = None
    ssl_certfile: FilePath | None = None
    ssl_keyfile: FilePath | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        sasl = self.protocol.startswith("SASL_")
        if sasl and not self.sasl_mechanism:
            raise ValueError(f"protocol {self.protocol} needs sasl_mechanism")
        if self.sasl_mechanism and not sasl:
            raise ValueError(
                f"sasl_mechanism is set but protocol is {self.protocol}; use SASL_SSL"
                " (or SASL_PLAINTEXT)"
            )
        if sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError("SASL needs a non-empty sasl_username and sasl_password")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("ssl_keyfile is set without ssl_certfile")
        if "SSL" in self.protocol:
            self.ssl_context()  # a file that is not PEM, or a key that does not match, fails here
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """An SSL context for SSL/SASL_SSL protocols, else None."""
        if "SSL" not in self.protocol:
            return None
        try:
            ctx = ssl.create_default_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"ssl_cafile {self.ssl_cafile}: not a PEM CA certificate ({exc})"
            ) from None
        if self.ssl_certfile:
            try:
                ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"ssl_certfile {self.ssl_certfile} / ssl_keyfile {self.ssl_keyfile}: "
                    f"not a PEM certificate and matching key ({exc})"
                ) from None
        return ctx


class Topics(BaseModel):
    """Topic names and layout. Every topic is keyed (and so partitioned) by user id."""

    events: str = "recloop.events"
    recommendations: str = "recloop.recommendations"
    dead_letters: str = "recloop.dead-letters"
    partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1)


class Strategy(enum.StrEnum):
    """How the worker recommends (`worker.strategy`, `recloop worker --strategy`)."""

    ONNX = "onnx"
    """The transformer trained by `recloop train`, run with onnxruntime."""
    POPULAR = "popular"
    COOCCURRENCE = "cooccurrence"
    RANDOM = "random"
    """Needs no model: the floor every recommender must beat, and the loop before training."""

    @property
    def needs_model(self) -> bool:
        """Whether the strategy loads a trained model directory."""
        return self is not Strategy.RANDOM


class WorkerConfig(BaseModel):
    """The Faust recommender worker (`recloop worker`)."""

    app_id: str = "recloop-worker"
    strategy: Strategy = Strategy.ONNX
    model_dir: Path = Path("artifacts/models")
    slate_size: int = Field(10, ge=1, le=1000)
    exclude_seen: bool = True
    history_length: int = Field(50, ge=1, le=1000)
    trigger_on: list[str] = ["session_start", "click", "request"]
    batch_size: int = Field(64, ge=1, le=4096)
    batch_wait_seconds: float = Field(0.005, ge=0.0, le=5.0)
    max_queued_batches: int = Field(2, ge=1, le=64)
    """Full batches waiting for inference while the agent goes on processing events (the
    back pressure: beyond this the agent waits)."""
    store: Literal["memory", "rocksdb"] = "memory"
    data_dir: Path = Path("artifacts/worker-data")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    inject_delay_seconds: float = Field(0.0, ge=0.0, le=60.0)
    """Deliberate extra latency per batch, to stress-test the simulator's abandonment."""
    metrics_port: int = Field(9464, ge=0, le=65535)
    session_timeout_seconds: float = Field(6.0, ge=1.0, le=300.0)
    """Consumer group session timeout. Some brokers (Tansu) hold the first join for a fraction
    of it, so a short value makes start-up fast; heartbeats run in Faust's consumer thread."""
    rebalance_timeout_seconds: float = Field(6.0, ge=1.0, le=300.0)
    heartbeat_interval_seconds: float = Field(1.0, gt=0.0, le=30.0)
    commit_interval_seconds: float = Field(2.8, gt=0.0, le=300.0)
    """How often acked offsets are committed (Faust's `broker_commit_interval`). Shorter means
    fewer re-answered events after a crash; the tests shorten it to kill right after commits."""
    lag_interval_seconds: float = Field(2.0, gt=0.0, le=300.0)
    """How often the consumer lag and table size gauges are refreshed."""
    model_poll_seconds: float = Field(1.0, gt=0.0, le=300.0)
    """How often the model directory's card.json is checked for a new version (hot reload)."""
    web_port: int = Field(6066, ge=1, le=65535)
    inference_threads: int = Field(1, ge=1, le=256)
    """onnxruntime intra-op threads. More than one adds pool threads that spin-wait between
    runs and compete with the event loop for the CPU; batches are small, so 1 is faster."""
    stream_buffer_maxsize: int = Field(4096, ge=1, le=1_000_000)
    """Events Faust holds in the process between the fetch and the agent (its
    `stream_buffer_maxsize`; fetching pauses at 80% and resumes at 40%). Under overload
    that many events wait inside the worker: at the default 4,096 and 1,000 events/s that
    is seconds of latency. Smaller was measured worse (256: p50 1.4 s at 1,000 events/s, the
    fetch pausing and resuming all the time; streams/README.md, Benchmark)."""
    producer_linger_seconds: float = Field(0.005, ge=0.0, le=1.0)
    """How long the producer waits to fill a batch. 0 (Faust's default) sends one produce
    request per loop turn, which under load means one syscall per handful of records."""
    create_topics: bool = True
    """Create the missing contract topics at start-up (`recloop worker --no-create-topics`:
    exit naming the missing topic instead, for clusters where topics are provisioned)."""


class Settings(BaseSettings):
    """Root settings object; `load_settings()` builds it with friendly errors."""

    model_config = SettingsConfigDict(
        env_prefix="RECLOOP_", env_nested_delimiter="__", extra="forbid", yaml_file=None
    )

    bootstrap: str = "127.0.0.1:9092"
    """Comma-separated Kafka bootstrap servers."""
    client_id: str = "recloop"
    security: KafkaSecurity = KafkaSecurity()
    topics: Topics = Topics()
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=256)
    fetch_max_wait_ms: int = Field(500, ge=1, le=30_000)
    """How long a consumer's fetch may wait at the broker for new records (every consumer:
    the worker's, the simulator's, replay's). Apache Kafka answers a waiting fetch as soon as
    a record arrives, so this only bounds idle round trips there. Tansu (the embedded broker)
    re-reads its log after sleeping half of the remaining wait, so a record can wait up to
    half of this per hop: `recloop demo` and the tests use `EmbeddedBroker.client_settings()`
    (20 ms) on it."""
    worker: WorkerConfig = WorkerConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path := os.environ.get("RECLOOP_CONFIG"):
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    def kafka_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments for any aiokafka client."""
        sec = self.security
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": sec.protocol,
        }
        if sec.sasl_mechanism:
            kwargs |= {
                "sasl_mechanism": sec.sasl_mechanism,
                "sasl_plain_username": sec.sasl_username,
                "sasl_plain_password": sec.sasl_password,
            }
        if (ctx := sec.ssl_context()) is not None:
            kwargs["ssl_context"] = ctx
        return kwargs

    def consumer_kwargs(self) -> dict[str, Any]:
        """`kafka_kwargs()` plus the fetch settings, for any aiokafka consumer."""
        return self.kafka_kwargs() | {"fetch_max_wait_ms": self.fetch_max_wait_ms}


def load_settings(**overrides: Any) -> Settings:
    """Build `Settings`, turning validation errors into one `ConfigError` naming every bad key."""
    config_path = os.environ.get("RECLOOP_CONFIG")
    if config_path and not Path(config_path).is_file():
        raise ConfigError(f"RECLOOP_CONFIG={config_path!r}: no such file")
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {_shown(err)!r})"
            for err in exc.errors()
        ]
        source = f" (from {config_path} and RECLOOP_* variables)" if config_path else ""
        raise ConfigError("invalid configuration" + source + ":\n" + "\n".join(lines)) from None


def _shown(err: Any) -> Any:
    """The rejected input of a validation error, with any password masked (a whole `security`
    group is the input of its cross-field checks)."""
    value = err.get("input")
    if err["loc"] and err["loc"][-1] == "sasl_password":
        return "***"
    if isinstance(value, dict) and value.get("sasl_password"):
        return value | {"sasl_password": "***"}
    return value


def settings_env(settings: Settings) -> dict[str, str]:
    """The RECLOOP_* environment variables that rebuild `settings` in a child process.

    Used to start workers (demo, tests, benchmarks) with exactly the parent's configuration.
    """
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json", exclude_none=True).items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                if subvalue is not None:
                    env[f"RECLOOP_{name.upper()}__{sub.upper()}"] = _env_value(subvalue)
        else:
            env[f"RECLOOP_{name.upper()}"] = _env_value(value)
    return env


def _env_value(value: Any) -> str:
    # pydantic-settings reads lists and dicts from environment variables as JSON.
    return json.dumps(value) if isinstance(value, list | dict) else str(value)

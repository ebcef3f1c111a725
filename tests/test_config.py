"""Settings come from one place and bad values are reported by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.core.settings import ConfigError, load_settings


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECLOOP_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("RECLOOP_TOPICS__EVENTS", "my.events")
    monkeypatch.setenv("RECLOOP_WORKER__BATCH_SIZE", "128")
    s = load_settings()
    assert s.bootstrap == "k1:9092,k2:9092"
    assert s.topics.events == "my.events"
    assert s.worker.batch_size == 128
    assert s.kafka_kwargs()["bootstrap_servers"] == "k1:9092,k2:9092"


def test_yaml_file_and_security_pass_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "recloop.yaml"
    path.write_text(
        "bootstrap: broker:9093\n"
        "security: {protocol: SASL_PLAINTEXT, sasl_mechanism: SCRAM-SHA-512,"
        " sasl_username: sim, sasl_password: pw}\n"
        "worker: {strategy: popular}\n"
    )
    monkeypatch.setenv("RECLOOP_CONFIG", str(path))
    s = load_settings()
    kwargs = s.kafka_kwargs()
    assert s.worker.strategy == "popular"
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "sim"


def test_bad_values_name_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECLOOP_WORKER__BATCH_SIZE", "lots")
    monkeypatch.setenv("RECLOOP_WORKER__STRATEGY", "oracle")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "worker.batch_size" in message
    assert "worker.strategy" in message and "'popular'" in message


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECLOOP_CONFIG", "/nonexistent/recloop.yaml")
    with pytest.raises(ConfigError, match=r"/nonexistent/recloop\.yaml"):
        load_settings()


def test_settings_env_rebuilds_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from recloop.core.settings import Settings, Topics, WorkerConfig, settings_env

    original = Settings(
        bootstrap="k:1",
        topics=Topics(events="e", partitions=6),
        worker=WorkerConfig(strategy="popular", trigger_on=["view"], batch_size=9),
    )
    for name, value in settings_env(original).items():
        monkeypatch.setenv(name, value)
    assert load_settings() == original

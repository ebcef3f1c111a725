"""Static checks of the observability and deployment files (no broker, no Docker engine).

Dashboards are regenerated and compared with the committed JSON; promtool checks the config
and rules; every metric a query names is one the application defines; docker-compose.yml is
checked against the CLI, the settings, the Prometheus targets and the provisioning paths.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from prometheus_client import REGISTRY
from pydantic import BaseModel

import recloop.simulator.metrics
import recloop.streams.metrics  # noqa: F401 - registers the worker's metrics
from recloop.cli import app as cli_app
from recloop.core.settings import Settings
from tests.observability.promlib import (
    COMPOSE_FILE,
    DASHBOARD_DIR,
    PROMETHEUS_CONFIG,
    ROOT,
    RULES_FILE,
    dashboard_queries,
    load_dashboards_module,
    promtool,
    rule_queries,
)

PER_USER_LABELS = {"user_id", "item_id", "request_id", "event_id", "session_id", "user"}
PROMQL_WORDS = {
    "sum", "by", "rate", "histogram_quantile", "count", "or", "vector", "and", "unless",
    "delta", "le", "without", "group", "label_values", "on", "ignoring", "bool",
}  # fmt: skip


def _exported_samples() -> dict[str, set[str]]:
    """Sample name → label names, for every metric the app's modules register."""
    samples: dict[str, set[str]] = {}
    for collector in list(REGISTRY._collector_to_names):  # private: no public listing
        for family in collector.describe() if hasattr(collector, "describe") else []:
            if not family.name.startswith("recloop_"):
                continue
            labels = set(getattr(collector, "_labelnames", ()))
            suffixes = {
                "counter": ["_total"],
                "gauge": [""],
                "histogram": ["_bucket", "_sum", "_count"],
            }[family.type]
            for suffix in suffixes:
                samples[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return samples


def _recorded() -> set[str]:
    return {r.name for r in rule_queries() if r.kind == "record"}


def _metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{|\[|\)|,|$|\s)", expr))
    return {
        n
        for n in names
        if (n.startswith("recloop") or n in {"ALERTS", "up"}) and n not in PROMQL_WORDS
    }


def test_dashboards_json_is_generated_from_code(tmp_path: Path) -> None:
    module = load_dashboards_module()
    assert module.main(["--out", str(tmp_path)]) == 0
    generated = {p.name: p.read_text() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_text() for p in DASHBOARD_DIR.glob("*.json")}
    assert set(generated) == set(committed), "run `python grafana/dashboards.py` and commit"
    for name, text in generated.items():
        assert committed[name] == text, (
            f"grafana/dashboards/{name} differs from grafana/dashboards.py: "
            "run `.venv/bin/python grafana/dashboards.py` and commit the JSON"
        )


def test_promtool_accepts_config_and_rules() -> None:
    rules = promtool("check", "rules", str(RULES_FILE))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout + config.stderr


def test_every_query_names_a_metric_the_app_exports() -> None:
    exported = _exported_samples()
    known = set(exported) | _recorded() | {"ALERTS", "up"}
    queries = [(q.where, q.expr) for q in dashboard_queries()]
    queries += [(f"rule {r.name}", r.expr) for r in rule_queries()]
    assert len(queries) > 40
    for where, expr in queries:
        names = _metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        assert names <= known, f"{where}: unknown metric(s) {sorted(names - known)}"


def test_no_per_user_series() -> None:
    for name, labels in _exported_samples().items():
        assert not labels & PER_USER_LABELS, f"{name} has per-user labels {labels}"
    for q in dashboard_queries():
        grouped = re.findall(r"by \(([^)]*)\)", q.expr)
        for group in grouped:
            assert not {g.strip() for g in group.split(",")} & PER_USER_LABELS, q.where


def test_slo_thresholds_agree_between_rules_and_dashboards() -> None:
    module = load_dashboards_module()
    rules = {r.name: r.expr for r in rule_queries()}
    for window in ("5m", "1h"):
        worker = rules[f"recloop:worker_latency_slo_errors:ratio_rate{window}"]
        assert f'le="{module.WORKER_LATENCY_SLO_SECONDS}"' in worker
        users = rules[f"recloop:sim_latency_slo_errors:ratio_rate{window}"]
        assert f'le="{module.USER_LATENCY_SLO_SECONDS}"' in users
        assert 'basis="intended"' in users
    assert f"> {module.ABANDONMENT_ALERT_RATIO}" in rules["RecLoopAbandonmentHigh"]
    # The SLO line is drawn on the latency panels.
    boards = {p.name: p.read_text() for p in DASHBOARD_DIR.glob("*.json")}
    assert '"value": 0.2' in boards["recloop-overview.json"]
    assert '"value": 0.5' in boards["recloop-overview.json"]
    assert '"mode": "dashed"' in boards["recloop-recommender.json"]


def test_dashboards_have_run_and_instance_variables() -> None:
    import json

    for path in DASHBOARD_DIR.glob("*.json"):
        board = json.loads(path.read_text())
        names = {v["name"] for v in board["templating"]["list"]}
        assert {"run_id", "instance"} <= names, path.name
        assert board["uid"].startswith("recloop-")
    for q in dashboard_queries():
        if q.ref == "variable":
            continue
        if "recloop_sim_" in q.expr and "recloop:" not in q.expr:
            assert 'run_id=~"$run_id"' in q.expr, f"{q.where}: simulator query without $run_id"
        if "recloop_worker_" in q.expr:
            assert 'instance=~"$instance"' in q.expr, f"{q.where}: worker query without $instance"


# --- docker compose ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _cli_commands() -> dict[str, Any]:
    group = typer.main.get_command(cli_app)
    commands = getattr(group, "commands", None)
    assert commands, "the recloop CLI has no subcommands"
    return dict(commands)


def _settings_env_names() -> set[str]:
    """Every RECLOOP_* variable that maps onto a Settings field (nested with `__`)."""
    names: set[str] = set()

    def walk(model: type[BaseModel], prefix: str) -> None:
        for field, info in model.model_fields.items():
            key = f"{prefix}{field.upper()}"
            names.add(key)
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{key}__")

    walk(Settings, "RECLOOP_")
    return names


def _app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).startswith("recloop")
    }


def test_compose_commands_exist_in_the_cli(compose: dict[str, Any]) -> None:
    commands = _cli_commands()
    services = _app_services(compose)
    assert {"worker", "simulator", "trainer"} <= set(services)
    for name, svc in services.items():
        command = svc["command"]
        assert isinstance(command, list), f"{name}: use the exec form for command"
        sub = command[0]
        assert sub in commands, (
            f"service {name}: `recloop {sub}` does not exist ({sorted(commands)})"
        )
        options = {
            opt
            for p in commands[sub].params
            for opt in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]
        }
        for arg in command[1:]:
            if arg.startswith("--"):
                assert arg.split("=")[0] in options, f"service {name}: `recloop {sub}` has no {arg}"


def test_compose_environment_matches_settings(compose: dict[str, Any]) -> None:
    known = _settings_env_names()
    for name, svc in _app_services(compose).items():
        for var in svc.get("environment", {}):
            if var.startswith("RECLOOP_"):
                assert var in known, f"service {name}: {var} is not a setting in streams/config.py"
    worker_env = compose["services"]["worker"]["environment"]
    assert worker_env["RECLOOP_BOOTSTRAP"] == "kafka:9092"


def test_compose_kafka_is_kraft_single_node_with_topic_init(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in " ".join(env)
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    init = services["topic-init"]
    # The app's own command, on the app's image: topic names and partitions come from the
    # settings (all three contract topics by default), not from a list kept here.
    assert init["image"] == services["worker"]["image"]
    assert init["command"] == ["topics", "create"]
    assert init["environment"]["RECLOOP_BOOTSTRAP"] == "kafka:9092"
    assert (
        init["environment"]["RECLOOP_TOPICS__PARTITIONS"]
        == services["worker"]["environment"]["RECLOOP_TOPICS__PARTITIONS"]
    )
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("worker", "simulator"):
        assert services[name]["depends_on"]["topic-init"]["condition"] == (
            "service_completed_successfully"
        )


def test_compose_prometheus_targets_match_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prom = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    worker_port = int(services["worker"]["environment"]["RECLOOP_WORKER__METRICS_PORT"])
    for job_name, service, port in [
        ("recloop-worker", "worker", worker_port),
        ("recloop-simulator", "simulator", 9466),
    ]:
        sd = jobs[job_name]["dns_sd_configs"][0]
        assert sd["names"] == [service] and service in services
        assert sd["port"] == port
        assert str(port) in services[service]["expose"]
        # Scaled services must not publish a fixed host port.
        assert "ports" not in services[service]
    # Rules are mounted where the config looks for them.
    mount = next(v for v in services["prometheus"]["volumes"] if v.startswith("./prometheus:"))
    assert mount.split(":")[1] == "/etc/prometheus"
    assert "rules/*.yml" in prom["rule_files"]


def test_compose_grafana_provisioning(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = dict(v.removesuffix(":ro").split(":", 1) for v in grafana["volumes"])
    for host in mounts:
        assert (ROOT / host).exists(), f"grafana mounts missing path {host}"
    inverse = {target: host for host, target in mounts.items()}
    provisioning = ROOT / inverse["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    ds = datasource["datasources"][0]
    assert ds["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    assert ds["uid"] == load_dashboards_module().DATASOURCE.uid
    providers = yaml.safe_load((provisioning / "dashboards" / "recloop.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    assert path in inverse, f"dashboard provider path {path} is not mounted"
    assert list((ROOT / inverse[path]).glob("*.json")), "no dashboards in the mounted folder"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / inverse[str(Path(home).parent)] / Path(home).name).is_file()


def test_dockerfile_runtime_has_no_tensorflow() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    named = {s.split()[2]: s for s in stages if " AS " in s.split("\n")[0]}
    assert set(named) == {"runtime", "train"}
    assert named["runtime"].startswith("python:3.11-slim")
    assert "pip install ." in named["runtime"] and "[train]" not in named["runtime"]
    assert 'pip install ".[train]"' in named["train"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored

"""Helpers for the observability tests: the queries of every dashboard and rule, a real
Prometheus process (Debian's package) on loopback, and a test copy of the rules.

The committed rules file stays the one source of truth for expressions; the test copy only
shortens `for:` so an alert can fire within a short run.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.support import require_tool

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "prometheus" / "rules" / "recloop.yml"
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
COMPOSE_FILE = ROOT / "docker-compose.yml"


class PrometheusError(RuntimeError):
    """Prometheus could not be started, or a query failed."""


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL target of a dashboard panel (or a template variable's query)."""

    dashboard: str
    panel: str
    ref: str
    expr: str

    @property
    def where(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}"


@dataclass(frozen=True)
class RuleQuery:
    """A recording or alerting rule of the committed rules file."""

    group: str
    name: str
    kind: str  # "record" or "alert"
    expr: str
    for_: str | None


def load_dashboards_module() -> ModuleType:
    """grafana/dashboards.py, imported from its path (grafana/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "recloop_grafana_dashboards", ROOT / "grafana" / "dashboards.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    # Registered before running: dataclasses resolve string annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels") or []))
    return out


def dashboard_queries() -> list[PanelQuery]:
    """Every panel target of every committed dashboard, plus each query variable."""
    queries: list[PanelQuery] = []
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in _panels(board.get("panels", [])):
            for target in panel.get("targets") or []:
                queries.append(
                    PanelQuery(board["uid"], panel["title"], target["refId"], target["expr"])
                )
        for var in board.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                queries.append(
                    PanelQuery(board["uid"], f"${var['name']}", "variable", var["query"])
                )
    return queries


def rule_queries(path: Path = RULES_FILE) -> list[RuleQuery]:
    """Every rule of the rules file, in order."""
    doc = yaml.safe_load(path.read_text())
    return [
        RuleQuery(
            group["name"],
            rule.get("record") or rule["alert"],
            "record" if "record" in rule else "alert",
            rule["expr"].strip(),
            rule.get("for"),
        )
        for group in doc["groups"]
        for rule in group["rules"]
    ]


def write_test_rules(dest: Path, for_seconds: int = 3) -> Path:
    """A copy of the committed rules with every `for:` shortened (expressions untouched)."""
    doc = yaml.safe_load(RULES_FILE.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{for_seconds}s"
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def alerting_prometheus(tmp: Path, scrape_configs: list[dict[str, Any]]) -> Prometheus:
    """A Prometheus scraping `scrape_configs` every second and evaluating the shipped alert
    rules with their `for:` shortened to 3 s (`write_test_rules`); not started yet."""
    from recloop.brokers import free_port

    rules = write_test_rules(tmp / "rules.yml", for_seconds=3)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": scrape_configs,
    }
    return Prometheus(config, free_port(), tmp / "prometheus")


def label_values_as_promql(expr: str) -> str:
    """`label_values(metric, label)` (a Grafana variable query) as PromQL with the same data."""
    inner = expr.strip().removeprefix("label_values(").removesuffix(")")
    metric, label = (part.strip() for part in inner.rsplit(",", 1))
    return f"group by ({label}) ({metric})"


def bind(expr: str, variables: dict[str, str], rate_interval: str = "5s") -> str:
    """Substitute Grafana's template variables the way Grafana would for one selection."""
    if expr.startswith("label_values("):
        expr = label_values_as_promql(expr)
    expr = expr.replace("$__rate_interval", rate_interval)
    for name, value in variables.items():
        expr = expr.replace(f"${name}", value)
    if "$" in expr.replace("$labels", "").replace("$value", ""):
        raise ValueError(f"unbound template variable in {expr!r}")
    return expr


class Prometheus:
    """A real Prometheus process on 127.0.0.1 with temporary storage."""

    def __init__(self, config: dict[str, Any], port: int, workdir: Path | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="recloop-prom-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = self.workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Prometheus:
        binary = require_tool("prometheus")
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited:\n{self.log()}")
            try:
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).read()
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; returns `data`, raising PrometheusError with the API's error."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=20) as r:
                body = json.load(r)
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict]:
        """The series `expr` returns at any step between start and end (NaN-only ones dropped)."""
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        return [
            s
            for s in data["result"]
            if any(v[1] not in ("NaN", "+Inf", "-Inf") for v in s["values"])
        ]

    def targets_up(self) -> dict[str, bool]:
        """Scrape URL → whether the last scrape succeeded."""
        data = self.api("targets")
        return {t["scrapeUrl"]: t["health"] == "up" for t in data["activeTargets"]}

    def alerts(self) -> list[dict[str, Any]]:
        return self.api("alerts")["alerts"]

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; the result carries stdout/stderr for assertion messages."""
    binary = require_tool("promtool")
    return subprocess.run(
        [binary, *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
    )

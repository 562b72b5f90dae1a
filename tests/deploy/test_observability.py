"""Prometheus and Grafana for docker compose's ``observability`` profile (issue 19, item 9): the alert
rules and the dashboard ask for figures the services really serve, the scrape reaches them the way
the files say (targets, bearer token written by the bootstrap), and the compose wiring points at
files that exist.

No Docker engine exists here, so Prometheus and Grafana themselves do not run: the metric and label
names of every alert and panel are checked against a live scrape of the six services, and when
``promtool`` is on PATH it checks the config and the rules and runs deploy/prometheus/alerts.test.yml
(it is not part of the wheels the suite installs; Debian's ``prometheus`` package has it).
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy import compose_shim
from tests.support import ROOT, SERVICES, Ecosystem

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
PROMETHEUS = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
ALERTS = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
DASHBOARD = json.loads((GRAFANA_DIR / "dashboards" / "kizuna.json").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OPERATIONS = ROOT / "docs" / "operations.md"
HOST_TOOLS = "/usr/bin:/bin"  # what an operator's machine has; no docker, so the bootstrap skips its check
TARGET_LABELS = {"job", "instance"}  # Prometheus adds these to every scraped series
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "offset", "inf", "nan"}


def rules() -> list[dict[str, Any]]:
    return [rule for group in ALERTS["groups"] for rule in group["rules"]]


def panels() -> list[dict[str, Any]]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) with Grafana's variables filled as Grafana would for 'All'."""
    return [(panel["title"], target["expr"].replace("$__rate_interval", "1m").replace("$service", ".*"))
            for panel in panels() for target in panel["targets"]]


def expressions() -> list[tuple[str, str]]:
    return [(rule["alert"], rule["expr"]) for rule in rules()] + dashboard_queries()


def selectors(expr: str) -> tuple[list[tuple[str, dict[str, str]]], set[str]]:
    """The metric selectors of a PromQL expression (name, {label: value}) and the labels named in its
    by/without/on/ignoring clauses. Enough PromQL for these files: strings, ranges, functions, numbers."""
    strings: list[str] = []

    def keep(match: re.Match[str]) -> str:
        strings.append(json.loads(match[0]))
        return f'"{len(strings) - 1}"'

    text = re.sub(r'"(?:[^"\\]|\\.)*"', keep, expr)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range durations
    grouping: set[str] = set()
    for clause in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        grouping |= {label.strip() for label in clause[1].split(",") if label.strip()}
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    found = []
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)\s*(\{([^}]*)\})?(\s*\()?", text):
        name, matchers, call = match[1], match[3], match[4]
        if call or name.lower() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        labels = {label: strings[int(index)] for label, index in
                  re.findall(r'([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*"(\d+)"', matchers or "")}
        found.append((name, labels))
    return found, grouping


def test_the_promql_reader_finds_names_labels_and_histogram_series() -> None:
    found, grouping = selectors('histogram_quantile(0.99, sum by (service, le) (rate(x_seconds_bucket{route!="/a{b}"}'
                                '[5m]))) > 1e3 and on(service) up{job="kizuna"} == 0')
    assert found == [("x_seconds_bucket", {"route": "/a{b}"}), ("up", {"job": "kizuna"})]
    assert grouping == {"service", "le"}


# ---- the files themselves ----

def test_every_rule_has_a_duration_a_severity_and_says_what_to_do() -> None:
    anchors = {re.sub(r"[^\w\- ]", "", heading).strip().lower().replace(" ", "-")
               for heading in re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), re.M)}
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)) >= 12
    for rule in rules():
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]) and not rule["for"].startswith("0"), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and len(annotations["description"]) > 80, rule["alert"]
        page, _, anchor = annotations["runbook"].partition("#")
        assert page == "docs/operations.md" and anchor in anchors, (rule["alert"], anchor)
    # The alerts the operator guide promises (docs/operations.md, "Metrics and alerts").
    guide = OPERATIONS.read_text()
    for name in names:
        assert f"`{name}`" in guide, f"docs/operations.md does not explain {name}"


def test_prometheus_scrapes_the_compose_services_with_the_token_bootstrap_writes() -> None:
    assert PROMETHEUS["global"]["scrape_interval"] == "15s"
    assert [(PROMETHEUS_DIR / path).resolve() for path in PROMETHEUS["rule_files"]] == [PROMETHEUS_DIR / "alerts.yml"]
    (job,) = PROMETHEUS["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["authorization"].get("type", "Bearer") == "Bearer"
    targets = {target for config in job["static_configs"] for target in config["targets"]}
    compose_ports = {f"{name}:{COMPOSE['services'][name]['environment']['KIZUNA_HTTP_PORT']}" for name in SERVICES}
    assert targets == compose_ports
    # Relative to prometheus.yml, which the container has in /etc/prometheus, as the whole folder.
    token_file = PROMETHEUS_DIR / job["authorization"]["credentials_file"]
    prometheus = COMPOSE["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    bootstrap = (ROOT / "deploy" / "bootstrap.sh").read_text()
    assert f"METRICS_TOKEN={token_file.relative_to(ROOT)}\n" in bootstrap
    ignored = subprocess.run(["git", "check-ignore", "-q", str(token_file.relative_to(ROOT))], cwd=ROOT)
    assert ignored.returncode == 0, "the metrics token file must be ignored by git"


def test_prometheus_and_grafana_are_pinned_checked_and_mount_files_that_exist() -> None:
    for name in ("prometheus", "grafana"):
        service = COMPOSE["services"][name]
        assert service["profiles"] == ["observability"], name
        _image, _, tag = service["image"].partition(":")
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin a release, not {service['image']!r}"
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), "no UI on every interface"
        binds = [volume for volume in service["volumes"] if volume.startswith("./")]
        assert binds, name
        for volume in binds:
            source, _target, mode = volume.split(":")
            assert mode == "ro" and (ROOT / source).exists(), volume
    assert COMPOSE["services"]["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert {"prometheus-data", "grafana-data"} <= set(COMPOSE["volumes"])


def _container_path(service: str, path: str) -> Path:
    """A path inside a container → the checkout's file behind it (through the service's bind mounts)."""
    for volume in COMPOSE["services"][service]["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("./") and (path == target or path.startswith(target + "/")):
            return ROOT / source / path[len(target):].lstrip("/")
    raise AssertionError(f"{path} is not mounted into {service}")


def test_grafana_provisions_prometheus_and_the_dashboard() -> None:
    provisioning = _container_path("grafana", "/etc/grafana/provisioning")
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "kizuna.yml").read_text())["providers"]
    dashboards = _container_path("grafana", provider["options"]["path"])
    assert sorted(p.name for p in dashboards.glob("*.json")) == ["kizuna.json"]
    home = COMPOSE["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _container_path("grafana", home).exists()

    assert DASHBOARD["schemaVersion"] == 39 and DASHBOARD["uid"] and DASHBOARD["title"]
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"] and target["expr"], panel["title"]
    (variable,) = DASHBOARD["templating"]["list"]
    assert variable["datasource"]["uid"] == datasource["uid"]


def test_the_bootstrap_writes_the_same_metrics_token_for_the_services_and_prometheus(
        bootstrapped: Path, tmp_path: Path) -> None:
    shared = compose_shim.read_env_file(bootstrapped / "deploy" / "kizuna.env")
    token_file = bootstrapped / "deploy" / "prometheus" / "metrics-token"
    assert re.fullmatch(r"[0-9a-f]{64}", shared["KIZUNA_METRICS_TOKEN"])
    assert token_file.read_text() == shared["KIZUNA_METRICS_TOKEN"]  # no newline: it is the whole credential
    # Prometheus runs as nobody, not as the file's owner: others must read it. The secrets stay 0600.
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o644
    for name in (".env", "deploy/kizuna.env", "deploy/gateway.env", "deploy/identity.env"):
        assert stat.S_IMODE((bootstrapped / name).stat().st_mode) == 0o600, name

    # A token file left over stops the first-time bootstrap before it writes anything.
    fresh = _scratch(tmp_path / "again")
    (fresh / "deploy" / "prometheus" / "metrics-token").write_text("old")
    refused = _bootstrap(fresh)
    assert refused.returncode != 0 and "refusing to overwrite" in refused.stderr
    assert not (fresh / ".env").exists() and not list(fresh.rglob("*.new"))
    assert (fresh / "deploy" / "prometheus" / "metrics-token").read_text() == "old"


def _scratch(target: Path) -> Path:
    target.mkdir(parents=True)
    shutil.copy2(ROOT / "docker-compose.yml", target)
    shutil.copytree(ROOT / "deploy", target / "deploy", ignore=shutil.ignore_patterns(
        "kizuna.env", "gateway.env", "identity.env", "metrics-token", "kubernetes"))
    return target


def _bootstrap(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(project / "deploy" / "bootstrap.sh")], cwd=project, capture_output=True,
                          text=True, env={"PATH": HOST_TOOLS, "HOME": str(project)}, timeout=60)


@pytest.fixture
def bootstrapped(tmp_path: Path) -> Path:
    project = _scratch(tmp_path / "kizuna")
    result = _bootstrap(project)
    assert result.returncode == 0, result.stderr
    return project


# ---- against the running services ----

def _families(text: str) -> dict[str, tuple[set[str], set[str]]]:
    """Per metric family in a scrape: the series names PromQL can select (a histogram's _bucket, _count
    and _sum, a counter's _total) and its label names (from its samples)."""
    families: dict[str, tuple[set[str], set[str]]] = {}
    for family in text_string_to_metric_families(text):
        series = {"counter": {f"{family.name}_total"},
                  "histogram": {f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum")},
                  }.get(family.type, {family.name})
        labels = {label for sample in family.samples for label in sample.labels}
        names, known = families.setdefault(family.name, (set(), set()))
        names |= series
        known |= labels
    return families


async def test_every_alert_and_panel_asks_for_figures_the_services_serve(
        ecosystem: Ecosystem, bootstrapped: Path) -> None:
    """Scraped as prometheus.yml says (path, bearer token from the file bootstrap wrote), with a dead
    federation message and a request to the live event stream so those series have labels to check."""
    token = (bootstrapped / "deploy" / "prometheus" / "metrics-token").read_text()
    service_token = compose_shim.read_env_file(bootstrapped / "deploy" / "kizuna.env")["KIZUNA_METRICS_TOKEN"]
    ecosystem.start(*SERVICES, KIZUNA_METRICS_TOKEN=service_token)
    conn = await asyncpg.connect(ecosystem.database_url("gateway"))
    try:
        await conn.execute("INSERT INTO federation_outbox (message_id, partnership_id, community_id, destination, "
                           "type, body, status) VALUES ($1, 'p-1', 'c-1', 'https://partner.example', 'offer', '{}', "
                           "'dead')", uuid.uuid4())
    finally:
        await conn.close()
    (job,) = PROMETHEUS["scrape_configs"]
    headers = {"Authorization": f"{job['authorization'].get('type', 'Bearer')} {token}"}
    families: dict[str, tuple[set[str], set[str]]] = {}
    routes: set[str] = set()
    async with httpx.AsyncClient(timeout=15) as http:
        stream = await http.get(f"{ecosystem.url('gateway')}/v1/communities/c-1/events")
        assert stream.status_code == 401  # counted under its route template all the same
        for target in (t for config in job["static_configs"] for t in config["targets"]):
            service = target.split(":")[0]
            scraped = await http.get(f"{ecosystem.url(service)}{job.get('metrics_path', '/metrics')}", headers=headers)
            assert scraped.status_code == 200, (service, scraped.text)
            for name, (series, labels) in _families(scraped.text).items():
                if name.startswith("kizuna_"):
                    known_series, known_labels = families.setdefault(name, (set(), set()))
                    known_series |= series
                    known_labels |= labels
            routes |= set(re.findall(r'route="([^"]*)"', scraped.text))
    series_labels: dict[str, set[str]] = {"up": set()}
    for names, labels in families.values():
        for series_name in names:
            series_labels[series_name] = labels
    assert "kizuna_federation_outbox_messages" in series_labels and "kizuna_http_requests_total" in series_labels

    used: set[str] = set()
    for where, expr in expressions():
        found, grouping = selectors(expr)
        assert found, (where, expr)
        for name, matchers in found:
            assert name in series_labels, f"{where}: {name} is not served by any service"
            assert set(matchers) <= series_labels[name] | TARGET_LABELS, (where, name, matchers)
            if "route" in matchers:
                assert matchers["route"] in routes, f"{where}: no route {matchers['route']!r}"
            used.add(name)
        available = set().union(*(series_labels[name] for name, _ in found)) | TARGET_LABELS
        assert grouping <= available, (where, grouping - available)
    # Every figure the services serve is on the dashboard or in an alert.
    on_dashboard = {name for _, expr in dashboard_queries() for name, _ in selectors(expr)[0]}
    for family, (names, _labels) in families.items():
        assert names & on_dashboard, f"{family} has no panel"
    assert used


# ---- promtool, where it is installed ----

@pytest.fixture
def promtool() -> Iterator[str]:
    path = shutil.which("promtool")
    if path is None:
        # Not a wheel: the suite cannot install it (apt's `prometheus` package or a Prometheus release
        # has it). The checks above do not need it; these add Prometheus' own parser and rule tests.
        pytest.skip("promtool is not on PATH; Prometheus' own checks of the config and rules not run")
    yield path


def test_promtool_accepts_the_config_and_the_rules_and_the_rule_tests_pass(promtool: str, tmp_path: Path) -> None:
    folder = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, folder, ignore=shutil.ignore_patterns("metrics-token"))
    (folder / "metrics-token").write_text("a-token")  # bootstrap's file, which promtool wants to exist
    for command in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                    ["test", "rules", "alerts.test.yml"]):
        result = subprocess.run([promtool, *command], cwd=folder, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"promtool {' '.join(command)}\n{result.stdout}\n{result.stderr}"


def test_promtool_parses_every_dashboard_query(promtool: str, tmp_path: Path) -> None:
    recording = [{"record": f"dashboard:query_{n}", "expr": expr} for n, (_, expr) in enumerate(dashboard_queries())]
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}))
    result = subprocess.run([promtool, "check", "rules", str(tmp_path / "dashboard.yml")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr

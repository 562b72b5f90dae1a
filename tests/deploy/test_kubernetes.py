"""The Kubernetes stack as `kubectl apply -k deploy/kubernetes` would send it, checked without a cluster.

kustomize renders it (the real kubectl); every resource is validated against the Kubernetes API's schemas
(kubernetes-validate, offline) and CloudNativePG's CRD schemas (deploy/kubernetes/schemas); then what no
schema says: a numeric user wherever runAsNonRoot is set, every Secret and ConfigMap defined or created by the
commands of docs/operations.md (which this runs, dry-run), probes on routes the services serve, a connection
budget within max_connections, backups, an Ingress, synchronous replication, the key vault every kizuna container
reads (with backups kept 7 days at most), and a lock file that holds pyproject.toml's pins."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from kizuna.auth import load_private_key, public_pem
from kizuna.settings import ServiceSettings
from tests.support import ROOT, Ecosystem

K8S = ROOT / "deploy" / "kubernetes"
SCHEMAS = K8S / "schemas"
OPERATIONS = ROOT / "docs" / "operations.md"
KUBERNETES_VERSION = "1.32.0"
SUPERUSER_RESERVED_CONNECTIONS = 3  # PostgreSQL's default, which the Cluster keeps
SERVICE_PORTS = {"members": 8101, "referrals": 8102, "sessions": 8103, "identity": 8104, "notifications": 8105,
                 "gateway": 8000}
BEHIND_GATEWAY = ("members", "referrals", "sessions", "notifications")  # KIZUNA_SERVICE_URLS, in this order
# The services that write to people (sign-in links, notifications): only they get the SMTP settings.
MAIL_SENDERS = ("identity", "notifications")
VAULT = "kizuna-keys"  # the key vault's own Cluster (keys-cnpg.yaml), with its database and pooler
VAULT_DATABASE = "kizuna_keys"
VAULT_BACKUP_DAYS = 7  # docs/data-rights.md, "Keys, backups and retention": an erased key is in no backup after

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not installed")


def _kubectl(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["kubectl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@functools.cache
def rendered() -> tuple[dict[str, Any], ...]:
    return tuple(doc for doc in yaml.safe_load_all(_kubectl("kustomize", str(K8S))) if doc)


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered() if doc["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    return doc


def examples() -> list[dict[str, Any]]:
    return [doc for path in sorted((K8S / "examples").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
            if doc]


# ---------------------------------------------------------------- schemas


def _closed(schema: Any) -> Any:
    """A CRD schema as the API server applies it: fields it does not know are pruned, so here they are errors
    (a misspelt field would otherwise pass and silently do nothing)."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if ("properties" in closed and "additionalProperties" not in closed
            and not closed.get("x-kubernetes-preserve-unknown-fields")):
        closed["additionalProperties"] = False
    return closed


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in SCHEMAS.glob("*.json"):
        crd = json.loads(path.read_text())
        schemas[(f"{crd['group']}/{crd['version']}", crd["kind"])] = _closed(crd["openAPIV3Schema"])
    return schemas


def validate(doc: dict[str, Any]) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in crd_schemas():
        jsonschema.validate(doc, crd_schemas()[key])
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@needs_kubectl
def test_every_resource_is_valid_against_its_schema() -> None:
    for doc in [*rendered(), *examples()]:
        try:
            validate(doc)
        except Exception as error:
            pytest.fail(f"{doc['kind']} {doc['metadata'].get('name')}: {error}")


def test_a_crd_schema_refuses_what_the_operator_would_drop() -> None:
    """The CRD check can fail: a misspelt field and a wrong type are refused."""
    cluster = next(yaml.safe_load_all((K8S / "postgres-cnpg.yaml").read_text()))
    for field, value in (("synchronus", {"method": "any", "number": 1}), ("instances", "three")):
        with pytest.raises(jsonschema.ValidationError):
            validate({**cluster, "spec": {**cluster["spec"], field: value}})


@needs_kubectl
def test_nothing_uses_the_deprecated_barman_object_store() -> None:
    for doc in [*rendered(), *examples()]:
        assert "barmanObjectStore" not in json.dumps(doc), doc["metadata"]


# ---------------------------------------------------------------- what schemas cannot say


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(doc["metadata"]["name"], doc["spec"]["template"]["spec"]) for doc in docs
            if doc["kind"] in ("Deployment", "StatefulSet", "Job")]


@needs_kubectl
def test_run_as_non_root_always_comes_with_a_numeric_user_the_image_runs_as() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    [user] = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"\d+:\d+", user), f"USER {user}: runAsNonRoot can only verify a numeric user"
    uid, gid = (int(part) for part in user.split(":"))
    checked = 0
    for name, spec in pod_specs([*rendered(), *examples()]):
        for container in spec["containers"]:
            context = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
            if context.get("runAsNonRoot"):
                assert isinstance(context.get("runAsUser"), int) and context["runAsUser"] > 0, name
                assert isinstance(context.get("runAsGroup"), int), name
                if "kizuna" in container["image"]:
                    assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), name
                checked += 1
    assert checked >= 5


@needs_kubectl
def test_the_image_is_named_once_and_every_service_runs_it() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    [image] = kustomization["images"]
    assert image["name"] == "kizuna" and image["newName"] and image["newTag"]
    for name, spec in pod_specs(by_kind("Deployment")):
        [container] = spec["containers"]
        assert container["image"] == f"{image['newName']}:{image['newTag']}", name
    others = [p for p in [*K8S.glob("*.yaml"), *K8S.glob("examples/*.yaml")] if p.name != "kustomization.yaml"]
    assert not [p.name for p in others if image["newName"] in p.read_text()], "the name is written twice"
    make = subprocess.run(["make", "-n", "image"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert f"docker build --pull -t {image['newName']}:{image['newTag']} ." in make.stdout, make.stdout + make.stderr


@needs_kubectl
def test_probes_use_the_routes_and_ports_the_services_serve() -> None:
    from kizuna.service import health_router

    routes = {route.path for route in health_router().routes}  # type: ignore[attr-defined]
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    assert set(deployments) == set(SERVICE_PORTS)
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        assert spec["replicas"] >= 2, name
        [container] = spec["template"]["spec"]["containers"]
        assert container["args"] == [f"services.{name}"]
        env = {item["name"]: item.get("value") for item in container["env"]}
        [port] = container["ports"]
        assert port["containerPort"] == int(env["KIZUNA_HTTP_PORT"]) == SERVICE_PORTS[name]
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path and path in routes, (name, probe)
            assert get["port"] in (port["name"], port["containerPort"]), (name, probe)
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


@needs_kubectl
def test_selectors_and_targets_resolve() -> None:
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in by_kind("Deployment") + by_kind("StatefulSet")]
    for kind in ("Service", "PodDisruptionBudget"):
        for doc in by_kind(kind):
            selector = doc["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert any(selector.items() <= labels.items() for labels in pod_labels), doc["metadata"]["name"]
    deployments = {d["metadata"]["name"] for d in by_kind("Deployment")}
    for hpa in by_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    # Every service has its disruption budget and its autoscaler (the connection budget counts its maximum).
    assert {hpa["spec"]["scaleTargetRef"]["name"] for hpa in by_kind("HorizontalPodAutoscaler")} == deployments
    assert {pdb["spec"]["selector"]["matchLabels"].get("app") for pdb in by_kind("PodDisruptionBudget")} >= deployments
    assert all(doc["metadata"].get("namespace", "kizuna") == "kizuna" for doc in rendered())


@needs_kubectl
def test_nats_is_a_three_node_jetstream_cluster_listed_in_the_services_setting() -> None:
    [nats] = by_kind("StatefulSet")
    assert nats["spec"]["replicas"] == 3
    config = named("ConfigMap", "nats-config")["data"]["nats.conf"]
    assert "sync_interval: always" in config and "cluster" in config
    kizuna = named("ConfigMap", "kizuna-config")["data"]
    assert kizuna["KIZUNA_JETSTREAM_REPLICAS"] == "3"
    from kizuna.bus import server_list

    assert server_list(kizuna["KIZUNA_NATS_URL"]) == [f"nats://nats-{i}.nats:4222" for i in range(3)]
    known = {f"KIZUNA_{field.upper()}" for field in ServiceSettings.model_fields}
    assert set(kizuna) <= known


@needs_kubectl
def test_no_secret_is_in_the_applied_set() -> None:
    assert by_kind("Secret") == []
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert not any("secret" in resource for resource in kustomization["resources"])
    assert "replace-me" not in _kubectl("kustomize", str(K8S))


@needs_kubectl
def test_an_ingress_sends_the_public_host_to_the_gateway_over_tls() -> None:
    [ingress] = by_kind("Ingress")
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    assert path["path"] == "/" and path["backend"]["service"]["name"] == "gateway"
    gateway_ports = {port["name"] for port in named("Service", "gateway")["spec"]["ports"]}
    assert path["backend"]["service"]["port"]["name"] in gateway_ports
    [tls] = ingress["spec"]["tls"]
    assert rule["host"] in tls["hosts"] and tls["secretName"]


@needs_kubectl
def test_acknowledged_writes_survive_a_failover_and_backups_are_scheduled() -> None:
    cluster = named("Cluster", "kizuna-pg")["spec"]
    synchronous = cluster["postgresql"]["synchronous"]
    assert cluster["instances"] >= 3 and synchronous["number"] >= 1
    assert synchronous["method"] in ("any", "first") and synchronous["dataDurability"] == "required"
    [plugin] = cluster["plugins"]
    assert plugin["name"] == "barman-cloud.cloudnative-pg.io" and plugin["isWALArchiver"]
    store = named("ObjectStore", plugin["parameters"]["barmanObjectName"])["spec"]
    assert store["configuration"]["destinationPath"].startswith("s3://") and store["retentionPolicy"]
    scheduled = {doc["spec"]["cluster"]["name"]: doc for doc in by_kind("ScheduledBackup")}
    assert set(scheduled) == {"kizuna-pg", VAULT}  # each cluster has its nightly backup
    for nightly in scheduled.values():
        assert nightly["spec"]["method"] == "plugin"
        assert nightly["spec"]["pluginConfiguration"]["name"] == plugin["name"]
        assert len(nightly["spec"]["schedule"].split()) == 6  # CloudNativePG's cron has seconds first


# ---------------------------------------------------------------- the connection budget


def pool_size(container: dict[str, Any]) -> int:
    env = {item["name"]: item.get("value") for item in container["env"]}
    return int(env.get("KIZUNA_DATABASE_POOL_SIZE") or ServiceSettings.model_fields["database_pool_size"].default)


def connections_per_pod(name: str, pool: int) -> int:
    """The pool, the relay's own connection, and the gateway's listener (libs/kizuna/relay.py,
    services/gateway/memory.py); test_a_pod_opens_no_more_than_its_budget measures it."""
    return pool + 1 + (1 if name == "gateway" else 0)


@needs_kubectl
def test_the_connection_budget_fits_max_connections_through_the_pooler() -> None:
    maxima = {hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"]["maxReplicas"]
              for hpa in by_kind("HorizontalPodAutoscaler")}
    per_database = {}
    for name, spec in pod_specs(by_kind("Deployment")):
        [container] = spec["containers"]
        per_database[name] = maxima[name] * connections_per_pod(name, pool_size(container))
    total = sum(per_database.values())
    cluster = named("Cluster", "kizuna-pg")["spec"]
    max_connections = int(cluster["postgresql"]["parameters"]["max_connections"])
    assert total <= max_connections - SUPERUSER_RESERVED_CONNECTIONS - 20, (total, per_database)
    assert f"**{total}**" in OPERATIONS.read_text(), "docs/operations.md's table must show this total"
    pooler = named("Pooler", "kizuna-pg-pooler-rw")
    assert pooler["spec"]["cluster"]["name"] == "kizuna-pg" and pooler["spec"]["type"] == "rw"
    bouncer = pooler["spec"]["pgbouncer"]
    # Session mode (advisory locks, LISTEN): a client never waits when one instance can take a database's all.
    assert bouncer["poolMode"] == "session"
    assert int(bouncer["parameters"]["default_pool_size"]) >= max(per_database.values())
    assert int(bouncer["parameters"]["max_client_conn"]) >= total


def vault_pool_size() -> int:
    """The most connections a process's key vault pool opens (KeyVault.open's default, which services use)."""
    import inspect

    from kizuna.vault import KeyVault

    return int(inspect.signature(KeyVault.open).parameters["max_size"].default)


@needs_kubectl
def test_the_key_vault_budget_fits_its_own_cluster_through_its_pooler() -> None:
    """Every pod of every service holds a vault pool besides its own database's: at the autoscalers' maxima that
    is the vault's total, and a rebuild's vault pool (its replay workers and one) comes on top."""
    from kizuna.rebuild import REPLAY_WORKERS

    maxima = {hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"]["maxReplicas"]
              for hpa in by_kind("HorizontalPodAutoscaler")}
    assert set(maxima) == set(SERVICE_PORTS)
    total = sum(maxima.values()) * vault_pool_size()
    cluster = named("Cluster", VAULT)["spec"]
    max_connections = int(cluster["postgresql"]["parameters"]["max_connections"])
    assert total + REPLAY_WORKERS + 1 <= max_connections - SUPERUSER_RESERVED_CONNECTIONS - 20, total
    assert f"**{total}**" in OPERATIONS.read_text(), "docs/operations.md's vault row must show this total"
    pooler = named("Pooler", f"{VAULT}-pooler-rw")
    assert pooler["spec"]["cluster"]["name"] == VAULT and pooler["spec"]["type"] == "rw"
    bouncer = pooler["spec"]["pgbouncer"]
    assert bouncer["poolMode"] == "session"  # the vault's advisory lock while it creates its table
    assert int(bouncer["parameters"]["default_pool_size"]) >= total  # one database: every client on one instance
    assert int(bouncer["parameters"]["max_client_conn"]) >= total


def test_a_pod_opens_no_more_than_its_budget(ecosystem: Ecosystem) -> None:
    """A real members process with the pool size the Deployment sets, under more concurrent requests than its
    pool: PostgreSQL sees at most pool + relay connections from it (before the setting: 11)."""
    members_deployment = next(yaml.safe_load_all((K8S / "services.yaml").read_text()))
    [container] = members_deployment["spec"]["template"]["spec"]["containers"]
    pool = pool_size(container)
    [members] = ecosystem.start("members", KIZUNA_DATABASE_POOL_SIZE=str(pool)).values()
    database = ecosystem.env("members")["KIZUNA_DATABASE_URL"].rsplit("/", 1)[1]
    vault = ecosystem.env("members")["KIZUNA_KEYS_DATABASE_URL"].rsplit("/", 1)[1]

    async def load_and_count() -> tuple[int, int]:
        async with httpx.AsyncClient(base_url=members.url, timeout=10) as http:
            for _ in range(5):
                await asyncio.gather(*(http.get("/readyz") for _ in range(40)))
        conn = await asyncpg.connect(ecosystem.postgres.create_database("postgres"))
        try:
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
            return int(await conn.fetchval(query, database)), int(await conn.fetchval(query, vault))
        finally:
            await conn.close()

    opened, vault_opened = asyncio.run(load_and_count())
    assert 1 < opened <= connections_per_pod("members", pool), opened
    assert 1 <= vault_opened <= vault_pool_size(), vault_opened  # the vault's budget counts this pool


# ---------------------------------------------------------------- the key vault


def kizuna_containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, container) for name, spec in pod_specs(docs) for container in spec["containers"]
            if container["image"] == "kizuna" or "/kizuna:" in container["image"]]


@needs_kubectl
def test_every_kizuna_container_reads_the_one_key_vault_from_the_secret() -> None:
    """Every service (and the rebuild Job, which opens sealed fields as it replays) reads KIZUNA_KEYS_DATABASE_URL
    from the `keys` entry of kizuna-database-urls, key by key like its own database's URL: one left out would store
    its events unsealed and read everyone else's as erased."""
    containers = kizuna_containers([*rendered(), *examples()])
    deployments = {name for name, _ in kizuna_containers(by_kind("Deployment"))}
    assert deployments == set(SERVICE_PORTS) and "rebuild-members" in {name for name, _ in containers}
    for name, container in containers:
        env = {item["name"]: item for item in container.get("env", [])}
        assert "KIZUNA_KEYS_DATABASE_URL" in env, f"{name} has no key vault: it would run unsealed"
        assert env["KIZUNA_KEYS_DATABASE_URL"] == {
            "name": "KIZUNA_KEYS_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "kizuna-database-urls", "key": "keys"}}}, name
    for config_map in by_kind("ConfigMap"):  # not a second source that could say otherwise
        assert "KIZUNA_KEYS_DATABASE_URL" not in config_map.get("data", {}), config_map["metadata"]["name"]


def retention_days(policy: str) -> int:
    amount, unit = re.fullmatch(r"(\d+)([dwm])", policy).groups()  # type: ignore[union-attr]
    return int(amount) * {"d": 1, "w": 7, "m": 31}[unit]


@needs_kubectl
def test_the_vault_is_a_durable_cluster_of_its_own_whose_backups_last_7_days_at_most() -> None:
    """kizuna_keys is not in kizuna-pg (whose 30 days of backups would keep erased keys), replicates synchronously
    (a lost key is lost data), and its own store forgets a backup within 7 days: Barman keeps the recovery window
    plus the base backup before it, at most one nightly interval older."""
    pg_initdb = named("Cluster", "kizuna-pg")["spec"]["bootstrap"]["initdb"]
    assert VAULT_DATABASE not in {pg_initdb["database"], *" ".join(pg_initdb.get("postInitSQL", [])).split()}
    cluster = named("Cluster", VAULT)["spec"]
    assert cluster["bootstrap"]["initdb"]["database"] == VAULT_DATABASE
    assert cluster["bootstrap"]["initdb"]["owner"] == pg_initdb["owner"]
    synchronous = cluster["postgresql"]["synchronous"]
    assert cluster["instances"] >= 3 and synchronous["number"] >= 1 and synchronous["dataDurability"] == "required"
    [plugin] = cluster["plugins"]
    assert plugin["isWALArchiver"]
    store = named("ObjectStore", plugin["parameters"]["barmanObjectName"])["spec"]
    services_store = named("ObjectStore", "kizuna-backups")["spec"]
    path, services_path = (s["configuration"]["destinationPath"].rstrip("/") + "/" for s in (store, services_store))
    assert not path.startswith(services_path) and not services_path.startswith(path), "the vault's backups apart"
    nightly = [doc["spec"] for doc in by_kind("ScheduledBackup") if doc["spec"]["cluster"]["name"] == VAULT]
    assert [spec["schedule"].split()[3:] for spec in nightly] == [["*", "*", "*"]], "one base backup a day"
    assert retention_days(store["retentionPolicy"]) + 1 <= VAULT_BACKUP_DAYS, store["retentionPolicy"]
    assert retention_days(services_store["retentionPolicy"]) > VAULT_BACKUP_DAYS  # why the vault is apart
    for example in examples():  # no example restores or backs up the vault into the services' store
        if example["kind"] in ("Cluster", "Backup") and VAULT in json.dumps(example):
            assert "kizuna-backups\"" not in json.dumps(example), example["metadata"]


@needs_kubectl
def test_the_documented_upgrade_adds_the_vault_url_the_deploy_gives_and_rolls_every_service() -> None:
    """A running deployment gets the vault by the section's commands: the `keys` entry patched into
    kizuna-database-urls is the URL a new deployment is created with (the password read back from the cluster)."""
    secrets = created_secrets()
    deploy_url = secret_values(secrets["kizuna-database-urls"])["keys"]
    owner = secret_values(secrets["kizuna-pg-owner"])["password"]
    _, calls = run_documented_commands()
    patched = [json.loads(call[call.index("-p") + 1]) for call in calls
               if call[2:5] == ["patch", "secret", "kizuna-database-urls"]]
    keys = [patch["stringData"]["keys"] for patch in patched if "keys" in patch.get("stringData", {})]
    # Without a cluster the password read back is empty; with one it is the owner's.
    assert keys == [deploy_url.replace(f":{owner}@", ":@")], keys
    section = OPERATIONS.read_text().split("### Adding the key vault to a running deployment", 1)[1].split("\n### ")[0]
    for name in SERVICE_PORTS:
        assert f"deployment/{name}" in section, name


# ---------------------------------------------------------------- the documented commands


def kubernetes_blocks() -> list[str]:
    text = OPERATIONS.read_text()
    section = text[text.index("\n## Kubernetes"):]
    following = re.search(r"\n## (?!#)", section[1:])
    section = section[: following.start() + 1] if following else section
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


# kubectl as the client runs it (kustomize, create/set with --dry-run=client or --local); what would go to a
# cluster is written down: `apply` collects what it would send, anything else is recorded as a call.
KUBECTL_WITHOUT_A_CLUSTER = r"""
kubectl() {
  case " $* " in
    *" kustomize "*|*" --dry-run=client "*|*" --local "*) command kubectl "$@" ;;
    *" apply -f - "*) cat >> "$APPLIED"; echo --- >> "$APPLIED" ;;
    *" apply -k "*) command kubectl kustomize "${@: -1}" >> "$APPLIED"; echo --- >> "$APPLIED" ;;
    *" apply -f "*|*" create -f "*) cat "${@: -1}" >> "$APPLIED"; echo --- >> "$APPLIED" ;;
    *) echo "$*" >> "$CALLS" ;;
  esac
}
set -euo pipefail
"""


@functools.cache
def run_documented_commands() -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Every sh block of the Kubernetes section, run in order in a scratch folder with the operator's inputs
    (a certificate, the bucket's keys, the current public key) made up."""
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"kizuna-k8s-docs-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    (scratch / "deploy").symlink_to(ROOT / "deploy")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", "privkey.pem", "-out", "fullchain.pem", "-days", "1", "-subj", "/CN=kizuna.example.org"],
                   cwd=scratch, check=True, capture_output=True)
    subprocess.run("openssl genpkey -algorithm ed25519 | openssl pkey -pubout -out old-jwt.pub.pem", shell=True,  # noqa: S602
                   cwd=scratch, check=True, capture_output=True)
    applied, calls = scratch / "applied.yaml", scratch / "calls.txt"
    applied.touch()
    calls.touch()
    env = {**os.environ, "APPLIED": str(applied), "CALLS": str(calls),
           "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example-secret",
           "SMTP_USERNAME": "kizuna@example.org", "SMTP_PASSWORD": "example-smtp-password"}
    for block in kubernetes_blocks():
        done = subprocess.run(["bash", "-c", KUBECTL_WITHOUT_A_CLUSTER + block], cwd=scratch, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{block}\n{done.stderr}"
    docs = [doc for doc in yaml.safe_load_all(applied.read_text()) if doc]
    recorded = [line.split() for line in calls.read_text().splitlines()]
    leftovers = sorted(p.name for p in scratch.iterdir())
    assert not [name for name in leftovers if name.startswith(("jwt", "federation"))], leftovers
    shutil.rmtree(scratch)
    return docs, recorded


def created_secrets() -> dict[str, dict[str, Any]]:
    docs, _ = run_documented_commands()
    # The rotation block writes kizuna-secrets again: the deploy's secret is the first of each name.
    secrets: dict[str, dict[str, Any]] = {}
    for doc in docs:
        if doc["kind"] == "Secret":
            secrets.setdefault(doc["metadata"]["name"], doc)
    return secrets


def secret_values(secret: dict[str, Any]) -> dict[str, str]:
    import base64

    return {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}


@needs_kubectl
def test_every_referenced_secret_and_config_map_is_defined_or_created_by_the_documented_commands() -> None:
    secrets = created_secrets()
    config_maps = {doc["metadata"]["name"]: doc for doc in by_kind("ConfigMap")}
    wanted: list[tuple[str, str, str | None]] = []  # (kind, name, key or None)
    for _, spec in pod_specs([*rendered(), *examples()]):
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    wanted.append(("Secret", source["secretRef"]["name"], None))
                if "configMapRef" in source:
                    wanted.append(("ConfigMap", source["configMapRef"]["name"], None))
            for item in container.get("env", []):
                ref = item.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    wanted.append(("Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]))
                if "configMapKeyRef" in ref:
                    wanted.append(("ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]))
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                wanted.append(("ConfigMap", volume["configMap"]["name"], None))
            if "secret" in volume:
                wanted.append(("Secret", volume["secret"]["secretName"], None))
    cluster = named("Cluster", "kizuna-pg")["spec"]
    wanted.append(("Secret", cluster["bootstrap"]["initdb"]["secret"]["name"], "password"))
    wanted.append(("Secret", named("Cluster", VAULT)["spec"]["bootstrap"]["initdb"]["secret"]["name"], "password"))
    for store in by_kind("ObjectStore"):
        for credential in store["spec"]["configuration"]["s3Credentials"].values():
            wanted.append(("Secret", credential["name"], credential["key"]))
    for tls in by_kind("Ingress")[0]["spec"]["tls"]:
        wanted.append(("Secret", tls["secretName"], "tls.crt"))
    for kind, name, key in wanted:
        found = (secrets if kind == "Secret" else config_maps).get(name)
        assert found is not None, f"{kind} {name} is neither in deploy/kubernetes nor created in docs/operations.md"
        if key is not None:
            assert key in {**found.get("data", {}), **found.get("stringData", {})}, f"{kind} {name} lacks {key}"
    assert {"kizuna-secrets", "kizuna-database-urls", "kizuna-pg-owner", "kizuna-backup", "kizuna-identity-secrets",
            "kizuna-gateway-tls"} <= {name for kind, name, _ in wanted if kind == "Secret"}


@needs_kubectl
def test_the_documented_secrets_hold_what_the_services_read() -> None:
    secrets = created_secrets()
    known = {f"KIZUNA_{field.upper()}" for field in ServiceSettings.model_fields}
    app = secret_values(secrets["kizuna-secrets"])
    assert set(app) <= known and {"KIZUNA_OPERATOR_TOKEN", "KIZUNA_JWT_PRIVATE_KEY", "KIZUNA_JWT_PUBLIC_KEYS",
                                  "KIZUNA_FEDERATION_PRIVATE_KEY", "KIZUNA_PUBLIC_URL"} <= set(app)
    assert len(app["KIZUNA_OPERATOR_TOKEN"]) >= 64
    assert public_pem(load_private_key(app["KIZUNA_JWT_PRIVATE_KEY"])).strip() in app["KIZUNA_JWT_PUBLIC_KEYS"]
    load_private_key(app["KIZUNA_FEDERATION_PRIVATE_KEY"])
    owner = secret_values(secrets["kizuna-pg-owner"])
    assert secrets["kizuna-pg-owner"]["type"] == "kubernetes.io/basic-auth" and owner["username"] == "kizuna"
    urls = secret_values(secrets["kizuna-database-urls"])
    pooler = named("Pooler", "kizuna-pg-pooler-rw")
    initdb = named("Cluster", "kizuna-pg")["spec"]["bootstrap"]["initdb"]
    databases = {initdb["database"], *re.findall(r"CREATE DATABASE (\w+)", " ".join(initdb["postInitSQL"]))}
    assert set(urls) == {*SERVICE_PORTS, "keys"}
    # The key vault: its own cluster's database, through its own pooler, as the same owner (keys-cnpg.yaml).
    vault_pooler = named("Pooler", f"{VAULT}-pooler-rw")
    assert urls.pop("keys") == (f"postgresql://kizuna:{owner['password']}@{vault_pooler['metadata']['name']}:5432/"
                                f"{VAULT_DATABASE}")
    for service, url in urls.items():
        # Through the pooler, as the owner with the owner's password, each service to its own database.
        assert url == (f"postgresql://kizuna:{owner['password']}@{pooler['metadata']['name']}:5432/kizuna_{service}")
        assert f"kizuna_{service}" in databases


def _environment_sources(container: dict[str, Any]) -> tuple[set[str], set[tuple[str, str]], set[str]]:
    """What a container reads: whole Secrets (envFrom), single Secret keys, and whole ConfigMaps."""
    whole = {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
    keys = {(i["valueFrom"]["secretKeyRef"]["name"], i["valueFrom"]["secretKeyRef"]["key"])
            for i in container["env"] if "secretKeyRef" in i.get("valueFrom", {})}
    maps = {s["configMapRef"]["name"] for s in container.get("envFrom", []) if "configMapRef" in s}
    return whole, keys, maps


@needs_kubectl
def test_the_services_that_write_to_people_get_the_email_settings_and_public_keys_but_no_private_key() -> None:
    """Identity and notifications send email: they alone get the SMTP server (ConfigMap kizuna-identity) and login
    (Secret kizuna-identity-secrets); identity reads that Secret whole (its OIDC client secrets go there too),
    notifications only the two SMTP keys. Neither gets kizuna-secrets whole, a private key or the operator token."""
    from kizuna.mail import MailSettings

    secrets = created_secrets()
    smtp_settings = {f"KIZUNA_SMTP_{field.upper()}" for field in MailSettings.model_fields}
    smtp_login = secret_values(secrets["kizuna-identity-secrets"])
    assert set(smtp_login) == {"KIZUNA_SMTP_USERNAME", "KIZUNA_SMTP_PASSWORD"}
    assert smtp_login["KIZUNA_SMTP_PASSWORD"] == "example-smtp-password"  # the operator's, from the environment
    identity_config = named("ConfigMap", "kizuna-identity")["data"]
    assert set(identity_config) <= smtp_settings and identity_config["KIZUNA_SMTP_SECURITY"] in ("starttls", "tls")
    private = {"KIZUNA_JWT_PRIVATE_KEY", "KIZUNA_FEDERATION_PRIVATE_KEY", "KIZUNA_OPERATOR_TOKEN"}
    assert private <= set(secret_values(secrets["kizuna-secrets"]))
    config = named("ConfigMap", "kizuna-config")["data"]
    assert not set(config) & smtp_settings  # what every service reads carries no email setting
    deployments = dict(pod_specs(by_kind("Deployment")))
    assert set(MAIL_SENDERS) < set(deployments)
    for name, spec in deployments.items():
        [container] = spec["containers"]
        whole, keys, maps = _environment_sources(container)
        smtp_keys = {key for secret, key in keys if secret == "kizuna-identity-secrets"}
        literal = {item["name"] for item in container["env"] if "value" in item}
        assert ("kizuna-identity" in maps) == (name in MAIL_SENDERS), name
        assert ("kizuna-identity-secrets" in whole) == (name == "identity"), name
        assert not literal & smtp_settings, name
        if name == "notifications":
            assert smtp_keys == {"KIZUNA_SMTP_USERNAME", "KIZUNA_SMTP_PASSWORD"}, keys
        else:
            assert not smtp_keys, (name, keys)
        if name in MAIL_SENDERS:
            # The gateway issues every token: these check them with the public keys alone.
            assert "kizuna-secrets" not in whole and not {key for _, key in keys} & private, (name, keys)
            assert {("kizuna-secrets", "KIZUNA_JWT_PUBLIC_KEYS"), ("kizuna-secrets", "KIZUNA_PUBLIC_URL")} <= keys
    # The gateway finds identity by its own setting, which names the identity Service's port.
    [port] = named("Service", "identity")["spec"]["ports"]
    assert config["KIZUNA_IDENTITY_URL"] == f"http://identity:{port['port']}"
    assert "identity" not in config["KIZUNA_SERVICE_URLS"]


@needs_kubectl
def test_the_gateway_forwards_to_each_service_behind_it_at_its_service_port() -> None:
    config = named("ConfigMap", "kizuna-config")["data"]
    forwarded = dict(pair.split("=", 1) for pair in config["KIZUNA_SERVICE_URLS"].split(","))
    assert list(forwarded) == list(BEHIND_GATEWAY)
    for name, url in forwarded.items():
        [port] = named("Service", name)["spec"]["ports"]
        assert url == f"http://{name}:{port['port']}" and port["port"] == SERVICE_PORTS[name], name


@needs_kubectl
def test_what_the_documented_commands_ask_of_a_cluster_names_what_exists() -> None:
    docs, calls = run_documented_commands()
    assert any(doc["kind"] == "Deployment" for doc in docs), "the deploy block applies the kustomization"
    existing = {f"{doc['kind'].lower()}/{doc['metadata'].get('name')}" for doc in [*rendered(), *docs]}
    existing |= {f"job/{doc['metadata']['name']}" for doc in examples() if doc["kind"] == "Job"}
    existing |= {f"cluster/{doc['metadata']['name']}" for doc in examples() if doc["kind"] == "Cluster"}
    verbs = {call[2] if call[0] == "-n" else call[0] for call in calls}
    assert {"wait", "rollout", "scale", "patch", "get"} <= verbs, verbs
    for call in calls:
        assert call[:2] == ["-n", "kizuna"], call
        for word in call:
            if re.fullmatch(r"(deployment|cluster|job|hpa|pooler)/[\w-]+", word):
                assert word in existing or word.replace("hpa/", "horizontalpodautoscaler/") in existing, call
        if call[2] == "patch":
            kind = {"hpa": "horizontalpodautoscaler"}.get(call[3], call[3])
            assert f"{kind}/{call[4]}" in existing, call


# ---------------------------------------------------------------- the image's dependencies


def locked(path: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", path.read_text(), re.MULTILINE)
    return {re.sub(r"[-_.]+", "-", name.split("[")[0]).lower(): version for name, version in pins}


def test_the_lock_files_hold_every_pin_of_pyproject_with_hashes() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, dev = locked(ROOT / "requirements.lock"), locked(ROOT / "requirements-dev.lock")
    for lock, requirements in ((runtime, project["dependencies"]),
                               (dev, [*project["dependencies"], *project["optional-dependencies"]["dev"]])):
        for requirement in requirements:
            name, version = re.match(r"([A-Za-z0-9_.\-\[\]]+)==([^;\s]+)", requirement).groups()  # type: ignore[union-attr]
            name = re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()
            assert lock.get(name) == version, f"{name}=={version} is not in the lock: run `make lock`"
    assert len(runtime) > len(project["dependencies"])  # the transitive ones are pinned too
    for path in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / path).read_text()
        assert text.count("==") <= text.count("--hash=sha256:"), f"{path}: every pin carries its hashes"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile and "install --no-deps ." in dockerfile

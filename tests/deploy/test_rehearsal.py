"""The operator's path, rehearsed as written: deploy/README.md and docs/operations.md, run literally.

No Docker engine exists here (nor in CI), so what compose WOULD run runs for real: the bootstrap
script as the README gives it, in a scratch copy of the checkout; the PostgreSQL init script through
the wheel's real psql with the environment the postgres image gives it; the six services as
processes with exactly the environment compose gives them (tests/deploy/compose_shim.py parses
docker-compose.yml and the env files the script wrote, interpolating ``${VAR}`` from ``.env``);
every healthcheck command as written; and the documents' fenced ``sh`` blocks run by ``sh -eu``
with that shim as ``docker``. Only host names and ports change (compose's ``host:port`` → loopback).
The observability profile's images (collector, Jaeger, Prometheus, Grafana) have nothing to stand in for
them: their healthchecks are not run (see test_every_healthcheck_passes_as_written).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from kizuna.devstack import PostgresServer, _pg_bin, nats_server_binary
from kizuna.rebuild import load_spec
from tests.deploy import compose_shim
from tests.support import ROOT, unclaimed_port

APP_SERVICES = compose_shim.APP_SERVICES
MAIL_SENDERS = ("identity", "notifications")  # the services that write to people: the SMTP settings are theirs
README = ROOT / "deploy" / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
HOST_TOOLS = "/usr/bin:/bin"  # sh, curl, jq, openssl, awk, sed: what an operator's machine has


def sh_blocks(document: Path, heading: str) -> list[str]:
    """The fenced ``sh`` blocks under ``heading`` (up to the next heading of any level)."""
    text = document.read_text()
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert match, f"{document.name} has no heading {heading!r}"
    blocks = re.findall(r"^```sh\n(.*?)^```", match[1], re.M | re.S)
    assert blocks, f"{document.name}: no sh block under {heading!r}"
    return blocks


@dataclass
class Deployment:
    project: Path  # the operator's checkout (a scratch copy: the bootstrap writes secrets into it)
    state_path: Path
    run_dir: Path
    ports: dict[str, int]
    postgres: PostgresServer

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway:8000']}"

    def run(self, block: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A documented block, as written, in the checkout; only the gateway's address is mapped."""
        script = block.replace("http://localhost:8000", self.gateway)
        shim_bin = self.run_dir / "bin"
        env = {"PATH": f"{shim_bin}:{HOST_TOOLS}", "HOME": str(self.run_dir),
               "KIZUNA_REHEARSAL_STATE": str(self.state_path)}
        result = subprocess.run(["sh", "-eu", "-c", script], cwd=self.project, env=env, capture_output=True,
                                text=True, timeout=300)
        if check:
            assert result.returncode == 0, f"{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}" + \
                self.logs()
        return result

    def logs(self) -> str:
        return "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.run_dir.glob("*.log")))

    def env_file(self, name: str) -> dict[str, str]:
        return compose_shim.read_env_file(self.project / name)

    def service_env(self, name: str) -> dict[str, str]:
        return compose_shim.service_environment(self.project, name, self.ports)

    def database(self, service: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.postgres.port}/kizuna_{service}"


def _scratch_checkout(target: Path) -> Path:
    target.mkdir(parents=True)
    shutil.copy2(ROOT / "docker-compose.yml", target)
    shutil.copytree(ROOT / "deploy", target / "deploy", ignore=shutil.ignore_patterns(
        "kizuna.env", "gateway.env", "identity.env", "metrics-token", "kubernetes"))
    return target


def _nats(conf_source: Path, data: Path, client_port: int, monitor_port: int) -> dict[str, object]:
    """NATS with deploy/nats/nats.conf itself; only its addresses and data folder are the container's."""
    conf = conf_source.read_text()
    mapped = (conf.replace('"0.0.0.0:4222"', f'"127.0.0.1:{client_port}"')
                  .replace('"0.0.0.0:8222"', f'"127.0.0.1:{monitor_port}"')
                  .replace('"/data"', f'"{data / "jetstream"}"'))
    assert mapped.count("127.0.0.1") == 2 and str(data) in mapped, "deploy/nats/nats.conf changed shape"
    data.mkdir(parents=True, exist_ok=True)
    (data / "nats.conf").write_text(mapped)
    return {"argv": [nats_server_binary(), "-c", str(data / "nats.conf")], "data": str(data / "jetstream"),
            "healthcheck": ["wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{monitor_port}/healthz"]}


def _psql(postgres: PostgresServer, sql: str, database: str = "postgres") -> str:
    return subprocess.run([str(_pg_bin() / "psql"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres",
                           "-d", database, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def _postgres_image_env(deployment_env: dict[str, str], postgres: PostgresServer) -> dict[str, str]:
    """What the postgres image gives its init scripts: POSTGRES_USER/PASSWORD from compose, PGPASSWORD
    (docker-entrypoint.sh exports it), psql on PATH, the server it is initialising as the default."""
    return {"POSTGRES_USER": deployment_env["POSTGRES_USER"], "POSTGRES_PASSWORD": deployment_env["POSTGRES_PASSWORD"],
            "PGPASSWORD": deployment_env["POSTGRES_PASSWORD"], "PGHOST": "127.0.0.1", "PGPORT": str(postgres.port)}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp("rehearsal")
    project = _scratch_checkout(base / "kizuna")
    run_dir = base / "run"
    (run_dir / "bin").mkdir(parents=True)
    docker = run_dir / "bin" / "docker"
    docker.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(compose_shim.__file__)} \"$@\"\n")
    docker.chmod(0o755)
    ports = {"postgres:5432": 0, "nats:4222": unclaimed_port(), "members:8101": unclaimed_port(),
             "referrals:8102": unclaimed_port(), "sessions:8103": unclaimed_port(), "identity:8104": unclaimed_port(),
             "notifications:8105": unclaimed_port(), "gateway:8000": unclaimed_port(),
             "otel-collector:4318": unclaimed_port()}
    postgres = PostgresServer(base / "postgres", durable=False).start()
    ports["postgres:5432"] = postgres.port
    nats_monitor = unclaimed_port()
    nats = _nats(project / "deploy" / "nats" / "nats.conf", base / "nats", ports["nats:4222"], nats_monitor)
    state_path = run_dir / "state.json"
    deployment = Deployment(project, state_path, run_dir, ports, postgres)
    try:
        # 1. The secrets, as the README says.
        deployment.run(sh_blocks(README, "1. Create the secrets")[0])
        # The postgres container: a cluster whose superuser is POSTGRES_USER with POSTGRES_PASSWORD,
        # reached over the network only with that password (as the image's pg_hba.conf requires).
        postgres_env = compose_shim.load_compose(project)["services"]["postgres"]["environment"]
        user, password = postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_PASSWORD"]
        _psql(postgres, f"CREATE ROLE {user} SUPERUSER LOGIN PASSWORD '{password}'")
        hba = base / "postgres" / "pgdata" / "pg_hba.conf"
        hba.write_text(f"host all {user} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        _psql(postgres, "SELECT pg_reload_conf()")
        image_env = _postgres_image_env(postgres_env, postgres)
        state_path.write_text(json.dumps({
            "project": str(project), "run_dir": str(run_dir), "ports": ports, "pg_bin": str(_pg_bin()),
            "postgres_env": image_env, "nats_monitor": nats_monitor, "nats": nats}))
        # 2. The image runs the init script (executable, so executed) on the first boot.
        init = subprocess.run([str(project / "deploy/postgres/init-databases.sh")], capture_output=True, text=True,
                              env={"PATH": f"{_pg_bin()}:{HOST_TOOLS}", **image_env})
        assert init.returncode == 0, init.stderr
        # 3. Start, as the README says.
        deployment.run(sh_blocks(README, "2. Start")[0])
        yield deployment
    finally:
        deployment.run("docker compose stop", check=False)  # the services and NATS
        postgres.stop()


def test_the_bootstrap_writes_private_secrets_once_and_only_the_gateway_gets_private_keys(
        deployment: Deployment) -> None:
    written = {name: deployment.project / name for name in (".env", "deploy/kizuna.env", "deploy/gateway.env",
                                                            "deploy/identity.env")}
    before = {name: path.read_bytes() for name, path in written.items()}
    for path in written.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    again = deployment.run(sh_blocks(README, "1. Create the secrets")[0], check=False)
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
    assert {name: path.read_bytes() for name, path in written.items()} == before
    # compose fills the password from .env: the postgres container and every service agree on it.
    password = deployment.env_file(".env")["POSTGRES_PASSWORD"]
    assert len(password) >= 32
    for name in APP_SERVICES:
        env = deployment.service_env(name)
        assert f"kizuna:{password}@" in env["KIZUNA_DATABASE_URL"], name
        assert ("KIZUNA_JWT_PRIVATE_KEY" in env) == ("KIZUNA_FEDERATION_PRIVATE_KEY" in env) == (name == "gateway")
        # Only the services that write to people (identity, notifications) send email, so only they are given
        # the SMTP server and its password; no private key comes with it.
        assert ("KIZUNA_SMTP_PASSWORD" in env) == ("KIZUNA_SMTP_HOST" in env) == (name in MAIL_SENDERS), name
        assert env["KIZUNA_OTEL_EXPORTER"] == "none"  # the env file decides; compose's environment: does not
        assert env["KIZUNA_PUBLIC_URL"] == "https://kizuna.example.org"


def test_the_init_script_made_every_database_and_runs_again_harmlessly(deployment: Deployment) -> None:
    state = json.loads(deployment.state_path.read_text())
    again = subprocess.run([str(deployment.project / "deploy/postgres/init-databases.sh")], capture_output=True,
                           text=True, env={"PATH": f"{_pg_bin()}:{HOST_TOOLS}", **state["postgres_env"]})
    assert again.returncode == 0, again.stderr
    databases = _psql(deployment.postgres, "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database "
                                           "WHERE datname LIKE 'kizuna%'")
    assert databases == ("kizuna_gateway,kizuna_identity,kizuna_keys,kizuna_members,kizuna_notifications,"
                         "kizuna_referrals,kizuna_sessions")


def test_every_healthcheck_passes_as_written(deployment: Deployment) -> None:
    """Each compose healthcheck command, run as written with the container's environment. NATS's and
    PostgreSQL's target their own container: here their loopback ports are the mapped ones."""
    state = json.loads(deployment.state_path.read_text())
    compose = compose_shim.load_compose(deployment.project)
    nats_check = [part.replace("127.0.0.1:8222", f"127.0.0.1:{state['nats_monitor']}")
                  for part in compose["services"]["nats"]["healthcheck"]["test"][1:]]
    assert shutil.which(nats_check[0]), "the nats image's wget is not installed here"
    assert subprocess.run(nats_check, capture_output=True).returncode == 0
    postgres_check = compose["services"]["postgres"]["healthcheck"]["test"]
    assert postgres_check[0] == "CMD-SHELL"
    assert subprocess.run(["sh", "-c", postgres_check[1]], capture_output=True, env={
        "PATH": f"{_pg_bin()}:{HOST_TOOLS}", **state["postgres_env"]}).returncode == 0
    for name in APP_SERVICES:
        env = deployment.service_env(name)
        assert compose_shim.healthy(deployment.project, name, env), name
    # Not rehearsed: the observability profile's images have no stand-ins here (its Prometheus and
    # Grafana files are checked by tests/deploy/test_observability.py).
    assert {s for s, c in compose["services"].items() if c.get("profiles")} == {
        "otel-collector", "jaeger", "prometheus", "grafana"}


def test_the_first_community_as_the_readme_writes_it_tokens_at_once(deployment: Deployment) -> None:
    """Found, issue the owner's token immediately (no retry), join, issue theirs, read health: each
    curl fails the block (-f) on any error, so a 404 from a gateway that has not heard yet fails it."""
    for _ in range(3):  # three communities in a row, so a lucky bus cannot hide the race
        result = deployment.run(sh_blocks(README, "3. Found the first community")[0])
        token, health = result.stdout.strip().splitlines()
        assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token)  # the member's token, a JWT
        assert json.loads(health)["members"] >= 1  # the figures follow the bus, a moment behind


async def test_tokens_are_issued_the_moment_a_community_is_founded_or_a_member_joins(
        deployment: Deployment) -> None:
    """Read-your-writes for the operator: the gateway's directory is fed by the bus, so it may not have
    heard of a member a millisecond old; it must not answer 404 for one that exists."""
    operator = _operator(deployment)

    async def found_join_and_issue(http: httpx.AsyncClient, n: int) -> list[int]:
        founded = (await http.post("/v1/communities", headers=operator,
                                   json={"name": f"Rehearsal {n}", "owner_display_name": "Owner"})).json()
        cid = founded["community_id"]
        owner_token = await http.post("/v1/tokens", headers=operator,
                                      json={"community_id": cid, "member_id": founded["owner_member_id"]})
        joined = await http.post(f"/v1/communities/{cid}/members", headers=operator,
                                 json={"display_name": "Newcomer"})
        member_token = await http.post("/v1/tokens", headers=operator,
                                       json={"community_id": cid, "member_id": joined.json()["member_id"]})
        stranger = await http.post("/v1/tokens", headers=operator, json={"community_id": cid, "member_id": "nobody"})
        assert stranger.status_code == 404, stranger.text  # a member who does not exist is still a 404
        return [owner_token.status_code, member_token.status_code]

    async with httpx.AsyncClient(base_url=deployment.gateway, timeout=30) as http:
        answers = await asyncio.gather(*(found_join_and_issue(http, n) for n in range(20)))
    assert all(code == 201 for pair in answers for code in pair), answers


def _operator(deployment: Deployment) -> dict[str, str]:
    return {"Authorization": f"Bearer {deployment.env_file('deploy/kizuna.env')['KIZUNA_OPERATOR_TOKEN']}"}


def _read_models() -> dict[str, list[str]]:
    return {name: list(load_spec(name).read_model_tables) for name in APP_SERVICES}


async def _snapshot(deployment: Deployment) -> dict[str, dict[str, list[str]]]:
    snapshot: dict[str, dict[str, list[str]]] = {}
    for service, tables in _read_models().items():
        conn = await asyncpg.connect(deployment.database(service))
        try:
            snapshot[service] = {table: sorted(await conn.fetchval(
                f"SELECT coalesce(array_agg(to_jsonb(t)::text), '{{}}') FROM {table} t")) for table in tables}
        finally:
            await conn.close()
    return snapshot


async def _settled(deployment: Deployment) -> dict[str, dict[str, list[str]]]:
    """Read models once the relays and consumers have nothing left to do (two equal looks 1 s apart)."""
    previous = await _snapshot(deployment)
    for _ in range(30):
        await asyncio.sleep(1)
        current = await _snapshot(deployment)
        if current == previous:
            return current
        previous = current
    raise AssertionError("read models kept changing")


async def _events(deployment: Deployment) -> dict[str, int]:
    counts = {}
    for service in APP_SERVICES:
        conn = await asyncpg.connect(deployment.database(service))
        try:
            counts[service] = await conn.fetchval("SELECT count(*) FROM events")
        finally:
            await conn.close()
    return counts


def test_the_documented_backup_restore_and_rebuild_name_every_service() -> None:
    """Each loop goes over every service's database and each stop stops every service: one left out would be
    missing from the backup, or restored and rebuilt while it runs."""
    for heading in ("Back up", "Restore", "Rebuild the read models"):
        [block] = sh_blocks(OPERATIONS, heading)
        assert f"for service in {' '.join(APP_SERVICES)}; do" in block, heading
        for stop in re.findall(r"^docker compose stop (.*)$", block, re.M):
            assert sorted(stop.split()) == sorted(APP_SERVICES), (heading, stop)


async def test_backup_then_restore_into_fresh_databases_equals_a_fresh_replay(deployment: Deployment) -> None:
    deployment.run(sh_blocks(README, "3. Found the first community")[0])
    await _settled(deployment)
    backed_up = await _events(deployment)
    assert all(backed_up[s] > 0 for s in ("members", "gateway")), backed_up
    deployment.run(sh_blocks(OPERATIONS, "Back up")[0])
    for service in APP_SERVICES:
        assert (deployment.project / "backups" / f"{service}.dump").stat().st_size > 0
    # The key vault's own dump, and none kept past its 7 days (one from 6 days ago goes, one from 5 stays).
    keys = deployment.project / "backups" / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    for days in (5, 6):
        old = keys / f"kizuna_keys-{days}-days-ago.dump"
        old.write_bytes(b"old")
        os.utime(old, (time.time() - days * 86400 - 60,) * 2)
    deployment.run(sh_blocks(OPERATIONS, "Back up the key vault")[0])
    kept = sorted(path.name for path in keys.iterdir())
    assert "kizuna_keys-5-days-ago.dump" in kept and "kizuna_keys-6-days-ago.dump" not in kept, kept
    [new] = [path for path in keys.iterdir() if "days-ago" not in path.name]
    assert new.stat().st_size > 0
    # Something after the backup, which the restore must take away.
    deployment.run(sh_blocks(README, "3. Found the first community")[0])
    assert (await _events(deployment))["members"] > backed_up["members"]

    restore = deployment.run(sh_blocks(OPERATIONS, "Restore")[0])
    assert "error" not in restore.stderr.lower(), restore.stderr
    assert await _events(deployment) == backed_up
    restored = await _settled(deployment)

    rebuild = deployment.run(sh_blocks(OPERATIONS, "Rebuild the read models")[0])
    assert rebuild.returncode == 0
    replayed = await _settled(deployment)
    for service in APP_SERVICES:
        for table in _read_models()[service]:
            assert restored[service][table] == replayed[service][table], (service, table)
    # And the restored deployment works: a new community, tokens at once.
    deployment.run(sh_blocks(README, "3. Found the first community")[0])


def test_rotating_the_jwt_key_keeps_old_tokens_until_the_old_key_is_retired(deployment: Deployment) -> None:
    http = httpx.Client(base_url=deployment.gateway, timeout=30)
    founded = http.post("/v1/communities", headers=_operator(deployment),
                        json={"name": "Tsubasa", "owner_display_name": "Daiki"}).json()
    cid, owner = founded["community_id"], founded["owner_member_id"]

    def issue() -> str:
        response = http.post("/v1/tokens", headers=_operator(deployment), json={"community_id": cid,
                                                                                  "member_id": owner})
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    def reads(token: str) -> int:
        return http.get(f"/v1/communities/{cid}", headers={"Authorization": f"Bearer {token}"}).status_code

    old = issue()
    old_kids = {key["kid"] for key in http.get("/.well-known/jwks.json").json()["keys"]}
    deployment.run(sh_blocks(OPERATIONS, "Rotate the JWT signing key")[0])
    new = issue()
    kids = {key["kid"] for key in http.get("/.well-known/jwks.json").json()["keys"]}
    assert old_kids < kids
    assert reads(old) == 200 and reads(new) == 200  # through the gateway to the members service
    deployment.run(sh_blocks(OPERATIONS, "Retire the old JWT keys")[0])
    assert reads(new) == 200
    assert reads(old) == 401
    assert {key["kid"] for key in http.get("/.well-known/jwks.json").json()["keys"]} == kids - old_kids


def test_no_service_logged_an_unhandled_error(deployment: Deployment) -> None:
    for log in deployment.run_dir.glob("*.log"):
        assert "unhandled error" not in log.read_text(), log.name
    assert os.path.exists(deployment.state_path)

"""docker compose, checked without a Docker engine: schema, health, wiring, and no drift from the code."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kizuna import up
from kizuna.mail import MailSettings
from kizuna.settings import ServiceSettings
from services.identity.app import IdentitySettings
from tests.support import ROOT, SERVICES, Ecosystem, ServiceProcess

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = ("members", "referrals", "sessions", "identity", "notifications", "gateway")
# KIZUNA_SERVICE_URLS: what /v1/communities/… goes to
BEHIND_GATEWAY = ("members", "referrals", "sessions", "notifications")
# The services that write to people (sign-in links, notifications): only they read deploy/identity.env, the SMTP file.
MAIL_SENDERS = ("identity", "notifications")
INFRA = ("nats", "postgres")


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(COMPOSE)


def test_every_container_has_a_healthcheck_and_services_start_in_order() -> None:
    for name, service in COMPOSE["services"].items():
        assert "healthcheck" in service and service["healthcheck"]["test"], name
    for name in APP_SERVICES:
        depends = COMPOSE["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == depends["nats"]["condition"] == "service_healthy", name
    gateway_depends = COMPOSE["services"]["gateway"]["depends_on"]
    assert all(gateway_depends[s]["condition"] == "service_healthy" for s in (*BEHIND_GATEWAY, "identity"))
    assert set(gateway_depends) == {*INFRA, *APP_SERVICES} - {"gateway"}
    assert set(APP_SERVICES) == set(SERVICES), "every service the tests know runs in compose"


def test_only_the_gateway_is_published() -> None:
    published = {name for name, s in COMPOSE["services"].items() if s.get("ports") and not s.get("profiles")}
    assert published == {"gateway"}


def _names(example: str) -> set[str]:
    return set(re.findall(r"^(KIZUNA_[A-Z_]+)=", (ROOT / "deploy" / example).read_text(), re.M))


def test_every_kizuna_variable_is_a_real_setting_and_secrets_come_from_the_env_files() -> None:
    known = {f"KIZUNA_{field.upper()}" for field in ServiceSettings.model_fields}
    mail = {f"KIZUNA_SMTP_{field.upper()}" for field in MailSettings.model_fields}
    identity_known = known | mail | {f"KIZUNA_{field.upper()}" for field in IdentitySettings.model_fields}
    shared, gateway_only, senders_only = (_names("kizuna.env.example"), _names("gateway.env.example"),
                                          _names("identity.env.example"))
    own_file = {"gateway": "deploy/gateway.env", **{name: "deploy/identity.env" for name in MAIL_SENDERS}}
    for name in APP_SERVICES:
        service = COMPOSE["services"][name]
        expected = ["deploy/kizuna.env", own_file[name]] if name in own_file else "deploy/kizuna.env"
        assert service["env_file"] == expected, name
        assert set(service["environment"]) <= known, set(service["environment"]) - known
        assert service["environment"]["KIZUNA_SERVICE_NAME"] == name
        # Its own database (deploy/postgres/init-databases.sh makes it) and the port `make up` gives it.
        assert service["environment"]["KIZUNA_DATABASE_URL"].endswith(f"@postgres:5432/kizuna_{name}"), name
        assert f"'kizuna_{name}'" in (ROOT / "deploy" / "postgres" / "init-databases.sh").read_text(), name
        # One key vault for the whole deployment (docs/data-rights.md), made by the same script.
        assert service["environment"]["KIZUNA_KEYS_DATABASE_URL"].endswith("@postgres:5432/kizuna_keys"), name
        assert "'kizuna_keys'" in (ROOT / "deploy" / "postgres" / "init-databases.sh").read_text()
        assert service["environment"]["KIZUNA_HTTP_PORT"] == str(up.SERVICES[name]), name
    assert shared | gateway_only <= known and senders_only <= identity_known
    assert {"KIZUNA_OPERATOR_TOKEN", "KIZUNA_JWT_PUBLIC_KEYS"} <= shared
    assert gateway_only == {"KIZUNA_JWT_PRIVATE_KEY", "KIZUNA_FEDERATION_PRIVATE_KEY"}  # only the gateway signs
    # Only the services that write to people (identity, notifications) send email, so only they hold the SMTP
    # password: the file that has it is theirs alone, and no SMTP setting is in a file anyone else reads.
    assert senders_only == mail - {"KIZUNA_SMTP_TIMEOUT_SECONDS"} and not mail & (shared | gateway_only)
    assert MAIL_SENDERS == up.MAIL_SENDERS and BEHIND_GATEWAY == up.BEHIND_GATEWAY  # `make up` agrees
    readers = {name for name in APP_SERVICES if "deploy/identity.env" in COMPOSE["services"][name]["env_file"]}
    assert readers == set(MAIL_SENDERS)
    for name in APP_SERVICES:
        assert not mail & set(COMPOSE["services"][name]["environment"]), name
    # Notifications, like identity, checks tokens with the public keys alone: no private key comes its way.
    assert "deploy/gateway.env" not in COMPOSE["services"]["notifications"]["env_file"]
    # The gateway finds identity by its own setting, not among the services /v1/communities/… forwards to.
    gateway = COMPOSE["services"]["gateway"]["environment"]
    assert gateway["KIZUNA_IDENTITY_URL"] == f"http://identity:{COMPOSE['services']['identity']['environment']['KIZUNA_HTTP_PORT']}"
    forwarded = dict(pair.split("=", 1) for pair in gateway["KIZUNA_SERVICE_URLS"].split(","))
    assert list(forwarded) == list(BEHIND_GATEWAY)
    for name, url in forwarded.items():
        assert url == f"http://{name}:{COMPOSE['services'][name]['environment']['KIZUNA_HTTP_PORT']}", name


def test_what_the_env_files_say_is_not_overridden_or_silently_defaulted() -> None:
    """Compose's ``environment:`` beats ``env_file``, and ``${VAR:-x}`` is filled from the shell or .env,
    never from an env file: tracing is the env file's to choose, and a missing password stops compose."""
    text = (ROOT / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD:-" not in text and "${POSTGRES_PASSWORD:?" in text
    for name in APP_SERVICES:
        assert "KIZUNA_OTEL_EXPORTER" not in COMPOSE["services"][name]["environment"], name
    assert "Compose v2" in (ROOT / "deploy" / "README.md").read_text()


def test_referenced_files_exist_and_the_image_is_multi_stage_and_unprivileged() -> None:
    for service in COMPOSE["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).exists()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2
    runtime = dockerfile.split("AS runtime", 1)[1]
    user = re.search(r"^USER (\S+)", runtime, re.M)
    assert user and user[1].split(":")[0] not in ("root", "0") and "build-essential" not in runtime
    for script in ("deploy/postgres/init-databases.sh", "deploy/bootstrap.sh"):
        assert os.access(ROOT / script, os.X_OK), script


def _compose_env(name: str, eco: Ecosystem) -> dict[str, str]:
    """The service's compose environment, with compose host names pointed at the test's servers."""
    env: dict[str, Any] = dict(COMPOSE["services"][name]["environment"])
    replaced = {}
    for key, value in env.items():
        value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))  # the URL with the password is replaced
        value = value.replace("nats://nats:4222", eco.nats.url)
        if key == "KIZUNA_DATABASE_URL":
            value = eco.database_url(name)
        if key == "KIZUNA_KEYS_DATABASE_URL":
            value = eco.database_url("keys")
        for other in APP_SERVICES:
            value = value.replace(f"http://{other}:", "http://127.0.0.1:")
        replaced[key] = value
    if "KIZUNA_SERVICE_URLS" in replaced:
        replaced["KIZUNA_SERVICE_URLS"] = ",".join(f"{s}=http://127.0.0.1:{eco.ports[s]}" for s in BEHIND_GATEWAY)
    if "KIZUNA_IDENTITY_URL" in replaced:
        replaced["KIZUNA_IDENTITY_URL"] = eco.url("identity")
    replaced["KIZUNA_HTTP_PORT"] = str(eco.ports[name])
    replaced["KIZUNA_HTTP_HOST"] = "127.0.0.1"
    return replaced


@pytest.mark.parametrize("name", APP_SERVICES)
def test_services_become_ready_with_exactly_the_compose_environment(name: str, ecosystem: Ecosystem) -> None:
    if not (ROOT / "services" / name / "__main__.py").exists():
        pytest.fail(f"services/{name} has no entry point")
    base = {k: v for k, v in os.environ.items() if not k.startswith("KIZUNA_")}
    secrets = {k: v for k, v in ecosystem.env(name).items() if k in (
        "KIZUNA_OPERATOR_TOKEN", "KIZUNA_JWT_PRIVATE_KEY", "KIZUNA_JWT_PUBLIC_KEYS")}
    env = {**base, **secrets, **_compose_env(name, ecosystem)}
    if name != "gateway":
        env.pop("KIZUNA_JWT_PRIVATE_KEY", None)
    process = ServiceProcess(name, ecosystem.ports[name], env, ecosystem.workdir / f"compose-{name}.log").start()
    ecosystem.processes[name] = process
    process.wait_ready()

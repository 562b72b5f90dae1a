"""Fuzz every route of the services from their own OpenAPI documents (schemathesis): no 5xx and no
response that breaks its own schema, whatever the input.

The gateway (and through it every service) is fuzzed by tests/reliability/test_contract.py with every
schemathesis check, as the operator and as a member; here a service is fuzzed directly, past the gateway's
own validation, with an owner's token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import BusPublisher, Ecosystem, eventually, issue

EXAMPLES = os.environ.get("KIZUNA_FUZZ_EXAMPLES", "8")


@pytest.mark.parametrize("service", ["sessions"])
async def test_fuzzed_requests_never_get_a_server_error(
    service: str, stack: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    bus, http = stack
    cid, owner = await bus.found({"aiko": "member"})
    token = await issue(http, ecosystem, cid, owner)
    await eventually(lambda: _ready(http, cid, token))
    report = ecosystem.workdir / f"fuzz-{service}.txt"
    # A real community, so requests get past the 404 and reach the validation and domain rules.
    config = ecosystem.workdir / f"schemathesis-{service}.toml"
    config.write_text(f'[parameters]\n"path.community_id" = "{cid}"\n')
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "run",
         f"{ecosystem.url(service)}/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance", "--max-examples", EXAMPLES,
         "--header", f"Authorization: Bearer {token}", "--request-timeout", "10", "--generation-deterministic",
         "--phases", "examples,coverage,fuzzing", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=ecosystem.workdir,
    )
    report.write_text(result.stdout + result.stderr)
    assert " passed" in result.stdout and "Tested: 0" not in result.stdout, result.stdout[-3000:]
    # The failures come first in schemathesis' report, its warnings after: show the failures.
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[output.find('FAILURES'):][:6000] or output[-6000:]
    for name, proc in ecosystem.processes.items():
        assert "unhandled error" not in proc.log_path.read_text(), name


async def _ready(http: httpx.AsyncClient, cid: str, token: str) -> bool:
    return (await http.get(f"/v1/communities/{cid}/sessions", headers={"Authorization": f"Bearer {token}"})
            ).status_code == 200

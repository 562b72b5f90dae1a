"""The gateway's OpenAPI document is the contract the server keeps (issue 17, hole 11): schemathesis
runs every check it has against the gateway with every service up, as the operator and as a member.

Excluded by name, because a schema cannot express them:
- ``positive_data_acceptance``: a body that fits the schema can still break a rule of the current
  state or of time (a deadline in the past, a cursor that was never issued, a member who is not in
  the community) and is rightly refused with a 4xx problem.
- ``use_after_free`` and ``ensure_resource_availability`` (stateful checks): Kizuna keeps history, so a
  cancelled job or a member who left stays readable by design.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.reliability.harness import found
from tests.support import SERVICES, Ecosystem, eventually

EXAMPLES = os.environ.get("KIZUNA_FUZZ_EXAMPLES", "4")  # make soak: 100
# The coverage phase (every parameter's boundaries and wrong kinds, every undocumented method: three quarters of
# the run's time) runs in make soak. make test keeps the examples and the fuzzing phase, whose generated input
# is wrong as often as right, beside the strict-input, bad-input and fuzz suites (tests/reliability).
PHASES = os.environ.get("KIZUNA_CONTRACT_PHASES", "examples,fuzzing")
EXCLUDED = "positive_data_acceptance,use_after_free,ensure_resource_availability"


async def test_the_gateway_keeps_its_openapi_contract_for_the_operator(ecosystem: Ecosystem) -> None:
    await keeps_its_contract("operator", ecosystem)


async def keeps_its_contract(caller: str, eco: Ecosystem) -> None:
    """(Each caller's run is a test file of its own, so that ``make test`` runs the two side by side.)"""
    eco.start(*SERVICES, KIZUNA_RATE_LIMIT_PER_SECOND="1000", KIZUNA_RATE_LIMIT_BURST="1000")
    async with httpx.AsyncClient(base_url=eco.url("gateway"), timeout=30) as http:
        cid, _ = await found(http, eco, "Contract")
        joined = await http.post(f"/v1/communities/{cid}/members", headers=eco.operator_headers(),
                                 json={"display_name": "Aiko"})
        member = joined.json()["member_id"]

        async def token() -> str | None:
            answer = await http.post("/v1/tokens", headers=eco.operator_headers(),
                                     json={"community_id": cid, "member_id": member, "ttl_seconds": 3600})
            return answer.json()["token"] if answer.status_code == 201 else None

        bearer = eco.operator_token if caller == "operator" else await eventually(token)

        async def every_service_documented() -> bool:
            document = (await http.get("/openapi.json")).json()
            return "x-unavailable-services" not in document.get("info", {})

        assert await eventually(every_service_documented)
    config = eco.workdir / f"schemathesis-contract-{caller}.toml"
    config.write_text(f'[parameters]\n"path.community_id" = "{cid}"\n"path.member_id" = "{member}"\n')
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "run",
         f"{eco.url('gateway')}/openapi.json", "--checks", "all", "--exclude-checks", EXCLUDED,
         "--max-examples", EXAMPLES, "--header", f"Authorization: Bearer {bearer}", "--request-timeout", "10",
         "--generation-deterministic", "--no-color",
         "--phases", PHASES,
         # The live stream never ends by design (tests/gateway); a member who leaves ends the member's run.
         "--exclude-path-regex", "/events$" if caller == "operator" else "/events$|/leave$"],
        capture_output=True, text=True, timeout=900, cwd=eco.workdir,
    )
    # The full report is kept where KIZUNA_REPORT_DIR says (the test's own folder is removed afterwards).
    reports = Path(os.environ.get("KIZUNA_REPORT_DIR", eco.workdir))
    reports.mkdir(parents=True, exist_ok=True)
    (reports / f"contract-{caller}.txt").write_text(result.stdout + result.stderr)
    assert " passed" in result.stdout and "Tested: 0" not in result.stdout, result.stdout[-3000:]
    # The failures come first in schemathesis' report, its warnings after: show the failures.
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[output.find('FAILURES'):][:8000] or output[-8000:]
    for name, proc in eco.processes.items():
        assert "unhandled error" not in proc.log_path.read_text(), name

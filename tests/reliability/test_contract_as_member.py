"""The gateway's OpenAPI contract as a member's token sees it (tests/reliability/test_contract.py, run from a
file of its own so that ``make test`` runs it beside the operator's)."""

from __future__ import annotations

from tests.reliability.test_contract import keeps_its_contract
from tests.support import Ecosystem


async def test_the_gateway_keeps_its_openapi_contract_for_a_member(ecosystem: Ecosystem) -> None:
    await keeps_its_contract("member", ecosystem)

"""Per-token rate limits, and signing-key rotation: tokens from a retired key stay valid while its
public key is still listed, and a token from an unknown key is refused."""

from __future__ import annotations

import httpx

from kizuna.auth import generate_private_key_pem, issue_token, load_private_key, public_pem
from tests.support import Ecosystem, eventually


async def test_a_token_over_its_burst_gets_429_with_retry_after(ecosystem: Ecosystem) -> None:
    ecosystem.start("members", "gateway", KIZUNA_RATE_LIMIT_BURST="5", KIZUNA_RATE_LIMIT_PER_SECOND="0.5")
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
        founded = (await http.post("/v1/communities", headers=ecosystem.operator_headers(),
                                   json={"name": "Hikari", "owner_display_name": "Yui"})).json()
        cid, owner = founded["community_id"], founded["owner_member_id"]
        mine, other = ecosystem.headers(cid, owner, "owner"), ecosystem.headers(cid, owner, "owner")
        statuses = [(await http.get(f"/v1/communities/{cid}", headers=mine)).status_code for _ in range(8)]
        assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 3, statuses
        limited = await http.get(f"/v1/communities/{cid}", headers=mine)
        assert limited.json()["type"].endswith("/rate-limited") and int(limited.headers["retry-after"]) >= 1
        assert (await http.get(f"/v1/communities/{cid}", headers=other)).status_code == 200, "limits are per token"


async def test_rotated_signing_keys(ecosystem: Ecosystem) -> None:
    retired = load_private_key(generate_private_key_pem())
    stranger = load_private_key(generate_private_key_pem())
    current = public_pem(load_private_key(ecosystem.private_key_pem))
    ecosystem.start("members", "gateway", KIZUNA_JWT_PUBLIC_KEYS=current + "\n" + public_pem(retired))
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
        founded = (await http.post("/v1/communities", headers=ecosystem.operator_headers(),
                                   json={"name": "Hikari", "owner_display_name": "Yui"})).json()
        cid, owner = founded["community_id"], founded["owner_member_id"]

        def bearer(key: object) -> dict[str, str]:
            token = issue_token(key, community_id=cid, member_id=owner, role="owner")  # type: ignore[arg-type]
            return {"Authorization": f"Bearer {token}"}

        assert (await http.get(f"/v1/communities/{cid}", headers=bearer(retired))).status_code == 200
        refused = await http.get(f"/v1/communities/{cid}", headers=bearer(stranger))
        assert refused.status_code == 401 and refused.json()["status"] == 401
        keys = (await http.get("/.well-known/jwks.json")).json()["keys"]
        assert len(keys) == 2, "the JWKS lists the current key and the retired one still accepted"

        async def issued_by_current_key() -> bool:
            response = await http.post("/v1/tokens", headers=ecosystem.operator_headers(),
                                       json={"community_id": cid, "member_id": owner})
            return response.status_code == 201

        await eventually(issued_by_current_key)

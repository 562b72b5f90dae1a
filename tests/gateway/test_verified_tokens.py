"""The authenticator remembers community tokens it verified (token → principal) until they expire."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest

from kizuna.auth import (
    Authenticator,
    generate_private_key_pem,
    issue_token,
    load_private_key,
    load_public_keys,
    public_pem,
)
from kizuna.errors import Unauthorized


def token_id(token: str) -> str:
    jti: str = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["jti"]
    return jti

async def test_a_remembered_token_is_still_refused_once_expired_or_its_key_retired() -> None:
    key = load_private_key(generate_private_key_pem())
    keys = load_public_keys(public_pem(key))
    authenticator = Authenticator("", keys)
    token = issue_token(key, community_id="c", member_id="m", role="owner", ttl_seconds=60)
    first = authenticator.verify(token)
    assert authenticator.verify(token) is first  # remembered: no second signature check
    assert authenticator.verify(token).token_id == token_id(token)

    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthorized):
        authenticator.verify(tampered)

    short = issue_token(key, community_id="c", member_id="m", role="owner", ttl_seconds=1)
    authenticator.verify(short)
    expires = json.loads(base64.urlsafe_b64decode(short.split(".")[1] + "=="))["exp"]
    await asyncio.sleep(max(expires - time.time(), 0) + 0.05)
    with pytest.raises(Unauthorized, match="expired"):
        authenticator.verify(short)

    authenticator.public_keys = {}  # the key is no longer accepted
    with pytest.raises(Unauthorized, match="unknown key"):
        authenticator.verify(token)

    small = Authenticator("", keys)
    small.VERIFIED_TOKENS = 2
    tokens = [issue_token(key, community_id="c", member_id=f"m{n}", role="member") for n in range(3)]
    for t in tokens:
        small.verify(t)
    assert list(small._verified) == tokens[1:]

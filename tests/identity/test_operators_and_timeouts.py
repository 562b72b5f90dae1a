"""Operators who are people (granted with the bootstrap command, then signed in like everyone), and
sessions that end by themselves: idle for too long, or too long since signing in."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg
import httpx

from tests.identity.journey import browser, csrf, sign_in_by_email
from tests.identity.smtp import SmtpInbox
from tests.support import ROOT, Ecosystem

JSON = {"accept": "application/json"}


def operators_command(eco: Ecosystem, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KIZUNA_DATABASE_URL": eco.database_url("identity")}
    return subprocess.run([sys.executable, "-m", "services.identity.operators", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


async def _operator_token(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/v1/me/operator-token", headers={**JSON, "x-csrf-token": await csrf(client)})


async def test_a_person_granted_operator_rights_acts_as_operator_until_signing_out(
        people: Ecosystem, inbox: SmtpInbox) -> None:
    not_yet = operators_command(people, "grant", "ops@example.test")
    assert not_yet.returncode == 1 and "sign in once" in not_yet.stderr
    async with browser(people) as ops, browser(people) as member:
        await sign_in_by_email(ops, inbox, "ops@example.test")
        refused = await _operator_token(ops)
        assert refused.status_code == 403 and refused.json()["type"].endswith("not-an-operator"), refused.text
        granted = operators_command(people, "grant", "Ops@Example.test")
        assert granted.returncode == 0, granted.stderr
        assert "ops@example.test" in operators_command(people, "list").stdout
        assert (await ops.get("/v1/me", headers=JSON)).json()["operator"] is True
        issued = await _operator_token(ops)
        assert issued.status_code == 201, issued.text
        as_operator = {"authorization": f"Bearer {issued.json()['token']}"}
        founded = await ops.post("/v1/communities", headers=as_operator,
                                 json={"name": "Hoshi", "owner_display_name": "Ren"})
        assert founded.status_code == 201, founded.text
        # Someone else, signed in but without rights, gets none.
        await sign_in_by_email(member, inbox, "not-ops@example.test")
        assert (await _operator_token(member)).status_code == 403
        # The token ends with the session.
        assert (await ops.post("/sign-out", data={"csrf_token": await csrf(ops)})).status_code == 303
        after = await ops.post("/v1/communities", headers=as_operator,
                               json={"name": "Tsuki", "owner_display_name": "Ren"})
        assert after.status_code == 401, after.text
        # Withdrawn rights: a new sign-in gets no operator token.
        assert operators_command(people, "withdraw", "ops@example.test").returncode == 0
        await sign_in_by_email(ops, inbox, "ops@example.test")
        assert (await _operator_token(ops)).status_code == 403


async def test_a_session_ends_when_idle_too_long_or_too_long_after_signing_in(
        people: Ecosystem, inbox: SmtpInbox) -> None:
    async with browser(people) as idle, browser(people) as old:
        await sign_in_by_email(idle, inbox, "idle@example.test")
        await sign_in_by_email(old, inbox, "old@example.test")
        connection = await asyncpg.connect(people.database_url("identity"))
        try:
            # Fourteen days and a minute without a request; thirty days and a minute since signing in (seen today).
            await connection.execute(
                "UPDATE browser_sessions SET last_seen_at = now() - interval '14 days 1 minute' "
                "WHERE person_id = (SELECT person_id FROM person_emails WHERE email = 'idle@example.test')")
            await connection.execute(
                "UPDATE browser_sessions SET created_at = now() - interval '30 days 1 minute' "
                "WHERE person_id = (SELECT person_id FROM person_emails WHERE email = 'old@example.test')")
        finally:
            await connection.close()
        assert (await idle.get("/v1/me", headers=JSON)).status_code == 401
        assert (await old.get("/v1/me", headers=JSON)).status_code == 401
        page = await old.get("/me")
        assert page.status_code == 303 and page.headers["location"].startswith("/sign-in")

"""Retention (issue 18, item 5): rows kept only to recognise repeats go once no repeat can come, in every
table that grows — a service's inbox, and the gateway's idempotency answers, received federation messages,
revocations and expired partner keys — while recent rows stay (real PostgreSQL, the gateway's migrations)."""

from __future__ import annotations

import asyncpg

from kizuna.retention import INBOX, sweep
from kizuna.service import migrate
from kizuna.settings import ServiceSettings
from services.gateway.app import SPEC

OLD, RECENT = "now() - interval '40 days'", "now() - interval '1 hour'"


async def test_old_rows_go_and_recent_ones_stay(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        await migrate(pool, SPEC.migrations)
        async with pool.acquire() as conn:
            for age, tag in ((OLD, "old"), (RECENT, "recent")):
                await conn.execute(f"INSERT INTO inbox (consumer, event_id, processed_at) "
                                   f"VALUES ('c-{tag}', gen_random_uuid(), {age})")
                await conn.execute(f"INSERT INTO idempotency (principal, key, request_hash, status, body, created_at) "
                                   f"VALUES ('p', '{tag}', 'h', 201, ''::bytea, {age})")
                await conn.execute(f"INSERT INTO federation_received (message_id, origin, type, received_at) "
                                   f"VALUES ('{tag}', 'https://a.example', 't', {age})")
                await conn.execute(f"INSERT INTO revoked_tokens (token_id, revoked_at) VALUES ('{tag}', {age})")
                await conn.execute(f"INSERT INTO partner_keys (origin, key_id, public_key, valid_until) "
                                   f"VALUES ('https://a.example', '{tag}', 'k', {age})")
            await conn.execute("INSERT INTO partner_keys (origin, key_id, public_key, valid_until) "
                               "VALUES ('https://a.example', 'current', 'k', now() + interval '1 day')")
        deleted = await sweep(pool, SPEC.retention, ServiceSettings())
        assert deleted == {"inbox": 1, "idempotency": 1, "federation_received": 1, "revoked_tokens": 1,
                           "partner_keys": 1}
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT array_agg(consumer) FROM inbox") == ["c-recent"]
            for table, column in (("idempotency", "key"), ("federation_received", "message_id"),
                                  ("revoked_tokens", "token_id")):
                assert await conn.fetchval(f"SELECT array_agg({column}) FROM {table}") == ["recent"], table
            kept = await conn.fetchval("SELECT array_agg(key_id ORDER BY key_id) FROM partner_keys")
            assert kept == ["current", "recent"]
        # The periods are settings: a shorter one lets the recent row go too.
        assert await sweep(pool, [INBOX], ServiceSettings(retention_inbox_days=0.01)) == {"inbox": 1}
    finally:
        await pool.close()

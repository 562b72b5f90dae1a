"""The key vault: one AES key per subject (a member of a community, or a person), in a database of its own.

One vault serves the whole deployment (``KIZUNA_KEYS_DATABASE_URL``, e.g. ``kizuna_keys``): every service seals
and opens personal fields with the same keys (``kizuna.personal``), and the services' own databases — and so
their backups — never hold a key. Erasing a subject deletes its key and leaves a tombstone (the subject id and
when), so that nothing written about the subject afterwards gets a new key: it is stored erased.

Keys are read from the vault on every read that meets a sealed field, never cached beyond one read: once the
erasure commits, no process can open the subject's fields again (docs/data-rights.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import asyncpg

from .personal import new_key, reveal, seal, sealed_subjects, subjects_to_seal

log = logging.getLogger("kizuna.vault")

VAULT_LOCK_KEY = 0x4B5A4B455953  # "KZKEYS": one creator of the vault's table at a time

SCHEMA = """
CREATE TABLE IF NOT EXISTS subject_keys (
    subject    text PRIMARY KEY,            -- member:<member id> or person:<person id>
    key        bytea,                       -- NULL once erased
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at  timestamptz,
    CHECK ((key IS NULL) = (erased_at IS NOT NULL))
);
"""


class KeyVault:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, database_url: str, *, max_size: int = 4, **pool_options: Any) -> KeyVault:
        from .service import create_pool  # the same waiting pool as the service's own database

        pool = await create_pool(database_url, max_size=max_size, **pool_options)
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", VAULT_LOCK_KEY)
            try:
                await conn.execute(SCHEMA)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", VAULT_LOCK_KEY)
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def keys_for_writing(self, subjects: Iterable[str]) -> dict[str, bytes | None]:
        """Each subject's key, made on first use; None for an erased subject (its data is stored erased)."""
        wanted = sorted(set(subjects))
        if not wanted:
            return {}
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """
                WITH made AS (
                    INSERT INTO subject_keys (subject, key) SELECT * FROM unnest($1::text[], $2::bytea[])
                    ON CONFLICT (subject) DO NOTHING RETURNING subject, key)
                SELECT subject, key FROM made
                UNION ALL SELECT subject, key FROM subject_keys WHERE subject = ANY($1::text[])
                """,
                wanted, [new_key() for _ in wanted])
            keys = {row["subject"]: row["key"] for row in rows}
            if missing := [subject for subject in wanted if subject not in keys]:
                # Made by a concurrent writer that committed after this statement's snapshot: visible now.
                rows = await conn.fetch("SELECT subject, key FROM subject_keys WHERE subject = ANY($1::text[])",
                                        missing)
                keys.update({row["subject"]: row["key"] for row in rows})
        return keys

    async def keys_for_reading(self, subjects: Iterable[str]) -> dict[str, bytes | None]:
        wanted = sorted(set(subjects))
        if not wanted:
            return {}
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT subject, key FROM subject_keys WHERE subject = ANY($1::text[])", wanted)
        return {row["subject"]: row["key"] for row in rows}

    async def erase(self, subjects: Iterable[str]) -> None:
        """Deletes the subjects' keys for good (a tombstone stays, so no new key is ever made for them)."""
        wanted = sorted(set(subjects))
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO subject_keys (subject, key, erased_at) SELECT unnest($1::text[]), NULL, now() "
                "ON CONFLICT (subject) DO UPDATE SET key = NULL, erased_at = coalesce(subject_keys.erased_at, now())",
                wanted)
        log.info("subject keys erased", extra={"subjects": wanted})

    async def erased(self, subjects: Iterable[str]) -> set[str]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT subject FROM subject_keys WHERE subject = ANY($1::text[]) "
                                    "AND key IS NULL", sorted(set(subjects)))
        return {row["subject"] for row in rows}

    async def seal_all(self, items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Each (event type, data) as stored: personal fields sealed, one vault round trip for all."""
        subjects = set().union(*(subjects_to_seal(kind, data) for kind, data in items)) if items else set()
        if not subjects:
            return [data for _, data in items]
        keys = await self.keys_for_writing(subjects)
        return [seal(kind, data, keys) for kind, data in items]

    async def reveal_all(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each stored data with its envelopes opened (placeholders where a key is gone), one round trip."""
        subjects = set().union(*(sealed_subjects(data) for data in items)) if items else set()
        keys = await self.keys_for_reading(subjects) if subjects else {}
        return [reveal(data, keys) for data in items]


async def reveal_without_vault(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a reader with no vault sees: every sealed field as its placeholder."""
    return [reveal(data, {}) for data in items]

"""Where an erased person's words could still be: every row of every table of every database of a deployment
(the key vault's included; bytea as hex), every message of every JetStream stream of it (events and dead
letters), and every service's log. Each search returns where it found which of ``secrets`` ({} when nowhere)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import nats

from tests.support import SERVICES, Ecosystem


def hits_in(text: str, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret in text or secret.encode().hex() in text]


async def database_hits(eco: Ecosystem, secrets: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name in [*SERVICES, "keys"]:
        conn = await asyncpg.connect(eco.database_url(name))
        try:
            tables = await conn.fetch("SELECT schemaname, tablename FROM pg_tables "
                                      "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
            for table in tables:
                rows = await conn.fetch(f'SELECT t::text AS row FROM "{table["schemaname"]}"."{table["tablename"]}" t')
                for row in rows:
                    if hits := hits_in(row["row"], secrets):
                        found.setdefault(f"{name}.{table['tablename']}", []).extend(hits)
        finally:
            await conn.close()
    return found


async def stream_hits(eco: Ecosystem, secrets: list[str]) -> dict[str, list[str]]:
    nc = await nats.connect(eco.nats.url)
    found: dict[str, list[str]] = {}
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
            if not name.startswith(eco.prefix.upper()):
                continue
            for sequence in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    message = await js.get_msg(name, sequence)
                except Exception:  # noqa: S112 - a deleted message holds nothing
                    continue
                text = (message.data or b"").decode(errors="replace") + str(message.headers or {})
                if hits := hits_in(text, secrets):
                    found.setdefault(f"{name} {message.subject}", []).extend(hits)
    finally:
        await nc.close()
    return found


def log_hits(eco: Ecosystem, secrets: list[str]) -> dict[str, list[str]]:
    return {path.name: hits for path in Path(eco.workdir).glob("*.log")
            if (hits := hits_in(path.read_text(errors="replace"), secrets))}

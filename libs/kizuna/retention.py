"""Retention: rows kept only to recognise repeats are deleted once no repeat can come any more.

Each rule names a table, the time column that ages its rows and how long they are kept (a setting, so
an operator can lengthen it). Every process of a service sweeps once an hour (``KIZUNA_RETENTION_SWEEP_
SECONDS``), in batches so no sweep holds locks for long; two replicas sweeping at once only delete
the same rows. What each table is for and why its default is safe is in docs/operations.md, "Retention".
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from .settings import ServiceSettings

if TYPE_CHECKING:
    from .service import Runtime

log = logging.getLogger("kizuna.retention")
BATCH = 5000
_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class Retention:
    table: str
    column: str  # a timestamptz column: rows older than the kept period go
    keep_seconds: Callable[[ServiceSettings], float]

    def __post_init__(self) -> None:
        if not (_NAME.fullmatch(self.table) and _NAME.fullmatch(self.column)):  # spliced into the statement
            raise ValueError(f"not a plain table and column name: {self.table}.{self.column}")


# Every service's inbox: which bus messages each consumer applied. JetStream redelivers within minutes
# and each read model also keeps the last version it applied per source stream, so two weeks is ample.
INBOX = Retention("inbox", "processed_at", lambda s: s.retention_inbox_days * 86400)


async def sweep(pool: asyncpg.Pool, rules: Sequence[Retention], settings: ServiceSettings) -> dict[str, int]:
    """Deletes what every rule lets go; returns the rows deleted per table."""
    deleted: dict[str, int] = {}
    for rule in rules:
        statement = (f"DELETE FROM {rule.table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {rule.table} "  # noqa: S608 - checked names
                     f"WHERE {rule.column} < now() - make_interval(secs => $1) LIMIT {BATCH}))")
        total = 0
        while True:
            async with pool.acquire() as conn:
                status = await conn.execute(statement, float(rule.keep_seconds(settings)))
            count = int(status.split()[-1])
            total += count
            if count < BATCH:
                break
        deleted[rule.table] = total
    return deleted


async def trim_forever(runtime: Runtime, rules: Sequence[Retention]) -> None:
    """The background job: sweep now, then every ``retention_sweep_seconds``."""
    while True:
        try:
            deleted = await sweep(runtime.pool, rules, runtime.settings)
            if any(deleted.values()):
                log.info("retention sweep", extra={"deleted": deleted})
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the database away: try again next time
            log.warning("retention sweep failed", extra={"error": repr(error)})
        await asyncio.sleep(runtime.settings.retention_sweep_seconds)

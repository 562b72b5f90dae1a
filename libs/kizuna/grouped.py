"""Writing a read model many events at a time (rebuilds, consumers that fetched a batch)."""

from __future__ import annotations

from typing import Any

import asyncpg


class GroupedWrites:
    """The connection projections see during a replay: consecutive executions of one statement go to the
    server as one ``executemany`` (one round trip for the run). Anything else sends what is queued
    first, so statements run in exactly the order the projections issued them. Projections must not
    use the status string ``execute`` returns (none do)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._sql: str | None = None
        self._args: list[tuple[Any, ...]] = []

    async def execute(self, sql: str, *args: Any) -> str:
        if not args:
            await self.flush()
            return str(await self._conn.execute(sql))
        if sql != self._sql:
            await self.flush()
            self._sql = sql
        self._args.append(args)
        return ""

    async def flush(self) -> None:
        if self._sql is None:
            return
        sql, runs = self._sql, self._args
        self._sql, self._args = None, []
        if len(runs) == 1:
            await self._conn.execute(sql, *runs[0])
        else:
            await self._conn.executemany(sql, runs)

    async def executemany(self, sql: str, args: Any) -> None:
        await self.flush()
        await self._conn.executemany(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        await self.flush()
        return list(await self._conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        await self.flush()
        return await self._conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        await self.flush()
        return await self._conn.fetchval(sql, *args)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"projections may not call Connection.{name} during a replay")

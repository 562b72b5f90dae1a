"""One active runner per database, fenced: the outbox relay and the federation deliverer.

The runner holds a session advisory lock on a connection of its own (never a pooled one: the pool
would hand that session to someone else). A session lock lasts exactly as long as its session, so the
connection answering proves the lock is still held; runners ``check`` before every batch they publish
or send, and stop the moment it fails — another process may hold the lock by then. The others stand by,
trying the lock every ``retry_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

FENCE_TIMEOUT_SECONDS = 2.0


class LostLock(RuntimeError):
    """The lock connection stopped answering: another runner may be active now."""


class SessionLock:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def check(self) -> None:
        try:
            await self.connection.fetchval("SELECT 1", timeout=FENCE_TIMEOUT_SECONDS)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
            raise LostLock(repr(error)) from error


@contextlib.asynccontextmanager
async def holding(database_url: str, key: int, name: str, retry_seconds: float = 1.0) -> AsyncIterator[SessionLock]:
    """Waits until this process holds lock ``key`` and yields it; leaving closes the connection, which
    releases the lock. The connection is named ``name`` in pg_stat_activity and stays open while it waits,
    so every running process of a service shows there (``kizuna.rebuild`` refuses while one does)."""
    while True:
        try:
            connection = await asyncpg.connect(database_url, server_settings={"application_name": name})
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(retry_seconds)
            continue
        try:
            while not await connection.fetchval(  # noqa: ASYNC110 - polling a lock held elsewhere
                    "SELECT pg_try_advisory_lock($1)", key):
                await asyncio.sleep(retry_seconds)
            break
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            connection.terminate()  # broken: a polite close would wait for an answer that never comes
            await asyncio.sleep(retry_seconds)
        except BaseException:
            await _close(connection)
            raise
    try:
        yield SessionLock(connection)
    finally:
        await _close(connection)


async def _close(connection: asyncpg.Connection) -> None:
    try:
        await connection.close(timeout=2)
    except Exception:
        connection.terminate()

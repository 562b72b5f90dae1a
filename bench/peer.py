"""The `eventsourcing` library's PostgreSQL recorder as a peer for appends (installed only for the benchmark:
``pip install -e '.[bench]'``; never a runtime dependency).

``PostgresApplicationRecorder`` is the comparable recorder: like Kizuna's store it gives every event a
position in one total order that readers follow (its ``notification_id``), and it keeps readers from
skipping a late commit by locking the table for each insert (Kizuna uses ``xid8`` and an advisory lock
per stream instead). It is synchronous (psycopg 3), so the 16 writers are 16 threads.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from bench.core import payload

NAMESPACE = uuid.UUID("6b697a75-6e61-4265-6e63-680000000000")


def available() -> str | None:
    """None when the library can be used, else why not."""
    try:
        import eventsourcing.postgres  # noqa: F401
    except ImportError as error:
        return f"the eventsourcing library is not installed ({error}); `pip install -e '.[bench]'`"
    return None


def _recorder(url: str, writers: int) -> object:
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    parts = urlsplit(url)
    datastore = PostgresDatastore(dbname=parts.path.lstrip("/"), host=parts.hostname or "127.0.0.1",
                                  port=parts.port or 5432, user=parts.username or "postgres",
                                  password=parts.password or "", pool_size=writers, max_overflow=0)
    recorder = PostgresApplicationRecorder(datastore, events_table_name="peer_events")
    recorder.create_table()
    return recorder


def _event(stream: uuid.UUID, version: int, n: int) -> object:
    from eventsourcing.persistence import StoredEvent

    return StoredEvent(originator_id=stream, originator_version=version, topic="bench:MemberJoined",
                       state=json.dumps(payload(n)).encode())


class Peer:
    """One recorder with a connection per writer thread."""

    def __init__(self, url: str, writers: int) -> None:
        self.recorder = _recorder(url, writers)
        self.threads = ThreadPoolExecutor(writers)
        self.lock = threading.Lock()

    async def singles(self, w: int, lo: int, hi: int, advance: Callable[[], None]) -> None:
        """Writer ``w``'s events ``lo``..``hi``, one insert each, on 50 streams (as Kizuna's writers do)."""
        insert = self.recorder.insert_events  # type: ignore[attr-defined]

        def write() -> None:
            for n in range(lo, hi):
                insert([_event(uuid.uuid5(NAMESPACE, f"{w}-{n % 50}"), n // 50 + 1, n)])
                with self.lock:
                    advance()

        await asyncio.get_running_loop().run_in_executor(self.threads, write)

    async def batch(self, stream: uuid.UUID, b: int) -> None:
        insert = self.recorder.insert_events  # type: ignore[attr-defined]
        await asyncio.get_running_loop().run_in_executor(
            self.threads, insert, [_event(stream, b * 100 + n + 1, n) for n in range(100)])

    def close(self) -> None:
        self.threads.shutdown()
        self.recorder.datastore.close()  # type: ignore[attr-defined]

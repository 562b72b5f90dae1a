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
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from bench.core import payload
from kizuna.progress import Progress

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


async def peer_rates(url: str, writers: int, per_writer: int, batches: int) -> tuple[float, float]:
    """Single events from ``writers`` threads on 50 streams each, then batches of 100 to one stream."""
    recorder = _recorder(url, writers)
    insert = recorder.insert_events  # type: ignore[attr-defined]
    progress = Progress(f"append: eventsourcing PostgresApplicationRecorder, {writers} writers",
                        writers * per_writer)
    lock = threading.Lock()

    def writer(w: int) -> None:
        for n in range(per_writer):
            stream = uuid.uuid5(NAMESPACE, f"{w}-{n % 50}")
            insert([_event(stream, n // 50 + 1, n)])
            with lock:
                progress.advance()

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(writers) as pool:
        start = time.perf_counter()
        await asyncio.gather(*(loop.run_in_executor(pool, writer, w) for w in range(writers)))
        single = writers * per_writer / (time.perf_counter() - start)
    progress.finish()

    stream = uuid.uuid4()

    def batch() -> None:
        for b in range(batches):
            insert([_event(stream, b * 100 + n + 1, n) for n in range(100)])

    start = time.perf_counter()
    await asyncio.to_thread(batch)
    batched = batches * 100 / (time.perf_counter() - start)
    recorder.datastore.close()  # type: ignore[attr-defined]
    return single, batched

"""A lean HTTP/1.1 keep-alive client for load generation.

httpx costs a millisecond or so of CPU per request; on two cores shared with the servers under test
that would distort what we measure. This client only writes a request and reads a Content-Length
body, which is all the gateway and the bare baseline ever answer with.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpClient:
    def __init__(self, host: str, port: int, max_connections: int = 256) -> None:
        self.host, self.port = host, port
        self._idle: list[Conn] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: Any = None) -> tuple[int, bytes]:
        data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(data)}"]
        if body is not None and not isinstance(body, bytes):
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + data
        async with self._slots:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
            try:
                status, content, keep = await self._exchange(conn, raw)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                conn[1].close()
                # A kept-alive connection the server closed while idle: nothing was read, so send again.
                if not reused or (isinstance(error, asyncio.IncompleteReadError) and error.partial):
                    raise
                conn = await asyncio.open_connection(self.host, self.port)
                status, content, keep = await self._exchange(conn, raw)
            if keep:
                self._idle.append(conn)
            else:
                conn[1].close()
            return status, content

    @staticmethod
    async def _exchange(conn: Conn, raw: bytes) -> tuple[int, bytes, bool]:
        reader, writer = conn
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length, keep = 0, True
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
            elif name == "transfer-encoding":
                raise ValueError("chunked responses are not supported by the benchmark client")
        content = await reader.readexactly(length) if length else b""
        return status, content, keep

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()

"""``python -m bench.load``: a closed-loop load generator in its own process.

Each of ``--concurrency`` workers sends the same GET over its own keep-alive connection as soon as
the previous answer arrives. After ``--warmup`` seconds it counts for ``--seconds`` and prints one
JSON line: requests, errors, rate and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from bench.core import percentile
from bench.http import HttpClient


async def generate(host: str, port: int, path: str, headers: dict[str, str], seconds: float, warmup: float,
                   concurrency: int) -> dict[str, float]:
    client = HttpClient(host, port, concurrency)
    start = time.perf_counter()
    counting_from, until = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}

    async def worker() -> None:
        nonlocal errors
        while (now := time.perf_counter()) < until:
            try:
                status, _ = await client.request("GET", path, headers)
            except (OSError, asyncio.IncompleteReadError):
                status = 0
            done = time.perf_counter()
            if now >= counting_from:
                if status == 200:
                    latencies.append(done - now)
                else:
                    errors += 1
                    statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await client.close()
    return {"requests": len(latencies), "errors": errors, "seconds": seconds, "rate": len(latencies) / seconds,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "statuses": statuses}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--path", required=True)
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    result = asyncio.run(generate(args.host, args.port, args.path, headers, args.seconds, args.warmup,
                                  args.concurrency))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

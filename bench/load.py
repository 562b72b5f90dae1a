"""``python -m bench.load``: a closed-loop load generator in its own process.

Each of ``--concurrency`` workers sends the same GET over its own keep-alive connection as soon as
the previous answer arrives. After ``--warmup`` seconds it counts for ``--seconds`` and prints one
JSON line: requests, errors, rate and latency percentiles. With several ``--path``, one sample is all of
them read in turn (a client gathering what one page shows); with ``--identities`` (a JSON list of header
sets) worker i sends set i modulo their number — different people, as a page's load has.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from bench.core import percentile
from bench.http import HttpClient


async def generate(host: str, port: int, paths: list[str], headers: dict[str, str], seconds: float,
                   warmup: float, concurrency: int, identities: list[dict[str, str]] | None = None) -> dict[str, float]:
    client = HttpClient(host, port, concurrency)
    people = identities or [{}]
    start = time.perf_counter()
    counting_from, until = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}

    async def worker(n: int) -> None:
        nonlocal errors
        sent = {**headers, **people[n % len(people)]}
        while (now := time.perf_counter()) < until:
            status = 200
            for path in paths:
                try:
                    status, _ = await client.request("GET", path, sent)
                except (OSError, asyncio.IncompleteReadError):
                    status = 0
                if status != 200:
                    break
            done = time.perf_counter()
            if now >= counting_from:
                if status == 200:
                    latencies.append(done - now)
                else:
                    errors += 1
                    statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    await client.close()
    return {"requests": len(latencies), "errors": errors, "seconds": seconds, "rate": len(latencies) / seconds,
            "p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "statuses": statuses}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--path", action="append", required=True, help="one or more, read in turn per sample")
    parser.add_argument("--identities", type=Path, help="a JSON list of header sets, one per worker in turn")
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    identities = json.loads(args.identities.read_text()) if args.identities else None
    result = asyncio.run(generate(args.host, args.port, args.path, headers, args.seconds, args.warmup,
                                  args.concurrency, identities))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

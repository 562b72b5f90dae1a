"""Forwarding to the internal services: timeouts, problem bodies for failures, idempotent retries
and body limits (rate limits are in rate_limits.py)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

import httpx
from fastapi import Request, Response

from kizuna.auth import Principal
from kizuna.problems import problem_response
from kizuna.telemetry import current_trace_headers

FORWARDED_HEADERS = ("authorization", "if-match", "x-correlation-id", "content-type", "accept", "idempotency-key")
PASSED_BACK_HEADERS = ("etag", "content-type", "location", "retry-after", "content-disposition", "allow")
MAX_BODY_BYTES = 256 * 1024


async def forward(client: httpx.AsyncClient, base_url: str | Sequence[str], request: Request, body: bytes,
                  upstream_timeout: float, *, path: str | None = None, authorization: str | None = None) -> Response:
    """``path`` and ``authorization`` replace the caller's (the front door maps its routes and acts for visitors).
    ``base_url`` may list a service's replicas: requests take turns, and one refused before anything was sent
    (the replica is down) goes to the next — only then, since only then is nothing known to be written."""
    if path is None:
        # The raw, still percent-encoded path: decoded, it may hold characters no URL may carry.
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        path = raw_path.decode("latin-1").removeprefix("/v1")
    headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
    if authorization is None:  # the caller's token, re-signed when their role has changed since it was issued
        authorization = getattr(request.state, "forward_authorization", None)
    if authorization is not None:
        headers["authorization"] = authorization
    headers.update(current_trace_headers())
    upstream: httpx.Response | None = None
    for base in in_turn([base_url] if isinstance(base_url, str) else base_url):
        try:
            upstream = await client.request(request.method, f"{base}{path}", params=request.query_params,
                                            content=body, headers=headers, timeout=upstream_timeout)
            break
        except httpx.ConnectError:  # refused before anything was sent: nothing written; the next replica may answer
            continue
        except httpx.TimeoutException:
            return problem_response(504, "upstream-timeout", "Upstream timeout",
                                    "the service did not answer in time; the write may or may not have happened — "
                                    "retry with the same Idempotency-Key", request.url.path)
        except httpx.TransportError:
            return problem_response(502, "upstream-connection-lost", "Upstream connection lost",
                                    "the connection to the service broke during the request; the write may or may "
                                    "not have happened — retry with the same Idempotency-Key", request.url.path,
                                    headers={"Retry-After": "5"})
    if upstream is None:
        return problem_response(503, "service-unavailable", "Service unavailable",
                                "the service behind this route is not reachable; nothing was written",
                                request.url.path, headers={"Retry-After": "5"})
    passed = {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_BACK_HEADERS}
    return Response(upstream.content, status_code=upstream.status_code, headers=passed)


_turns = itertools.count()


def in_turn(replicas: Sequence[str]) -> list[str]:
    """A service's replicas, starting with the one whose turn it is (requests take turns across them)."""
    first = next(_turns) % len(replicas)
    return [*replicas[first:], *replicas[:first]]


def request_fingerprint(request: Request, body: bytes) -> str:
    return hashlib.sha256(request.method.encode() + request.url.path.encode() + b"\n" + body).hexdigest()


def principal_key(who: Principal) -> str:
    return who.actor if who.is_operator else f"{who.community_id}:{who.member_id}"

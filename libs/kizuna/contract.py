"""The OpenAPI document tells the truth: the statuses a route can answer, the media type of its
errors, and which routes need no token.

FastAPI documents the responses a route declares; a Kizuna route can also answer what the backbone
answers for every route (an unauthenticated call, a role too weak, a community that is not yours,
a write that conflicts, a database away), always as ``application/problem+json``. This pass adds
those to every operation once, so generated clients and schemathesis see the contract the server
keeps (tests/reliability/test_contract.py).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from .problems import PROBLEM_MEDIA_TYPE

PROBLEM_SCHEMA = {"$ref": "#/components/schemas/ProblemDetails"}
WRITES = {"post", "put", "patch", "delete"}
PUBLIC_PATHS: tuple[str, ...] = ("/healthz", "/readyz")
BEARER = {"bearer": {"type": "http", "scheme": "bearer",
                     "description": "The operator token, or a community token from POST /v1/tokens (EdDSA JWT)."}}

_DESCRIPTIONS = {
    "400": "Bad request", "401": "Authentication required: no token, or one expired, tampered or revoked",
    "403": "Forbidden: the token's role or scope may not do this",
    "404": "Not found (a community that is not the token's is answered the same way)",
    "409": "Conflict: the state changed, or the write breaks a rule of the current state",
    "413": "Request body too large", "422": "Invalid input: each field named",
    "429": "Too many requests (Retry-After says when to try again)",
    "502": "The service's connection broke mid-request: the write may or may not have happened",
    "503": "A dependency is unavailable; retry shortly (Retry-After)",
    "504": "The service did not answer in time: retry with the same Idempotency-Key",
}


def is_public(path: str, public_paths: Sequence[str]) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in public_paths)


def truthful(document: dict[str, Any], public_paths: Sequence[str] = PUBLIC_PATHS,
             extra_statuses: Sequence[str] = ()) -> dict[str, Any]:
    """A copy of ``document`` with every operation's real error statuses and security declared."""
    doc = copy.deepcopy(document)
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(BEARER)
    doc["security"] = [{"bearer": []}]
    for path, operations in doc.get("paths", {}).items():
        public = is_public(path, public_paths)
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            declare_errors(operation, method, public, extra_statuses)
    return doc


def declare_errors(operation: dict[str, Any], method: str, public: bool, extra_statuses: Sequence[str]) -> None:
    responses: dict[str, Any] = operation["responses"]
    statuses = ["503", *extra_statuses]
    if public:
        operation["security"] = []
    else:
        operation.setdefault("security", [{"bearer": []}])
        statuses += ["401", "403", "404"]
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.append("422")
    if operation.get("requestBody"):
        statuses.append("400")  # a body that is not JSON at all
    if method in WRITES and not public:
        statuses.append("409")
    for status in statuses:
        responses.setdefault(status, {"description": _DESCRIPTIONS[status]})
    for status, response in responses.items():
        if status[:1] not in ("4", "5"):
            continue
        content = response.setdefault("content", {})
        if status == "503" and "application/json" in content and "ProblemDetails" not in str(content):
            continue  # /readyz answers its readiness report with 503
        content.pop("application/json", None)
        content[PROBLEM_MEDIA_TYPE] = {"schema": PROBLEM_SCHEMA}

"""RFC 9457 problem details for every error a Kizuna API returns."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .errors import Problem

log = logging.getLogger("kizuna.http")

PROBLEM_BASE = "https://kizuna.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

_TITLES = {400: "Bad request", 401: "Authentication required", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 410: "Gone", 413: "Request body too large",
           415: "Unsupported media type", 422: "Invalid input", 429: "Too many requests",
           503: "Service unavailable", 504: "Upstream timeout"}


def problem_body(status: int, slug: str, title: str, detail: str, instance: str | None = None,
                 **extensions: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return body


def problem_response(status: int, slug: str, title: str, detail: str, instance: str | None = None,
                     headers: dict[str, str] | None = None, **extensions: Any) -> JSONResponse:
    return JSONResponse(problem_body(status, slug, title, detail, instance, **extensions), status_code=status,
                        media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _field_error(err: Any) -> dict[str, Any]:
    """One field's error: its name, pydantic's sentence, and — for a client that says it in its own words — the
    error's stable ``type`` and its limits (``ctx``: the scalars only, e.g. ``{"max_length": 120}``)."""
    error: dict[str, Any] = {"field": _field_name(err.get("loc", ())), "message": err.get("msg", "invalid"),
                             "type": err.get("type", "invalid")}
    limits = {key: value for key, value in (err.get("ctx") or {}).items()
              if isinstance(value, str | int | float | bool) and key != "error"}
    if limits:
        error["ctx"] = limits
    return error


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.slug, exc.title, exc.detail, request.url.path, **exc.extensions)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_field_error(err) for err in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(422, "validation-error", "Invalid input", detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = _TITLES.get(exc.status_code, "Error")
        slug = title.lower().replace(" ", "-")
        return problem_response(exc.status_code, slug, title, str(exc.detail), request.url.path,
                                headers=getattr(exc, "headers", None))

    @app.exception_handler(asyncpg.exceptions.DataError)
    async def _data(request: Request, exc: asyncpg.exceptions.DataError) -> JSONResponse:
        # SQLSTATE class 22 is always about a value the caller sent (a NUL character in text, a number
        # out of range…); the transaction rolled back, so nothing was written.
        detail = "a value in the request cannot be stored"
        bad_text = (asyncpg.exceptions.CharacterNotInRepertoireError, asyncpg.exceptions.UntranslatableCharacterError)
        if isinstance(exc, bad_text):
            detail = "text must not contain NUL (\\u0000) characters"
        return problem_response(422, "validation-error", "Invalid input", detail, request.url.path,
                                errors=[{"field": "body", "message": detail}])

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # The caller left before its body arrived (a closed tab, a cancelled fetch): nothing was read, so
        # nothing was written, and nobody is there to answer. Not an error of ours.
        log.info("client disconnected before its request arrived", extra={"path": request.url.path})
        return problem_response(400, "client-disconnected", "Bad request",
                                "the request ended before its body arrived; nothing was written", request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(500, "internal-error", "Internal error",
                                "the request could not be completed; nothing was written", request.url.path)

    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Handled here rather than by the catch-all above: that one re-raises to the server, which then
        # drops the keep-alive connection and the client's next request on it fails with no answer.
        if isinstance(exc, asyncpg.InterfaceError) and "closed" not in str(exc):
            return await _unexpected(request, exc)  # a programming error, not an outage
        log.warning("database unavailable", extra={"path": request.url.path, "error": repr(exc)})
        return problem_response(503, "service-unavailable", "Service unavailable",
                                "the service's database is not reachable; retry shortly (a write answered "
                                "this way may or may not have been recorded)", request.url.path,
                                headers={"Retry-After": "2"})

    for unavailable in (ConnectionError, asyncpg.PostgresConnectionError,
                        asyncpg.exceptions.OperatorInterventionError, asyncpg.InterfaceError):
        app.add_exception_handler(unavailable, _database_unavailable)


class FieldError(BaseModel):
    field: str
    message: str
    type: str | None = Field(None, description="For input the schema refused: pydantic's error type "
                                                "(missing, string_too_long, extra_forbidden…)")
    ctx: dict[str, Any] | None = Field(None, description="That error's limits, e.g. {\"max_length\": 120}")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; extra members (``errors``, ``current_state``…) depend on the type."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"example": {
        "type": PROBLEM_BASE + "community-full", "title": "Community full", "status": 409,
        "detail": "community has reached its cap of 150 members", "instance": "/communities/…/members",
    }})
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDetails, "description": title}
    for status, title in {401: "Authentication required", 403: "Forbidden", 404: "Not found",
                          409: "Conflict", 422: "Invalid input"}.items()
}

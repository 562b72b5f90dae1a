"""Typed errors the HTTP layer turns into RFC 9457 problem responses."""

from __future__ import annotations

from typing import Any


class Problem(Exception):
    """A refusal with a stable problem type; ``extensions`` become extra members of the body."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, status: int | None = None, slug: str | None = None,
                 title: str | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if slug is not None:
            self.slug = slug
        if title is not None:
            self.title = title
        self.extensions = extensions


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


class Forbidden(Problem):
    status, slug, title = 403, "forbidden", "Forbidden"


class Unauthorized(Problem):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Conflict(Problem):
    status, slug, title = 409, "conflict", "Conflict"


class Gone(Problem):
    status, slug, title = 410, "gone", "Gone"


class Invalid(Problem):
    """A domain rule refused the input; ``field`` names what is wrong."""

    status, slug, title = 422, "validation-error", "Invalid input"

    def __init__(self, field: str, detail: str, **extensions: Any) -> None:
        super().__init__(f"{field}: {detail}", errors=[{"field": field, "message": detail}], **extensions)


class ConcurrencyConflict(Conflict):
    """The stream moved on since the caller read it: reload and decide again."""

    slug, title = "concurrency-conflict", "Concurrent modification"

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id} is at version {actual}, not {expected}",
            stream_id=stream_id, expected_version=expected, actual_version=actual,
        )
        self.stream_id, self.expected, self.actual = stream_id, expected, actual

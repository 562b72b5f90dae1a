"""Typed errors the HTTP layer turns into RFC 9457 problem responses."""

from __future__ import annotations

from typing import Any


def reason(sentence: str) -> str:
    """Marks a refusal's sentence chosen by a condition (``reason("…") if … else reason("…")``) so that
    `make messages` extracts it like the first argument of every problem raised."""
    return sentence


def filled(sentence: str, values: dict[str, Any]) -> str:
    """A refusal's sentence with its values: ``{size}`` is the body member ``size``. The sentence stays a
    template in the source, so a client can find it in its catalogue and say it with the same values."""
    if "{" not in sentence or not values:
        return sentence
    try:
        return sentence.format(**values)
    except (KeyError, IndexError, ValueError):
        return sentence


class Problem(Exception):
    """A refusal with a stable problem type; ``extensions`` become extra members of the body, and fill the
    ``{placeholders}`` of ``detail``."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, status: int | None = None, slug: str | None = None,
                 title: str | None = None, **extensions: Any) -> None:
        detail = filled(detail, extensions)
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
        super().__init__(f"{field}: {detail}", errors=[{"field": field, "message": filled(detail, extensions)}],
                         **extensions)


class ConcurrencyConflict(Conflict):
    """The stream moved on since the caller read it: reload and decide again."""

    slug, title = "concurrency-conflict", "Concurrent modification"

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id} is at version {actual}, not {expected}",
            stream_id=stream_id, expected_version=expected, actual_version=actual,
        )
        self.stream_id, self.expected, self.actual = stream_id, expected, actual

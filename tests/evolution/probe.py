"""A test-only event whose shape changed, to prove upcasting without changing a production event.

Version 1 of ``ProbeNoted`` said ``{"text": …}``; version 2 says ``{"note": …, "language": …}``. Importing
this module is what teaches a process version 2 (the class and the upcaster register themselves)."""

from __future__ import annotations

from typing import Any, ClassVar

from kizuna.domain import DomainEvent
from kizuna.upcasting import upcaster


class ProbeNoted(DomainEvent):
    schema_version: ClassVar[int] = 2
    note: str
    language: str


@upcaster("ProbeNoted", from_version=1)
def _probe_noted_from_v1(data: dict[str, Any]) -> dict[str, Any]:
    # Version 1 had no language: every probe note written then was Japanese.
    return {"note": data.pop("text"), "language": "ja", **data}

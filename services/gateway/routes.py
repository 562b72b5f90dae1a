"""Which methods each public path answers, from the merged OpenAPI document (services/gateway/openapi.py).

The gateway forwards every /v1 path it does not serve itself; without this, a method a resource does
not support would be forwarded to whichever service owns the prefix, or answered 404 when the path is
one of the gateway's own. With it, such a request gets 405 and an ``Allow`` header listing exactly the
documented methods (RFC 9110 §15.5.6), as the contract says.
"""

from __future__ import annotations

import re
from typing import Any

from .openapi import MergedOpenAPI

METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


class RouteTable:
    def __init__(self, merged: MergedOpenAPI) -> None:
        self.merged = merged
        self._document: dict[str, Any] | None = None
        self._routes: list[tuple[re.Pattern[str], frozenset[str]]] = []

    async def methods_for(self, path: str) -> frozenset[str] | None:
        """The documented methods of ``path``, or None when no documented path matches it."""
        document = await self.merged.document()
        if document is not self._document:
            self._routes = [(self._pattern(template), frozenset(m.upper() for m in operations if m in METHODS))
                            for template, operations in document.get("paths", {}).items()]
            self._document = document
        allowed = [methods for pattern, methods in self._routes if pattern.fullmatch(path)]
        if not allowed:
            return None
        return frozenset().union(*allowed)

    @staticmethod
    def _pattern(template: str) -> re.Pattern[str]:
        parts = re.split(r"(\{[^}]+\})", template)
        return re.compile("".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts))

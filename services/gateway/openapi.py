"""The gateway's OpenAPI document: its own routes plus every service route it forwards, under /v1.

Each service's document is fetched from the service (so it is always the running contract), its
paths prefixed with /v1 and its schemas merged; a service that is down is left out until it is back.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import httpx
from fastapi import FastAPI

from kizuna.contract import declare_errors

CACHE_SECONDS = 60.0
FRONT_DOORS = ("/v1/join/", "/v1/calendar/", "/v1/notifications/")
# What forwarding itself may answer: a body over the limit, a caller over its rate, a service away,
# broken or slow (services/gateway/proxy.py).
FORWARDING_STATUSES = ("413", "429", "502", "503", "504")


class MergedOpenAPI:
    def __init__(self, app: FastAPI, services: dict[str, str], http: httpx.AsyncClient) -> None:
        self.app, self.services, self.http = app, services, http
        self._cached: dict[str, Any] | None = None
        self._built_at = 0.0

    async def document(self) -> dict[str, Any]:
        if self._cached is not None and time.monotonic() - self._built_at < CACHE_SECONDS:
            return self._cached
        merged = copy.deepcopy(self.app.openapi())
        paths, schemas = merged.setdefault("paths", {}), merged.setdefault("components", {}).setdefault("schemas", {})
        missing = []
        for name, base in self.services.items():
            try:
                response = await self.http.get(f"{base}/openapi.json", timeout=5)
                response.raise_for_status()
                service_doc = response.json()
            except (httpx.HTTPError, ValueError):
                missing.append(name)
                continue
            for path, operations in service_doc.get("paths", {}).items():
                if path in ("/healthz", "/readyz"):
                    continue
                for method, operation in operations.items():
                    operation.setdefault("tags", []).append(name)
                    operation["security"] = [{"bearer": []}]
                    declare_errors(operation, method, public=False, extra_statuses=FORWARDING_STATUSES)
                paths[f"/v1{path}"] = operations
            for schema_name, schema in service_doc.get("components", {}).get("schemas", {}).items():
                schemas.setdefault(schema_name, schema)
        for path, operations in paths.items():  # the front door forwards too
            if path.startswith(FRONT_DOORS):
                for method, operation in operations.items():
                    declare_errors(operation, method, public=True, extra_statuses=FORWARDING_STATUSES)
        if missing:
            merged["info"]["x-unavailable-services"] = missing
            return merged  # not cached: try again on the next request
        self._cached, self._built_at = merged, time.monotonic()
        return merged

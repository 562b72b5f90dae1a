"""``python -m bench.bare PORT PATH BODY_FILE``: the gateway-throughput baseline.

A bare FastAPI app with one route at the same path, returning the same JSON from memory, served by
``kizuna.serve.serve`` — the very function (and so the uvicorn settings) every service runs with.
No authentication, no database, no middleware: the limit of the framework and server on this machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from kizuna.serve import serve
from kizuna.settings import ServiceSettings


def create_app(path: str, body: dict[str, Any]) -> FastAPI:
    app = FastAPI()

    @app.get(path)
    async def same_json() -> dict[str, Any]:
        return body

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    port, route, body_file = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    serve(create_app(route, json.loads(body_file.read_text())),
          ServiceSettings(service_name="bare", http_host="127.0.0.1", http_port=port))

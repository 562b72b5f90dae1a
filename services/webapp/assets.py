"""The app's few files of its own — one stylesheet and three small scripts — served from /app/static/ (the
pages' Content-Security-Policy allows styles and scripts from this site only, none inline)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from kizuna.errors import NotFound

router = APIRouter()
STATIC = Path(__file__).parent / "static"
FILES = {"live.js": "text/javascript", "progress.js": "text/javascript", "standing.js": "text/javascript",
         "app.css": "text/css"}


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    if name not in FILES:
        raise NotFound("no such file")
    return FileResponse(STATIC / name, media_type=FILES[name], headers={"cache-control": "no-cache"})

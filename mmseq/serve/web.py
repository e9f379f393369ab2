"""The web page at `/`: plain HTML, JavaScript and CSS from mmseq/serve/static (no build step)
that call this server's own /v1 API. The files are open without the API key (they hold no
data; the page asks for the key and sends it to /v1 as a Bearer token)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mmseq.serve.errors import APIError

STATIC = Path(__file__).parent / "static"
CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# Same origin only: no CDN, fonts or inline script; blob: is the user's own audio or image,
# data: the empty icon.
POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index(request: Request) -> Response:
    return _send("index.html", request)


@router.get("/static/{name}")
async def static(name: str, request: Request) -> Response:
    if name not in CONTENT_TYPES:  # the three files only: no path is ever joined
        raise APIError(404, f"Not found: /static/{name}", code="not_found")
    return _send(name, request)


@cache
def _read(name: str) -> tuple[bytes, str]:
    """The file and its ETag, read once (the files change only with the package)."""
    body = (STATIC / name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def _send(name: str, request: Request) -> Response:
    """no-cache: the browser keeps the file but asks each time, and gets 304 while its ETag
    matches, so a new mmseq version's page is never mixed with an old script."""
    body, etag = _read(name)
    headers = {
        "ETag": etag,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": POLICY,
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=CONTENT_TYPES[name], headers=headers)

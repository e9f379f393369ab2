"""The gate every request passes before a route reads it: the API key, then the body size.

The body is counted as it streams in, whatever Content-Length says (a lying or missing one,
chunked transfer): past `max_upload_bytes` the request is answered 413 with OpenAI's body. A
refused request's body is first read to its end and dropped, up to `max_upload_bytes` more, so
that a client still sending it reads the answer rather than a reset connection; a larger rest
is not read (the connection is then closed under the client).
"""

from __future__ import annotations

import hmac
from typing import Any

from mmseq.serve.errors import APIError

# answered without an API key: probes, and the web page at / (mmseq.serve.web; it asks for it)
OPEN_PATHS = ("/health", "/ready", "/metrics", "/static/")


class UploadTooLarge(APIError):
    """OpenAI's answer to an upload over its limit (26214400 bytes there)."""

    def __init__(self, limit: int, read: int) -> None:
        message = f"Maximum content size limit ({limit}) exceeded ({read} bytes read)"
        super().__init__(413, message)


class GateMiddleware:
    def __init__(self, app: Any, max_upload_bytes: int, api_key: str | None = None) -> None:
        self.app, self.limit, self.api_key = app, max_upload_bytes, api_key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._unauthorized(scope["path"], headers)
        declared = headers.get("content-length", "")
        if refusal is None and declared.isdigit() and int(declared) > self.limit:
            refusal = UploadTooLarge(self.limit, await _drain(receive, self.limit))
        elif refusal is not None:
            await _drain(receive, self.limit)
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        await self.app(scope, _Counted(receive, self.limit), send)

    def _unauthorized(self, path: str, headers: dict[str, str]) -> APIError | None:
        if self.api_key is None or path == "/" or path.startswith(OPEN_PATHS):
            return None
        given = headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        ):
            return None
        message = "Incorrect API key provided." if given else "You didn't provide an API key."
        return APIError(401, message, code="invalid_api_key")


class _Counted:
    """An ASGI receive that raises UploadTooLarge once the body passes the limit (the rest of
    it drained first)."""

    def __init__(self, receive: Any, limit: int) -> None:
        self.receive, self.limit, self.seen = receive, limit, 0

    async def __call__(self) -> dict:
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                if message.get("more_body", False):
                    self.seen += await _drain(self.receive, self.limit)
                raise UploadTooLarge(self.limit, self.seen)
        return message


async def _drain(receive: Any, budget: int) -> int:
    """Read and drop the rest of a request body, at most about `budget` bytes of it; returns
    the bytes read."""
    dropped = 0
    while dropped <= budget:
        message = await receive()
        if message["type"] != "http.request":
            break
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return dropped

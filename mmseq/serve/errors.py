"""Errors in OpenAI's envelope, `{"error": {"message", "type", "param", "code"}}`, with the
statuses the OpenAI SDKs map to their exception classes (400 BadRequestError, 401
AuthenticationError, 404 NotFoundError, 422 UnprocessableEntityError, 429 RateLimitError, ...).
FastAPI's and Starlette's own errors (validation, unknown routes) are converted too."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

log = logging.getLogger("mmseq.serve")

# OpenAI's `type` per status, as its API answers
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "server_error",  # OpenAI answers an upload over its limit so
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
    504: "server_error",
}


class APIError(Exception):
    """An error answered to the client in OpenAI's envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param, code)


class ClientDisconnected(Exception):
    """The client left before its result was ready; its job was cancelled. Logged and counted
    as 499 (nginx's "client closed request"); nobody reads the answer."""


# the status a request whose client left is counted under in the metrics
CLIENT_CLOSED_REQUEST = 499


def internal_error(err: BaseException) -> APIError:
    """A model's failure, logged here and answered 500 without its details."""
    log.error("mmseq serve: a request failed", exc_info=err)
    return APIError(500, f"internal error: {type(err).__name__}")


def install_handlers(app: FastAPI) -> None:
    """Answer every error, ours and the framework's, in OpenAI's envelope."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> JSONResponse:
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        location = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        message = first.get("msg", "invalid request")
        param = ".".join(location) or None
        text = f"{param}: {message}" if param else message
        return APIError(422, text, param, "invalid_value").response()

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code)
        return APIError(err.status_code, str(err.detail), code=code).response()

    @app.exception_handler(ClientDisconnected)
    async def _gone(request: Request, err: ClientDisconnected) -> Response:
        log.info(
            "mmseq serve: %s %s: the client left; its job was dropped",
            request.method,
            request.url.path,
        )
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        return internal_error(err).response()

"""Every failure leaves the API as `{status: "error", error, field?}` in JSON, with the right status code."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.errors import StudioError
from pipeline.request import readable_validation_error

log = logging.getLogger("api")


def error_response(status_code: int, message: str, field: list | None = None, *,
                   headers: dict[str, str] | None = None, extra: dict | None = None) -> JSONResponse:
    body: dict = {"status": "error", "error": message}
    if field:
        body["field"] = field
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _studio_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StudioError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else getattr(exc, "headers", None)
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if not errors:
        return error_response(400, "Invalid request")
    messages, field = [], None
    for err in errors[:3]:
        message, path = readable_validation_error(err)
        messages.append(message)
        field = field if field is not None else path
    return error_response(400, "; ".join(dict.fromkeys(messages)), field or None)


_HTTP_MESSAGES = {404: "Not found", 405: "Method not allowed"}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code in _HTTP_MESSAGES and detail in (None, "Not Found", "Method Not Allowed"):
        detail = f"{_HTTP_MESSAGES[exc.status_code]}: {request.method} {request.url.path}"
    return error_response(exc.status_code, detail or "Request failed", headers=getattr(exc, "headers", None))


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Internal server error")


class CatchAllMiddleware:
    """An unexpected exception becomes a JSON 500 here, without Starlette re-raising it to the server
    (which would log it twice and drop the client's keep-alive connection)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            await _unexpected(Request(scope), exc)(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StudioError, _studio_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(CatchAllMiddleware)

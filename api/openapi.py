"""The OpenAPI document a client generator can use: real error statuses with the error shape, no phantom 422.

Every validation failure is answered 400 here (api/errors.py), so FastAPI's automatic 422 entries and their
schemas are removed from the document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse

from api.models import ErrorResponse

ERROR_DESCRIPTIONS = {
    400: "Bad input: a field, query parameter or the body is invalid (`field` names it)",
    401: "Missing or invalid API key",
    403: "The key may not act for that account or organization",
    404: "Not found, or not the caller's",
    409: "An Idempotency-Key conflict, or the run already finished",
    413: "The request body is larger than MAX_BODY_BYTES",
    429: "Too many requests for this key (see Retry-After)",
    503: "The queue or the run store is not available",
}


def errors(*statuses: int, bad_input: type | None = None) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route: each error status it can answer, with the one error shape."""
    return {status: {"model": bad_input if (status == 400 and bad_input) else ErrorResponse,
                     "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


def _strip_phantom_422(schema: dict) -> dict:
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = _strip_phantom_422(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes,
                servers=[{"url": "/api"}]))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# ReDoc's footer shows a logo from cdn.redoc.ly: the page forbids any outside fetch, and hides the logo's link
_REDOC_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
              "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; font-src 'self' data:")
_HIDE_CDN_LOGO = '<style>a[href*="redocly"], a[href*="redoc.ly"] { display: none !important; }</style>'


def install_redoc(app: FastAPI, path: str = "/redoc", static_url: str = "/static-offline-docs") -> None:
    """/redoc from fastapi-offline's bundled script, with nothing fetched from the internet."""

    @app.get(path, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=app.title + " - ReDoc",
                              redoc_js_url=f"{root}{static_url}/redoc.standalone.js", with_google_fonts=False,
                              redoc_favicon_url=f"{root}{static_url}/favicon.png")
        html = page.body.decode().replace("</head>", _HIDE_CDN_LOGO + "</head>", 1)
        return HTMLResponse(html, headers={"Content-Security-Policy": _REDOC_CSP})

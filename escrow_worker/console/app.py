"""The console's ASGI application: the HTML pages, the JSON API, the error
pages, and the headers every response carries (no caching, no framing, no
script but our own). `create_app` is what `consign escrow console` serves and
what the tests drive; it never opens a socket itself (`console.server` does).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from broker.errors import Error
from escrow_worker.console import api, pages
from escrow_worker.console.actions import Console
from escrow_worker.console.auth import NotLoggedIn, session_of
from escrow_worker.console.queues import BrokerProbe
from escrow_worker.invoice import InvoiceError, Prices
from escrow_worker.state.base import StoreBusy

__all__ = ["DEFAULT_SESSION_SECONDS", "create_app"]

DEFAULT_SESSION_SECONDS = 30 * 60
_HEADERS = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "strict-transport-security": "max-age=31536000",
}


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def create_app(
    console: Console,
    *,
    session_seconds: int = DEFAULT_SESSION_SECONDS,
    broker: BrokerProbe | None = None,
    prices: Prices | None = None,
) -> FastAPI:
    app = FastAPI(
        title=f"Consignment escrow console ({console.escrow.name})",
        version="1",
        description="The escrow operators' console as a JSON API. Every path but "
        "POST /api/session and POST /api/session/certificate needs "
        "`Authorization: Bearer <token>` from one of those.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.console = console
    app.state.session_seconds = session_seconds
    app.state.broker = broker
    app.state.prices = prices if prices is not None else Prices("", {})
    app.include_router(api.router)
    app.include_router(pages.router)

    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        await session_of(request)
        return JSONResponse(app.openapi())

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, exc: Any) -> Response:
        if _is_api(request):
            return JSONResponse({"error": exc.detail}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: Any) -> Response:
        if _is_api(request):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return pages.render(request, "error", "Refused", status=exc.status_code, error=exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: Any) -> Response:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        if _is_api(request):
            return JSONResponse({"error": "invalid request", "detail": detail}, status_code=422)
        return pages.render(request, "error", "Refused", status=422, error=detail)

    @app.exception_handler(Error)
    async def refused(request: Request, exc: Any) -> Response:
        # 409: the request was well-formed, but the escrow refuses it as things stand;
        # 400: a value no page can show (a period that is not a month).
        status = 409
        if isinstance(exc, StoreBusy):
            status = 503
        elif isinstance(exc, InvoiceError):
            status = 400
        if _is_api(request):
            return JSONResponse({"error": exc.message, "hint": exc.hint}, status_code=status)
        session = getattr(request.state, "session", None)
        return pages.render(
            request, "error", "Refused", session, status=status, error=exc.message, hint=exc.hint
        )

    return app

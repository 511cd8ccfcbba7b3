"""Who is asking: every console request is resolved to a live session of an
active operator, or refused.

A session comes from the `consign_console` cookie (the browser) or an
`Authorization: Bearer` token (scripts). A cookie-authenticated request that
changes anything must also carry the session's CSRF token (form field `csrf` or
header `X-CSRF-Token`); a bearer token is never sent by a browser on its own,
so it needs none. A client certificate arrives through the ASGI TLS extension
(`scope["extensions"]["tls"]["client_cert_chain"]`, PEM), which
`console.server` fills in. This module must never log a token or a passphrase.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from cryptography import x509
from fastapi import HTTPException, Request

from broker.pki.profile import fingerprint
from escrow_worker.console.actions import Console
from escrow_worker.console.operators import (
    Operator,
    Session,
    csrf_matches,
    operator_by_certificate,
    resolve_session,
)
from escrow_worker.state.base import Tx

__all__ = [
    "COOKIE",
    "LOGIN_COOKIE",
    "NotLoggedIn",
    "certificate_operator",
    "console_of",
    "require_csrf",
    "session_of",
]

COOKIE = "consign_console"
LOGIN_COOKIE = "consign_console_login"


class NotLoggedIn(HTTPException):
    def __init__(self, detail: str = "log in as an operator") -> None:
        super().__init__(401, detail)


def console_of(request: Request) -> Console:
    console = request.app.state.console
    assert isinstance(console, Console)
    return console


def _token(request: Request) -> tuple[str | None, bool]:
    """The offered token and whether it came in a cookie."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    return request.cookies.get(COOKIE), True


async def session_of(request: Request) -> Session:
    """The request's live session; raises `NotLoggedIn` otherwise. A session
    from a cookie is marked so that `require_csrf` knows to check."""
    token, from_cookie = _token(request)
    if not token:
        raise NotLoggedIn()
    console = console_of(request)
    now = console.t()

    async def job(tx: Tx) -> Session | None:
        return await resolve_session(tx, token, now=now)

    session = await console.escrow.store.run(job)
    if session is None:
        raise NotLoggedIn("the session is unknown, expired or its operator revoked; log in again")
    request.state.from_cookie = from_cookie
    request.state.session = session
    return session


async def require_csrf(request: Request) -> Session:
    """`session_of`, and for a cookie session the CSRF token too."""
    session = await session_of(request)
    if request.state.from_cookie:
        offered = request.headers.get("x-csrf-token")
        if offered is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get("csrf")
            offered = value if isinstance(value, str) else None
        if not csrf_matches(session, offered):
            raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page")
    return session


def _client_certificate(scope: MutableMapping[str, Any]) -> x509.Certificate | None:
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    try:
        return x509.load_pem_x509_certificate(str(chain[0]).encode("ascii"))
    except ValueError:
        return None


async def certificate_operator(request: Request) -> Operator | None:
    """The operator whose signing certificate the TLS client presented (the
    TLS layer checked it chains to the escrow's CA; here: current, unrevoked,
    an operator's)."""
    cert = _client_certificate(request.scope)
    if cert is None:
        return None
    console = console_of(request)
    now = console.t()

    async def job(tx: Tx) -> Operator | None:
        return await operator_by_certificate(tx, fingerprint(cert), now=now)

    return await console.escrow.store.run(job)

"""The console's HTML pages and forms. Each page renders the same model the
JSON API returns (`console.views`); each form posts with the session's CSRF
token, acts through `console.actions`, and redirects back with a message.
This module must never render a key part, a private key or a passphrase.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from escrow_worker.console import api, ledger, views
from escrow_worker.console.actions import REVOCATION_REASONS, Reason
from escrow_worker.console.auth import (
    COOKIE,
    LOGIN_COOKIE,
    certificate_operator,
    console_of,
    require_csrf,
    session_of,
)
from escrow_worker.console.operators import (
    Operator,
    Session,
    csrf_matches,
    end_session,
)
from escrow_worker.console.render import ENV
from escrow_worker.state.base import Tx

__all__ = ["render", "router"]

router = APIRouter(include_in_schema=False)
Reader = Annotated[Session, Depends(session_of)]
Writer = Annotated[Session, Depends(require_csrf)]


def render(
    request: Request,
    template: str,
    title: str,
    session: Session | None = None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    html = ENV.get_template(f"{template}.html").render(
        title=title,
        escrow=console_of(request).escrow.name,
        operator=None if session is None else session.operator.name,
        csrf=None if session is None else session.csrf,
        msg=_message(request),
        **context,
    )
    return HTMLResponse(html, status_code=status)


#: Signs the message an action redirects with, so that a link from elsewhere
#: cannot make the console show words of its author's choosing.
_MESSAGE_KEY = os.urandom(32)


def _tag(msg: str) -> str:
    return hmac.new(_MESSAGE_KEY, msg.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def _message(request: Request) -> str | None:
    msg, tag = request.query_params.get("msg"), request.query_params.get("tag", "")
    if msg is None or not hmac.compare_digest(_tag(msg), tag):
        return None
    return msg


def _back(path: str, msg: str) -> RedirectResponse:
    query = urlencode({"msg": msg, "tag": _tag(msg)})
    return RedirectResponse(f"{path}?{query}", status_code=303)


# -- logging in and out ------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> HTMLResponse:
    token = os.urandom(24).hex()
    response = render(request, "login", "Log in", login_csrf=token)
    response.set_cookie(LOGIN_COOKIE, token, secure=True, httponly=True, samesite="strict")
    return response


async def _start(request: Request, operator: Operator) -> Response:
    lifetime = request.app.state.session_seconds
    session = await console_of(request).start_session(operator, lifetime)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE, session.token, max_age=lifetime, secure=True, httponly=True, samesite="strict"
    )
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.post("/login")
async def login(
    request: Request,
    name: Annotated[str, Form(max_length=64)],
    passphrase: Annotated[str, Form(max_length=1024)],
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if (refused := _stale_login_form(request, csrf)) is not None:
        return refused
    operator = await console_of(request).check_login(name, passphrase.encode("utf-8"))
    if operator is None:
        return render(
            request,
            "login",
            "Log in",
            status=401,
            login_csrf=expected,
            error="not an operator of this escrow, or a wrong passphrase",
        )
    return await _start(request, operator)


def _stale_login_form(request: Request, offered: str) -> HTMLResponse | None:
    """The login forms' own CSRF check, against the token paired with the login
    cookie: None if it holds, else the page that refuses."""
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if expected and csrf_matches(Session(Operator("", ""), expected, 0), offered):
        return None
    return render(
        request,
        "error",
        "Log in",
        status=403,
        error="the login form expired or came from elsewhere; load it again",
    )


@router.post("/login/certificate")
async def login_certificate(
    request: Request, csrf: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    if (refused := _stale_login_form(request, csrf)) is not None:
        return refused
    operator = await certificate_operator(request)
    if operator is None:
        return render(
            request,
            "error",
            "Log in",
            status=401,
            error="no operator certificate was presented, or it is not an active operator's",
            hint="log in with your passphrase",
        )
    return await _start(request, operator)


@router.post("/logout")
async def logout(request: Request, _: Writer) -> Response:
    token = request.cookies.get(COOKIE, "")

    async def job(tx: Tx) -> None:
        await end_session(tx, token)

    await console_of(request).read(job)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


# -- pages -------------------------------------------------------------------------


@router.get("/")
async def overview(request: Request, session: Reader) -> HTMLResponse:
    v = await api.overview(request, session)
    top = max([1, *(max(b.releases, b.denials) for b in v.hourly)])
    return render(request, "overview", "Overview", session, v=v, top=top)


@router.get("/users")
async def users(request: Request, session: Reader) -> HTMLResponse:
    found = await api.users(request, session)
    return render(
        request, "users", "Users and certificates", session, users=found, reasons=REVOCATION_REASONS
    )


@router.get("/crl")
async def crl(request: Request, session: Reader) -> HTMLResponse:
    v = await api.crl(request, session)
    return render(request, "crl", "Certificate revocation list", session, v=v)


@router.get("/policy")
async def policy(request: Request, session: Reader) -> HTMLResponse:
    return render(request, "policy", "Trust policy", session, v=await api.policy(request, session))


@router.get("/consignments")
async def consignments(
    request: Request,
    session: Reader,
    id: str = "",
    sender: str = "",
    receiver: str = "",
    state: str = "",
) -> HTMLResponse:
    cid = "".join(ch for ch in id.strip().lower() if ch in "0123456789abcdef")[:64]

    async def job(tx: Tx) -> views.ConsignmentPage:
        return await views.consignments(
            tx, consignment_id=cid, sender=sender[:64], receiver=receiver[:64], state=state[:16]
        )

    v = await console_of(request).read(job)
    return render(request, "consignments", "Consignments", session, v=v)


@router.get("/consignments/{consignment_id}")
async def consignment(request: Request, consignment_id: str, session: Reader) -> HTMLResponse:
    async def job(tx: Tx) -> views.ConsignmentView | None:
        return await views.consignment(tx, consignment_id)

    found = await console_of(request).read(job)
    if found is None:
        return render(
            request,
            "error",
            "Consignment",
            session,
            status=404,
            error=f"no consignment {consignment_id!r} is deposited here",
        )
    return render(request, "consignment", f"Consignment {consignment_id}", session, c=found)


@router.get("/actions")
async def actions(request: Request, session: Reader) -> HTMLResponse:
    found = await api.actions(request, session)
    return render(request, "actions", "Operators' actions", session, actions=found)


@router.get("/log")
async def log(
    request: Request, session: Reader, query: Annotated[ledger.LogQuery, Query()]
) -> HTMLResponse:
    v = await api.log(request, session, query)
    more = None if v.next_after is None else "/log?" + query.link(after=v.next_after)
    return render(request, "log", "Transaction log", session, v=v, more=more)


@router.get("/invoices")
async def invoices(request: Request, session: Reader, period: str = "") -> HTMLResponse:
    v = await api.invoices(request, session, period[:16])
    return render(request, "invoices", f"Invoices {v.period}", session, v=v)


@router.get("/invoices.csv")
async def invoices_csv(request: Request, _: Reader, period: str = "") -> Response:
    """The invoice's lines as CSV, as `consign escrow invoice --format csv` writes them."""
    console = console_of(request)
    prices = request.app.state.prices
    bill = await ledger.invoice(console.escrow, period[:16], prices, now=console.t())
    return Response(
        bill.csv(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="invoice-{bill.period.name}.csv"'},
    )


# -- actions -----------------------------------------------------------------------


async def _done(path: str, action: Awaitable[api.Done]) -> RedirectResponse:
    """Do an action of the API, then go back to `path` with what it said."""
    return _back(path, (await action).detail)


@router.post("/users/revoke")
async def revoke(
    request: Request,
    session: Writer,
    name: Annotated[str, Form(max_length=64)],
    reason: Annotated[Reason, Form()] = "unspecified",
) -> Response:
    return await _done("/users", api.revoke(request, name, api.Revoke(reason=reason), session))


@router.post("/users/sign-csr")
async def sign_csr(
    request: Request,
    session: Writer,
    csr_pem: Annotated[str, Form(max_length=65536)],
    groups: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    wanted = tuple(g.strip() for g in groups.split(",") if g.strip())
    pem = await console_of(request).sign_csr(session.operator.name, csr_pem.encode(), wanted)
    return Response(
        pem,
        media_type="application/x-pem-file",
        headers={"content-disposition": 'attachment; filename="bundle.pem"'},
    )


@router.post("/crl/issue")
async def issue_crl(request: Request, session: Writer) -> Response:
    return await _done("/crl", api.issue_crl(request, session))


@router.post("/policy/mode")
async def policy_mode(
    request: Request, session: Writer, mode: Annotated[Literal["open", "restricted"], Form()]
) -> Response:
    return await _done("/policy", api.set_mode(request, api.PolicyMode(mode=mode), session))


@router.post("/policy/rule")
async def policy_rule(
    request: Request,
    session: Writer,
    from_group: Annotated[str, Form(pattern=api.GROUP)],
    to_group: Annotated[str, Form(pattern=api.GROUP)],
    allow: Annotated[bool, Form()],
) -> Response:
    rule = api.Rule(from_group=from_group, to_group=to_group, allow=allow)
    return await _done("/policy", api.rule(request, rule, session))


@router.post("/master-key/rotate")
async def rotate(request: Request, session: Writer) -> Response:
    return await _done("/actions", api.rotate(request, session))


@router.post("/consignments/{consignment_id}/suspend")
async def suspend(
    request: Request,
    consignment_id: str,
    session: Writer,
    reason: Annotated[str, Form(min_length=1, max_length=500)] = "operator review",
) -> Response:
    body = api.Suspend(reason=reason)
    return await _done(
        f"/consignments/{consignment_id}", api.suspend(request, consignment_id, body, session)
    )


@router.post("/consignments/{consignment_id}/resume")
async def resume(request: Request, consignment_id: str, session: Writer) -> Response:
    path = f"/consignments/{consignment_id}"
    return await _done(path, api.resume(request, consignment_id, session))

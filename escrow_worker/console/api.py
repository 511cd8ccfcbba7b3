"""The console's JSON API under /api: the same data as every page and the same
actions, for operators' scripts, described by the OpenAPI document at
/api/openapi.json. Log in with POST /api/session (passphrase) or
POST /api/session/certificate (TLS client certificate) and send the token back
as `Authorization: Bearer <token>`. This module must never return a key part,
a private key, a passphrase or a session's token except to the one who logs in.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from escrow_worker.console import ledger, views
from escrow_worker.console.actions import Reason
from escrow_worker.console.auth import (
    certificate_operator,
    console_of,
    require_csrf,
    session_of,
)
from escrow_worker.console.operators import Operator, Session
from escrow_worker.state.base import Tx

__all__ = ["router"]


class Problem(BaseModel):
    """Every refusal: what went wrong, and where it helps, what to do."""

    error: str
    hint: str | None = None
    detail: str | None = None


router = APIRouter(
    prefix="/api",
    responses={
        409: {"model": Problem, "description": "the escrow refuses the action as things stand"},
        401: {"model": Problem, "description": "no live session of an active operator"},
        403: {"model": Problem, "description": "a cookie session without its CSRF token"},
        422: {"model": Problem, "description": "the request does not match this document"},
        503: {"model": Problem, "description": "the escrow's store is busy; try again"},
    },
)
Reader = Annotated[Session, Depends(session_of)]
Writer = Annotated[Session, Depends(require_csrf)]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class Login(BaseModel):
    name: str = Field(pattern=_NAME)
    passphrase: str = Field(min_length=1, max_length=1024)


class Token(BaseModel):
    operator: str
    token: str
    csrf: str
    expires_at: int


class Done(BaseModel):
    ok: bool = True
    changed: bool = True
    detail: str = ""


GROUP = r"^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$"


class Revoke(BaseModel):
    reason: Reason = "unspecified"


class Csr(BaseModel):
    csr_pem: str = Field(min_length=1, max_length=65536)
    groups: list[Annotated[str, Field(pattern=_NAME)]] = Field(default=[], max_length=64)


class Bundle(BaseModel):
    bundle_pem: str


class PolicyMode(BaseModel):
    mode: Literal["open", "restricted"]


class Rule(BaseModel):
    from_group: str = Field(pattern=GROUP)
    to_group: str = Field(pattern=GROUP)
    allow: bool


class Suspend(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


async def _login(request: Request, operator: Operator | None) -> Token:
    if operator is None:
        raise HTTPException(401, "not an active operator of this escrow")
    lifetime = request.app.state.session_seconds
    session = await console_of(request).start_session(operator, lifetime)
    return Token(
        operator=operator.name,
        token=session.token,
        csrf=session.csrf,
        expires_at=session.expires_at,
    )


@router.post("/session", response_model=Token, tags=["session"])
async def login(request: Request, body: Login) -> Token:
    """Log in with an operator's name and console passphrase."""
    operator = await console_of(request).check_login(body.name, body.passphrase.encode("utf-8"))
    return await _login(request, operator)


@router.post("/session/certificate", response_model=Token, tags=["session"])
async def login_certificate(request: Request) -> Token:
    """Log in with the TLS client certificate of an operator."""
    return await _login(request, await certificate_operator(request))


@router.get("/overview", response_model=views.Overview, tags=["pages"])
async def overview(request: Request, _: Reader) -> views.Overview:
    found = await console_of(request).read_now(views.overview)
    if request.app.state.broker is not None:
        found.broker = await request.app.state.broker.look()
    return found


@router.get("/users", response_model=list[views.UserView], tags=["pages"])
async def users(request: Request, _: Reader) -> list[views.UserView]:
    return await console_of(request).read_now(views.users)


@router.get("/crl", response_model=views.CrlView, tags=["pages"])
async def crl(request: Request, _: Reader) -> views.CrlView:
    return await console_of(request).read_now(views.crl)


@router.get("/policy", response_model=views.PolicyView, tags=["pages"])
async def policy(request: Request, _: Reader) -> views.PolicyView:
    return await console_of(request).read(views.policy)


@router.get("/consignments", response_model=views.ConsignmentPage, tags=["pages"])
async def consignments(
    request: Request,
    _: Reader,
    id: Annotated[str, Query(max_length=64, pattern=r"^[0-9a-f]*$")] = "",
    sender: Annotated[str, Query(max_length=64)] = "",
    receiver: Annotated[str, Query(max_length=64)] = "",
    state: Annotated[Literal["", "open", "released", "revoked", "suspended"], Query()] = "",
) -> views.ConsignmentPage:
    """Search by id (prefix, hex), sender, receiver and state; newest first."""

    async def job(tx: Tx) -> views.ConsignmentPage:
        return await views.consignments(
            tx, consignment_id=id, sender=sender, receiver=receiver, state=state
        )

    return await console_of(request).read(job)


@router.get(
    "/consignments/{consignment_id}",
    response_model=views.ConsignmentView,
    responses={404: {"model": Problem, "description": "no such consignment"}},
    tags=["pages"],
)
async def consignment(request: Request, consignment_id: str, _: Reader) -> views.ConsignmentView:
    async def job(tx: Tx) -> views.ConsignmentView | None:
        return await views.consignment(tx, consignment_id)

    found = await console_of(request).read(job)
    if found is None:
        raise HTTPException(404, f"no consignment {consignment_id!r} is deposited here")
    return found


@router.get("/actions", response_model=list[views.ActionView], tags=["pages"])
async def actions(request: Request, _: Reader) -> list[views.ActionView]:
    """The console's record of every action, newest first."""
    return await console_of(request).read(views.actions)


@router.get("/log", response_model=ledger.LogPage, tags=["pages"])
async def log(
    request: Request, _: Reader, query: Annotated[ledger.LogQuery, Query()]
) -> ledger.LogPage:
    """Transaction log entries, oldest first, filtered and paged (`after`: the
    `next_after` of the page before), and the whole log's verification."""
    return await ledger.log(console_of(request).escrow, query)


@router.get(
    "/invoices",
    response_model=ledger.InvoicePage,
    responses={400: {"model": Problem, "description": "the period is not a month"}},
    tags=["pages"],
)
async def invoices(
    request: Request,
    _: Reader,
    period: Annotated[
        str,
        Query(
            max_length=16,
            description="YYYY-MM [this month]",
            # Documented, not enforced here: any other value is a 400 that says why.
            json_schema_extra={"pattern": r"^([12][0-9]{3}-(0[1-9]|1[0-2]))?$"},
        ),
    ] = "",
) -> ledger.InvoicePage:
    """Billable counts per account for a month, priced from the console's price table."""
    console = console_of(request)
    prices = request.app.state.prices
    return ledger.invoice_page(
        await ledger.invoice(console.escrow, period, prices, now=console.t())
    )


@router.post("/users/{name}/revoke", response_model=Done, tags=["actions"])
async def revoke(request: Request, name: str, body: Revoke, session: Writer) -> Done:
    revoked = await console_of(request).revoke(session.operator.name, name, body.reason)
    return Done(detail=f"revoked {name} ({len(revoked)} certificates); new CRL published")


@router.post("/csr", response_model=Bundle, tags=["actions"])
async def sign_csr(request: Request, body: Csr, session: Writer) -> Bundle:
    """Certify a user's certificate request; the bundle to hand back to the user."""
    pem = await console_of(request).sign_csr(
        session.operator.name, body.csr_pem.encode("utf-8"), tuple(body.groups)
    )
    return Bundle(bundle_pem=pem.decode("ascii"))


@router.post("/crl", response_model=Done, tags=["actions"])
async def issue_crl(request: Request, session: Writer) -> Done:
    number = await console_of(request).issue_crl(session.operator.name)
    return Done(detail=f"CRL #{number} published")


@router.post("/policy", response_model=Done, tags=["actions"])
async def set_mode(request: Request, body: PolicyMode, session: Writer) -> Done:
    await console_of(request).set_policy_mode(session.operator.name, body.mode == "restricted")
    return Done(detail=f"the policy is now {body.mode}")


@router.post("/policy/rules", response_model=Done, tags=["actions"])
async def rule(request: Request, body: Rule, session: Writer) -> Done:
    changed = await console_of(request).change_rule(
        session.operator.name, body.allow, body.from_group, body.to_group
    )
    what = ("allowed" if body.allow else "removed") if changed else "unchanged"
    return Done(changed=changed, detail=f"{body.from_group} -> {body.to_group}: {what}")


@router.post("/master-key/rotate", response_model=Done, tags=["actions"])
async def rotate(request: Request, session: Writer) -> Done:
    key_id, count = await console_of(request).rotate_master_key(session.operator.name)
    return Done(detail=f"master key {key_id} is current; {count} parts re-encrypted")


@router.post("/consignments/{consignment_id}/suspension", response_model=Done, tags=["actions"])
async def suspend(request: Request, consignment_id: str, body: Suspend, session: Writer) -> Done:
    """Suspend: no key part is released until resumed."""
    changed = await console_of(request).suspend(
        session.operator.name, consignment_id, body.reason, True
    )
    what = "suspended: no release until resumed" if changed else "suspended already"
    return Done(changed=changed, detail=what)


@router.delete("/consignments/{consignment_id}/suspension", response_model=Done, tags=["actions"])
async def resume(request: Request, consignment_id: str, session: Writer) -> Done:
    changed = await console_of(request).suspend(session.operator.name, consignment_id, "", False)
    return Done(changed=changed, detail="resumed" if changed else "not suspended")

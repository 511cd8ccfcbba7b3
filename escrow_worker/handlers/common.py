"""What every request handler shares: its `Context` (the request, the clock, the
escrow's keys, the open transaction), its `Result` (the reply body, the events
and notifications it causes, the decision) and how refusals and events are
built.

Handlers run inside the service's one transaction for the request (step 5 of
docs/protocol.md): they gather facts, ask a pure function of `decide`, change
state, and return a `Result`. Signing, storing the reply and the outbox is the
service's. No handler may publish, commit, sign, or log a key part.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import BaseModel

from broker.attest import Attestation
from broker.canonical import raw_public_key
from broker.errors import CertificateRejected
from broker.messages import (
    EventBody,
    EventKind,
    MessageType,
    error_reply,
)
from broker.pki.checks import check_encryption_certificate
from broker.pki.profile import Role
from escrow_worker.ca.directory import current_crl, get_user, select_current
from escrow_worker.handlers.auth import VerifiedRequest
from escrow_worker.handlers.decide import (
    Denial,
    DirectoryFacts,
)
from escrow_worker.state.base import Tx
from escrow_worker.state.masterkey import Vault


@dataclass(frozen=True)
class Notice:
    """An event or notification one request causes, for one inbox."""

    destination: str
    type: MessageType
    body: BaseModel


@dataclass(frozen=True)
class Result:
    """A handler's answer: the reply body, what it causes, and the decision."""

    reply_type: MessageType
    reply: BaseModel
    notices: tuple[Notice, ...] = ()
    consignment_id: str | None = None
    #: "ok", or the error code of a refusal.
    decision: str = "ok"
    #: A batch's: what each item decided in it, in the batch's order, each
    #: logged as a decision of its own (docs/log.md, "Batch items").
    items: tuple[ItemDecision, ...] = ()


@dataclass(frozen=True)
class ItemDecision:
    """One item of a batch decided now (not answered from an earlier record):
    its id, the SHA-256 (hex) of the canonical JSON of its kind and body, and
    its result as the item's own handler gave it."""

    item_id: str
    sha256: str
    result: Result


@dataclass(frozen=True)
class Context:
    tx: Tx
    escrow_name: str
    ca: x509.Certificate
    encryption_key: X25519PrivateKey
    vault: Vault
    request: VerifiedRequest
    body: BaseModel
    now: datetime
    #: Inside a batch: the item's id and the kind of request it is. The item is
    #: decided, recorded and answered as a request of that id and type.
    item_id: str | None = None
    item_type: str | None = None
    #: Inside a batch: the directory's facts already read in its transaction,
    #: by name (they cannot change within it), so each is read and checked once.
    memo: dict[str, DirectoryFacts] | None = None

    @property
    def t(self) -> int:
        return int(self.now.timestamp())

    @property
    def request_id(self) -> str:
        return self.item_id if self.item_id is not None else self.request.envelope.request_id

    @property
    def request_type(self) -> str:
        return self.item_type if self.item_type is not None else self.request.envelope.type

    @property
    def requester(self) -> str:
        return self.request.sender


def refuse(
    ctx: Context,
    refusal: Denial,
    *,
    consignment_id: str | None = None,
    notices: tuple[Notice, ...] = (),
) -> Result:
    body = error_reply(
        in_reply_to=ctx.request_id,
        code=refusal.code,
        message=refusal.message,
        request_type=ctx.request_type,
        consignment_id=consignment_id,
        detail=refusal.detail,
    )
    return Result(MessageType.ERROR, body, notices, consignment_id, refusal.code.value)


def event(
    ctx: Context,
    sender: str,
    consignment_id: str,
    kind: EventKind,
    receiver: str | None = None,
    reason: str | None = None,
    *,
    attestation: Attestation | None = None,
) -> Notice:
    """An event for the inbox of `sender` (the consignment's sender, or a co-signer)."""
    body = EventBody(
        consignment_id=consignment_id,
        kind=kind,
        receiver=receiver,
        reason=None if reason is None else reason[:1024],
        at=ctx.t,
        attestation=attestation,
    )
    return Notice(sender, MessageType.EVENT, body)


def denied(
    ctx: Context, sender: str, consignment_id: str, refusal: Denial, receiver: str | None
) -> Notice:
    return event(
        ctx, sender, consignment_id, EventKind.DENIED, receiver,
        f"{ctx.request_type} from {ctx.requester!r} refused: "
        f"{refusal.code.value}: {refusal.message}",
    )  # fmt: skip


async def current_encryption_key(ctx: Context, name: str) -> DirectoryFacts:
    """The directory's facts about `name` now: registered, current key, groups."""
    if ctx.memo is not None:
        known = ctx.memo.get(name)
        if known is None:
            known = ctx.memo[name] = await _current_encryption_key(ctx, name)
        return known
    return await _current_encryption_key(ctx, name)


async def _current_encryption_key(ctx: Context, name: str) -> DirectoryFacts:
    user = await get_user(ctx.tx, name)
    if user is None or user.revoked_at is not None:
        return DirectoryFacts(name, registered=False)
    record = select_current(user.certificates, Role.ENCRYPTION, ctx.now)
    key: bytes | None = None
    if record is not None:
        try:
            public = check_encryption_certificate(
                record.certificate,
                ca=ctx.ca,
                crl=await current_crl(ctx.tx),
                now=ctx.now,
                expected_name=name,
                require_current_crl=False,
            )
            key = raw_public_key(public)
        except CertificateRejected:
            key = None
    return DirectoryFacts(name, True, key, frozenset(user.groups))


async def registered(ctx: Context, name: str) -> DirectoryFacts:
    """Whether `name` is a registered, unrevoked party now, and its groups (no
    certificate needed: e.g. a co-signer, or the trust policy's view of a party)."""
    user = await get_user(ctx.tx, name)
    if user is None or user.revoked_at is not None:
        return DirectoryFacts(name, registered=False)
    return DirectoryFacts(name, True, None, frozenset(user.groups))


Handler = Callable[[Context], Awaitable[Result]]

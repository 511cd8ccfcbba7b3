"""The escrow's request handlers: lookup, deposit, key-request, revoke, status.

Each runs inside the service's one transaction for the request (step 5 of
docs/protocol.md): it gathers facts from the database and the directory, asks a
pure function of `_decide`, changes state, and returns the reply body and the
events and notifications it causes. Signing, storing the reply and the outbox is
the service's. This module must never publish, commit, sign, or log a key part.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import aiosqlite
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel

from broker import SealedMessageError, open_deposit, seal_key_part
from broker.canonical import canonical_json
from broker.deposit import Deposit, Mode
from broker.errors import CertificateRejected
from broker.messages import (
    DepositBody,
    DepositReceiptBody,
    ErrorBody,
    ErrorCode,
    EventBody,
    EventKind,
    KeyReleaseBody,
    KeyRequestBody,
    LookupBody,
    LookupReplyBody,
    MessageType,
    NotifyBody,
    ReceiverStatus,
    RevokeBody,
    RevokeReplyBody,
    StatusBody,
    StatusReplyBody,
)
from broker.pki.checks import check_encryption_certificate
from broker.pki.profile import Role, to_pem
from escrow_worker import _store as store
from escrow_worker._decide import (
    DirectoryFacts,
    Refusal,
    decide_deposit,
    decide_release,
    decide_revoke,
    decide_sender_request,
)
from escrow_worker._directory import current_crl, current_crl_der, get_user, select_current
from escrow_worker._masterkey import Vault
from escrow_worker._policy import load_policy
from escrow_worker._requests import VerifiedRequest
from escrow_worker.errors import EscrowError


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


@dataclass(frozen=True)
class Context:
    conn: aiosqlite.Connection
    escrow_name: str
    ca: x509.Certificate
    encryption_key: X25519PrivateKey
    vault: Vault
    request: VerifiedRequest
    body: BaseModel
    now: datetime

    @property
    def t(self) -> int:
        return int(self.now.timestamp())

    @property
    def request_id(self) -> str:
        return self.request.envelope.request_id

    @property
    def requester(self) -> str:
        return self.request.sender


def refuse(
    ctx: Context,
    refusal: Refusal,
    *,
    consignment_id: str | None = None,
    notices: tuple[Notice, ...] = (),
) -> Result:
    body = ErrorBody(
        in_reply_to=ctx.request_id,
        code=refusal.code,
        message=refusal.message[:1024],
        request_type=ctx.request.envelope.type,
        consignment_id=consignment_id,
    )
    return Result(MessageType.ERROR, body, notices, consignment_id, refusal.code.value)


def _event(
    ctx: Context,
    sender: str,
    consignment_id: str,
    kind: EventKind,
    receiver: str | None = None,
    reason: str | None = None,
) -> Notice:
    body = EventBody(
        consignment_id=consignment_id,
        kind=kind,
        receiver=receiver,
        reason=None if reason is None else reason[:1024],
        at=ctx.t,
    )
    return Notice(sender, MessageType.EVENT, body)


def _denied(
    ctx: Context, sender: str, consignment_id: str, refusal: Refusal, receiver: str | None
) -> Notice:
    return _event(
        ctx, sender, consignment_id, EventKind.DENIED, receiver,
        f"{ctx.request.envelope.type} from {ctx.requester!r} refused: "
        f"{refusal.code.value}: {refusal.message}",
    )  # fmt: skip


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


async def _current_encryption_key(ctx: Context, name: str) -> DirectoryFacts:
    """The directory's facts about `name` now: registered, current key, groups."""
    user = await get_user(ctx.conn, name)
    if user is None or user.revoked_at is not None:
        return DirectoryFacts(name, registered=False)
    record = select_current(user.certificates, Role.ENCRYPTION, ctx.now)
    key: bytes | None = None
    if record is not None:
        try:
            public = check_encryption_certificate(
                record.certificate,
                ca=ctx.ca,
                crl=await current_crl(ctx.conn),
                now=ctx.now,
                expected_name=name,
                require_current_crl=False,
            )
            key = _raw(public)
        except CertificateRejected:
            key = None
    return DirectoryFacts(name, True, key, frozenset(user.groups))


# -- lookup -----------------------------------------------------------------------


async def lookup(ctx: Context) -> Result:
    assert isinstance(ctx.body, LookupBody)
    name = ctx.body.name
    user = await get_user(ctx.conn, name)
    signing = encryption = None
    if user is not None and user.revoked_at is None:
        signing = select_current(user.certificates, Role.SIGNING, ctx.now)
        encryption = select_current(user.certificates, Role.ENCRYPTION, ctx.now)
    if signing is None or encryption is None:
        return refuse(
            ctx,
            Refusal(ErrorCode.UNKNOWN_USER, f"{name!r} has no current certificates here"),
        )
    body = LookupReplyBody(
        in_reply_to=ctx.request_id,
        name=name,
        signing_certificate=to_pem(signing.certificate),
        encryption_certificate=to_pem(encryption.certificate),
        crl=await current_crl_der(ctx.conn),
    )
    return Result(MessageType.LOOKUP_REPLY, body)


# -- deposit ----------------------------------------------------------------------


def _part_plaintext(deposit: Deposit) -> bytes:
    """What is encrypted under the master key: K2, or the receivers' wrapped K3s."""
    b64 = base64.b64encode
    return canonical_json(
        {
            "escrow_key": None if deposit.escrow_key is None else b64(deposit.escrow_key).decode(),
            "wrapped_keys": {k: b64(v).decode() for k, v in deposit.wrapped_keys.items()},
        }
    )


def _part_fields(plaintext: bytes) -> tuple[bytes | None, dict[str, bytes]]:
    content = json.loads(plaintext)
    escrow_key = content["escrow_key"]
    return (
        None if escrow_key is None else base64.b64decode(escrow_key),
        {k: base64.b64decode(v) for k, v in content["wrapped_keys"].items()},
    )


async def deposit(ctx: Context) -> Result:
    assert isinstance(ctx.body, DepositBody)
    cid = ctx.body.consignment_id
    try:
        dep = open_deposit(ctx.body.sealed_deposit, cid, ctx.encryption_key)
    except SealedMessageError as exc:
        return refuse(ctx, Refusal(ErrorCode.MALFORMED, exc.message), consignment_id=cid)
    policy = dep.policy
    existing = await store.get_deposit(ctx.conn, cid)
    names = {spec.name for spec in policy.receivers}
    facts = {name: await _current_encryption_key(ctx, name) for name in sorted(names)}
    refusal = decide_deposit(
        policy,
        requester=await _current_encryption_key(ctx, ctx.requester),
        escrow_name=ctx.escrow_name,
        already_deposited=existing is not None,
        receivers=facts,
        trust=await load_policy(ctx.conn),
    )
    if refusal is not None:
        return refuse(ctx, refusal, consignment_id=cid)
    key_id, blob = await ctx.vault.encrypt(ctx.conn, cid, _part_plaintext(dep))
    row = store.DepositRow(
        consignment_id=cid,
        sender=policy.sender,
        mode=dep.mode,
        policy=policy,
        policy_digest=dep.policy_digest,
        part_key_id=key_id,
        part=blob,
        consignment_digest=dep.consignment_digest,
        plaintext_commitment=dep.plaintext_commitment,
        consignment_size=dep.consignment_size,
        deposited_at=ctx.t,
    )
    await store.insert_deposit(ctx.conn, row, sealed_at=dep.sealed_at, request_id=ctx.request_id)
    notices = [_event(ctx, policy.sender, cid, EventKind.DEPOSITED)]
    for spec in policy.receivers:
        notify = NotifyBody(
            consignment_id=cid,
            sender=policy.sender,
            escrow=ctx.escrow_name,
            deposited_at=ctx.t,
            consignment_digest=dep.consignment_digest,
            consignment_size=dep.consignment_size,
        )
        notices.append(Notice(spec.name, MessageType.NOTIFY, notify))
        notices.append(_event(ctx, policy.sender, cid, EventKind.NOTIFIED, spec.name))
    receipt = DepositReceiptBody(
        in_reply_to=ctx.request_id,
        consignment_id=cid,
        sender=policy.sender,
        deposited_at=ctx.t,
        consignment_digest=dep.consignment_digest,
        plaintext_commitment=dep.plaintext_commitment,
        policy_digest=dep.policy_digest,
        receivers=tuple(spec.name for spec in policy.receivers),
    )
    return Result(MessageType.DEPOSIT_RECEIPT, receipt, tuple(notices), cid)


# -- key-request -------------------------------------------------------------------


async def key_request(ctx: Context) -> Result:
    assert isinstance(ctx.body, KeyRequestBody)
    cid = ctx.body.consignment_id
    row = await store.get_deposit(ctx.conn, cid)
    if row is None:
        return refuse(
            ctx,
            Refusal(ErrorCode.UNKNOWN_CONSIGNMENT, "no consignment with this id is deposited"),
            consignment_id=cid,
        )
    state = await store.receiver_state(ctx.conn, cid, ctx.requester)
    refusal = decide_release(
        row.policy,
        state,
        requester=ctx.requester,
        held_digest=row.consignment_digest,
        asked_digest=ctx.body.consignment_digest,
        now=ctx.t,
    )
    sealed: bytes | None = None
    if refusal is None:
        sealed, refusal = await _key_part(ctx, row)
    if refusal is not None:
        if state is not None:
            await store.record_denial(ctx.conn, cid, ctx.requester, refusal.code.value, now=ctx.t)
        notice = _denied(ctx, row.sender, cid, refusal, ctx.requester)
        return refuse(ctx, refusal, consignment_id=cid, notices=(notice,))
    assert sealed is not None
    await store.record_release(ctx.conn, cid, ctx.requester, request_id=ctx.request_id, now=ctx.t)
    release = KeyReleaseBody(
        in_reply_to=ctx.request_id,
        consignment_id=cid,
        mode=row.mode,
        policy_digest=row.policy_digest,
        sealed_key_part=sealed,
        sender=row.sender,
        consignment_digest=row.consignment_digest,
        released_at=ctx.t,
    )
    notice = _event(ctx, row.sender, cid, EventKind.RELEASED, ctx.requester)
    return Result(MessageType.KEY_RELEASE, release, (notice,), cid)


async def _key_part(ctx: Context, row: store.DepositRow) -> tuple[bytes | None, Refusal | None]:
    """The part for the requester: K2 sealed to its current key, or its wrapped K3."""
    escrow_key, wrapped = _part_fields(
        await ctx.vault.decrypt(row.part_key_id, row.consignment_id, row.part)
    )
    if row.mode is Mode.ESCROWED:
        spec = row.policy.receiver(ctx.requester)
        assert spec is not None  # decide_release checked it
        return wrapped[spec.key_id.hex()], None
    facts = await _current_encryption_key(ctx, ctx.requester)
    if escrow_key is None:
        raise EscrowError(f"the stored part of {row.consignment_id} holds no escrow key")
    if facts.current_key is None:
        return None, Refusal(
            ErrorCode.NOT_ALLOWED,
            "you have no current encryption certificate to release the key to; ask the operator",
        )
    receiver_key = X25519PublicKey.from_public_bytes(facts.current_key)
    return seal_key_part(escrow_key, receiver_key, row.consignment_id, row.policy_digest), None


# -- revoke and status ------------------------------------------------------------


async def _own_deposit(
    ctx: Context, consignment_id: str, what: str
) -> tuple[store.DepositRow | None, Result | None]:
    row = await store.get_deposit(ctx.conn, consignment_id)
    if row is None:
        unknown = Refusal(ErrorCode.UNKNOWN_CONSIGNMENT, "no consignment with this id is deposited")
        return None, refuse(ctx, unknown, consignment_id=consignment_id)
    refusal = decide_sender_request(row.sender, requester=ctx.requester, what=what)
    if refusal is not None:
        notice = _denied(ctx, row.sender, consignment_id, refusal, None)
        return None, refuse(ctx, refusal, consignment_id=consignment_id, notices=(notice,))
    return row, None


async def revoke(ctx: Context) -> Result:
    assert isinstance(ctx.body, RevokeBody)
    cid = ctx.body.consignment_id
    row, refused = await _own_deposit(ctx, cid, "revoke")
    if row is None:
        assert refused is not None
        return refused
    refusal, names = decide_revoke(row.policy, ctx.body.receivers, requester=ctx.requester)
    if refusal is not None:
        return refuse(ctx, refusal, consignment_id=cid)
    newly = await store.revoke(ctx.conn, cid, names, now=ctx.t)
    notices = tuple(_event(ctx, row.sender, cid, EventKind.REVOKED, name) for name in newly)
    reply = RevokeReplyBody(in_reply_to=ctx.request_id, consignment_id=cid, revoked=names)
    return Result(MessageType.REVOKE_REPLY, reply, notices, cid)


async def status(ctx: Context) -> Result:
    assert isinstance(ctx.body, StatusBody)
    cid = ctx.body.consignment_id
    row, refused = await _own_deposit(ctx, cid, "see the status of")
    if row is None:
        assert refused is not None
        return refused
    receivers = tuple(
        ReceiverStatus(
            name=r.state.name,
            notified_at=r.state.notified_at,
            releases=r.state.releases,
            revoked_at=r.state.revoked_at,
            last_denied=r.last_denied,
        )
        for r in await store.receivers(ctx.conn, cid)
    )
    reply = StatusReplyBody(
        in_reply_to=ctx.request_id,
        consignment_id=cid,
        sender=row.sender,
        mode=row.mode,
        deposited_at=row.deposited_at,
        receivers=receivers,
    )
    return Result(MessageType.STATUS_REPLY, reply, (), cid)


Handler = Callable[[Context], Awaitable[Result]]

#: The requests an escrow answers, by (type, version).
HANDLERS: dict[tuple[str, int], Handler] = {
    (MessageType.LOOKUP.value, 1): lookup,
    (MessageType.DEPOSIT.value, 1): deposit,
    (MessageType.KEY_REQUEST.value, 1): key_request,
    (MessageType.REVOKE.value, 1): revoke,
    (MessageType.STATUS.value, 1): status,
}

"""`revoke` and `status`: the sender's control over its own deposits (status:
per receiver, notified, asked, released, receipt, window, expired, denied; and
the co-signatures)."""

from __future__ import annotations

from broker.attest import StatementKind
from broker.messages import (
    CosignerStatus,
    ErrorCode,
    EventKind,
    MessageType,
    ReceiverStatus,
    RevokeBody,
    RevokeReplyBody,
    StatusBody,
    StatusReplyBody,
)
from escrow_worker.handlers.common import (
    Context,
    Result,
    denied,
    event,
    refuse,
)
from escrow_worker.handlers.decide import (
    Denial,
    decide_revoke,
    decide_sender_request,
)
from escrow_worker.state import attestations, records


async def _own_deposit(
    ctx: Context, consignment_id: str, what: str
) -> tuple[records.DepositRow | None, Result | None]:
    row = await records.get_deposit(ctx.tx, consignment_id)
    if row is None:
        unknown = Denial(ErrorCode.UNKNOWN_CONSIGNMENT, "no consignment with this id is deposited")
        return None, refuse(ctx, unknown, consignment_id=consignment_id)
    refusal = decide_sender_request(row.sender, requester=ctx.requester, what=what)
    if refusal is not None:
        notice = denied(ctx, row.sender, consignment_id, refusal, None)
        return None, refuse(ctx, refusal, consignment_id=consignment_id, notices=(notice,))
    return row, None


async def handle_revoke(ctx: Context) -> Result:
    assert isinstance(ctx.body, RevokeBody)
    cid = ctx.body.consignment_id
    row, refused = await _own_deposit(ctx, cid, "revoke")
    if row is None:
        assert refused is not None
        return refused
    refusal, names = decide_revoke(row.policy, ctx.body.receivers, requester=ctx.requester)
    if refusal is not None:
        return refuse(ctx, refusal, consignment_id=cid)
    newly = await records.revoke(ctx.tx, cid, names, now=ctx.t)
    notices = tuple(event(ctx, row.sender, cid, EventKind.REVOKED, name) for name in newly)
    reply = RevokeReplyBody(in_reply_to=ctx.request_id, consignment_id=cid, revoked=names)
    return Result(MessageType.REVOKE_REPLY, reply, notices, cid)


async def handle_status(ctx: Context) -> Result:
    assert isinstance(ctx.body, StatusBody)
    cid = ctx.body.consignment_id
    row, refused = await _own_deposit(ctx, cid, "see the status of")
    if row is None:
        assert refused is not None
        return refused
    receipts = await attestations.signed_at(ctx.tx, cid, StatementKind.RECEIPT)
    receivers = tuple(
        ReceiverStatus(
            name=r.state.name,
            notified_at=r.state.notified_at,
            releases=r.state.releases,
            revoked_at=r.state.revoked_at,
            last_denied=r.last_denied,
            last_denied_at=r.last_denied_at,
            requested_at=r.requested_at,
            released_at=r.released_at,
            receipt_required=row.policy.attributes_for(r.state.name).receipt_required,
            receipt_at=receipts.get(r.state.name),
            closes_at=r.closes_at,
            expired_at=r.expired_at,
        )
        for r in await records.receivers(ctx.tx, cid)
    )
    reply = StatusReplyBody(
        in_reply_to=ctx.request_id,
        consignment_id=cid,
        sender=row.sender,
        mode=row.mode,
        deposited_at=row.deposited_at,
        receivers=receivers,
        cosigners=await cosigner_status(ctx, row),
    )
    return Result(MessageType.STATUS_REPLY, reply, (), cid)


async def cosigner_status(ctx: Context, row: records.DepositRow) -> tuple[CosignerStatus, ...]:
    """Every co-signer the policy names, in its order, and when each signed."""
    signed = await attestations.signed_at(ctx.tx, row.consignment_id, StatementKind.AGREEMENT)
    return tuple(
        CosignerStatus(name=name, signed_at=signed.get(name))
        for name in row.policy.attributes.cosigners
    )

"""`key-request`: decide a receiver's request (its own window, the trust policy
as it is now, its receipt, the co-signatures, an operator's suspension) and
release its key part, only to the encryption key the policy recorded at
deposit while it is still the receiver's current one: K2 sealed to it (split
mode) or its wrapped K3 (escrowed mode). The part is never logged or stored in clear."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from broker import seal_key_part
from broker.attest import StatementKind
from broker.deposit import Mode
from broker.messages import (
    ErrorCode,
    EventKind,
    KeyReleaseBody,
    KeyRequestBody,
    MessageType,
)
from escrow_worker.ca.policy import Member, load_policy
from escrow_worker.errors import EscrowError
from escrow_worker.handlers.common import (
    Context,
    Result,
    current_encryption_key,
    denied,
    event,
    refuse,
    registered,
)
from escrow_worker.handlers.decide import (
    Denial,
    ReleaseFacts,
    check_recorded_key,
    decide_release,
)
from escrow_worker.handlers.deposit import part_fields
from escrow_worker.state import attestations, records, suspensions


async def handle_key_request(ctx: Context) -> Result:
    assert isinstance(ctx.body, KeyRequestBody)
    cid = ctx.body.consignment_id
    row = await records.get_deposit(ctx.tx, cid)
    if row is None:
        return refuse(
            ctx,
            Denial(ErrorCode.UNKNOWN_CONSIGNMENT, "no consignment with this id is deposited"),
            consignment_id=cid,
        )
    # What needs no lock comes first: the requester's current key (the
    # directory) and the part sealed to it, so that the receiver's row is
    # locked (PostgreSQL: other requests of that receiver wait) only for the
    # decision and its writes. Its refusals still come after the policy's.
    facts = await current_encryption_key(ctx, ctx.requester)
    key_refusal = check_recorded_key(row.policy, ctx.requester, facts.current_key)
    sealed: bytes | EscrowError | None = None
    if key_refusal is None:
        try:
            sealed = _key_part(ctx, row)
        except EscrowError as exc:  # raised only if the decision would release
            sealed = exc
    state = await records.receiver_state(ctx.tx, cid, ctx.requester, for_update=True)
    refusal = decide_release(
        row.policy,
        state,
        requester=ctx.requester,
        held_digest=row.consignment_digest,
        asked_digest=ctx.body.consignment_digest,
        now=ctx.t,
        facts=await _release_facts(ctx, row) if state is not None else None,
    )
    if refusal is None and await suspensions.suspended(ctx.tx, cid) is not None:
        refusal = Denial(
            ErrorCode.NOT_ALLOWED,
            "the escrow's operator suspended this consignment; no key part is released "
            "until it is resumed: ask the sender",
            detail="suspended",
        )
    if refusal is None:
        refusal = key_refusal
    if refusal is None and isinstance(sealed, EscrowError):
        raise sealed
    if refusal is not None:
        if state is not None:
            await records.record_denial(ctx.tx, cid, ctx.requester, refusal.code.value, now=ctx.t)
        notice = denied(ctx, row.sender, cid, refusal, ctx.requester)
        return refuse(ctx, refusal, consignment_id=cid, notices=(notice,))
    assert isinstance(sealed, bytes)
    await records.record_release(ctx.tx, cid, ctx.requester, request_id=ctx.request_id, now=ctx.t)
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
    notice = event(ctx, row.sender, cid, EventKind.RELEASED, ctx.requester)
    return Result(MessageType.KEY_RELEASE, release, (notice,), cid)


async def _release_facts(ctx: Context, row: records.DepositRow) -> ReleaseFacts:
    """The trust policy as it is now, the receipt and the co-signatures: read
    only where the policy or the trust policy makes them matter."""
    trust = await load_policy(ctx.tx)
    sender, receiver = Member(row.sender), Member(ctx.requester)
    if trust.restricted:
        sender = Member(row.sender, (await registered(ctx, row.sender)).groups)
        receiver = Member(ctx.requester, (await registered(ctx, ctx.requester)).groups)
    attributes = row.policy.attributes_for(ctx.requester)
    receipt = attributes.receipt_required and await attestations.has_receipt(
        ctx.tx, row.consignment_id, ctx.requester
    )
    cosigned: frozenset[str] = frozenset()
    if attributes.cosigners:
        signed = await attestations.signed_at(ctx.tx, row.consignment_id, StatementKind.AGREEMENT)
        cosigned = frozenset(signed)
    return ReleaseFacts(trust, sender, receiver, receipt, cosigned)


def _key_part(ctx: Context, row: records.DepositRow) -> bytes:
    """The part for the requester, whose current key is the recorded one
    (`check_recorded_key`): K2 sealed to it, or its wrapped K3."""
    escrow_key, wrapped = part_fields(
        ctx.vault.decrypt(row.part_key_id, row.consignment_id, row.part)
    )
    spec = row.policy.receiver(ctx.requester)
    assert spec is not None  # decide_release checked it
    if row.mode is Mode.ESCROWED:
        return wrapped[spec.key_id.hex()]
    if escrow_key is None:
        raise EscrowError(f"the stored part of {row.consignment_id} holds no escrow key")
    receiver_key = X25519PublicKey.from_public_bytes(spec.encryption_key)
    return seal_key_part(escrow_key, receiver_key, row.consignment_id, row.policy_digest)

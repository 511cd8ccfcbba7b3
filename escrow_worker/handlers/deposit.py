"""`deposit`: open the sealed deposit, decide, keep the escrow part encrypted
under the master key, note when each receiver's window closes, notify every
receiver and ask every co-signer to co-sign. The part is never logged."""

from __future__ import annotations

from broker import SealedMessageError, open_deposit
from broker.canonical import b64, canonical_json, parse_canonical_json, unb64
from broker.deposit import Deposit
from broker.messages import (
    DepositBody,
    DepositReceiptBody,
    ErrorCode,
    EventKind,
    MessageType,
    NotifyBody,
)
from escrow_worker.ca.policy import load_policy
from escrow_worker.handlers.common import (
    Context,
    Notice,
    Result,
    current_encryption_key,
    event,
    refuse,
    registered,
)
from escrow_worker.handlers.decide import (
    Denial,
    decide_deposit,
    window_closes,
)
from escrow_worker.state import records


def part_plaintext(deposit: Deposit) -> bytes:
    """What is encrypted under the master key: K2, or the receivers' wrapped K3s."""
    return canonical_json(
        {
            "escrow_key": None if deposit.escrow_key is None else b64(deposit.escrow_key),
            "wrapped_keys": {k: b64(v) for k, v in deposit.wrapped_keys.items()},
        }
    )


def part_fields(plaintext: bytes) -> tuple[bytes | None, dict[str, bytes]]:
    content = parse_canonical_json(plaintext, "the stored key part")
    escrow_key = content["escrow_key"]
    return (
        None if escrow_key is None else unb64(escrow_key),
        {k: unb64(v) for k, v in content["wrapped_keys"].items()},
    )


async def handle_deposit(ctx: Context) -> Result:
    assert isinstance(ctx.body, DepositBody)
    cid = ctx.body.consignment_id
    try:
        dep = open_deposit(ctx.body.sealed_deposit, cid, ctx.encryption_key)
    except SealedMessageError as exc:
        denial = Denial(ErrorCode.MALFORMED, exc.message, exc.reason)
        return refuse(ctx, denial, consignment_id=cid)
    policy = dep.policy
    existing = await records.get_deposit(ctx.tx, cid)
    names = {spec.name for spec in policy.receivers}
    facts = {name: await current_encryption_key(ctx, name) for name in sorted(names)}
    cosigners = {name: await registered(ctx, name) for name in policy.attributes.cosigners}
    refusal = decide_deposit(
        policy,
        requester=await current_encryption_key(ctx, ctx.requester),
        escrow_name=ctx.escrow_name,
        already_deposited=existing is not None,
        receivers=facts,
        trust=await load_policy(ctx.tx),
        cosigners=cosigners,
    )
    if refusal is not None:
        return refuse(ctx, refusal, consignment_id=cid)
    key_id, blob = await ctx.vault.encrypt(ctx.tx, cid, part_plaintext(dep))
    row = records.DepositRow(
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
    closes = {
        spec.name: window_closes(policy.attributes_for(spec.name), notified_at=ctx.t)
        for spec in policy.receivers
    }
    await records.insert_deposit(
        ctx.tx, row, sealed_at=dep.sealed_at, request_id=ctx.request_id, closes_at=closes
    )
    notices = [event(ctx, policy.sender, cid, EventKind.DEPOSITED)]
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
        notices.append(event(ctx, policy.sender, cid, EventKind.NOTIFIED, spec.name))
    for name in policy.attributes.cosigners:
        asked = f"{policy.sender!r} asks you to co-sign; see it with `consign cosign {cid}`"
        notices.append(event(ctx, name, cid, EventKind.COSIGN_REQUESTED, name, asked))
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

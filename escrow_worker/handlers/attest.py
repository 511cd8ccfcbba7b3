"""`receipt`, `cosign` and `agreement`: a receiver's signed receipt, a
co-signer's signed agreement, and what a co-signer is asked to sign.

A receipt or agreement is checked against the deposit and against the signing
certificate that signed the request (`decide.decide_attestation`), stored once
per signer (`state.attestations`), and sent on to the consignment's sender (a
receipt) or to the sender and every co-signer (an agreement, and once all are
in, `cosigned_all`), with the statement, its signature and the certificate, so
each agent can verify it on its own. Agreements for one consignment are taken
one at a time (its deposit row locked), so exactly one of them sees the set
complete. A refused one changes nothing and is stored as the decision, and the
sender is told (`denied`). This module must never store a statement that was
refused, nor one whose signature it did not verify.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding

from broker.attest import Attestation, Statement, StatementKind, statement_signature_valid
from broker.canonical import canonical_json
from broker.messages import (
    AgreementBody,
    AgreementReplyBody,
    CosignBody,
    CosignerStatus,
    CosignReplyBody,
    ErrorCode,
    EventKind,
    MessageType,
    ReceiptBody,
    ReceiptReplyBody,
)
from broker.pki.profile import to_pem
from escrow_worker.handlers.common import Context, Notice, Result, denied, event, refuse
from escrow_worker.handlers.decide import AttestationFacts, Denial, decide_attestation
from escrow_worker.handlers.sender import cosigner_status
from escrow_worker.state import attestations, records

_UNKNOWN = Denial(ErrorCode.UNKNOWN_CONSIGNMENT, "no consignment with this id is deposited")


async def handle_receipt(ctx: Context) -> Result:
    assert isinstance(ctx.body, ReceiptBody)
    return await _attest(ctx, ctx.body.consignment_id, ctx.body.statement, ctx.body.signature)


async def handle_cosign(ctx: Context) -> Result:
    assert isinstance(ctx.body, CosignBody)
    return await _attest(ctx, ctx.body.consignment_id, ctx.body.statement, ctx.body.signature)


async def _attest(ctx: Context, cid: str, statement: Statement, signature: bytes) -> Result:
    kind = statement.kind
    row = await records.get_deposit(ctx.tx, cid, for_update=kind is StatementKind.AGREEMENT)
    if row is None:
        return refuse(ctx, _UNKNOWN, consignment_id=cid)
    signed = await attestations.signed_at(ctx.tx, cid, kind)
    key = ctx.request.certificate.public_key()
    assert isinstance(key, Ed25519PublicKey)  # a signing certificate, checked at authentication
    facts = AttestationFacts(
        consignment_id=cid,
        consignment_digest=row.consignment_digest,
        policy_digest=row.policy_digest,
        signature_valid=statement_signature_valid(statement, signature, key),
        already=ctx.requester in signed,
    )
    refusal = decide_attestation(row.policy, statement, facts, requester=ctx.requester, now=ctx.t)
    if refusal is None:
        stored = await attestations.add_attestation(
            ctx.tx,
            attestations.AttestationRow(
                consignment_id=cid,
                kind=kind,
                signer=ctx.requester,
                statement=canonical_json(statement.model_dump(mode="json")).decode("utf-8"),
                signature=signature,
                certificate=ctx.request.certificate.public_bytes(Encoding.DER),
                request_id=ctx.request_id,
                recorded_at=ctx.t,
            ),
        )
        if not stored:  # another worker stored this signer's a moment ago
            refusal = Denial(ErrorCode.ALREADY_SIGNED, f"{ctx.requester!r}'s is in already")
    if refusal is not None:
        notice = denied(ctx, row.sender, cid, refusal, ctx.requester)
        return refuse(ctx, refusal, consignment_id=cid, notices=(notice,))
    proof = Attestation(
        statement=statement, signature=signature, certificate=to_pem(ctx.request.certificate)
    )
    if kind is StatementKind.RECEIPT:
        notice = event(ctx, row.sender, cid, EventKind.RECEIPT, ctx.requester, attestation=proof)
        receipt = ReceiptReplyBody(
            in_reply_to=ctx.request_id,
            consignment_id=cid,
            receiver=ctx.requester,
            recorded_at=ctx.t,
        )
        return Result(MessageType.RECEIPT_REPLY, receipt, (notice,), cid)
    signed[ctx.requester] = ctx.t
    cosigners = row.policy.attributes.cosigners
    told = list(dict.fromkeys((row.sender, *cosigners)))
    notices: list[Notice] = [
        event(ctx, who, cid, EventKind.COSIGNED, ctx.requester, attestation=proof) for who in told
    ]
    if all(name in signed for name in cosigners):
        notices += [event(ctx, who, cid, EventKind.COSIGNED_ALL) for who in told]
    reply = CosignReplyBody(
        in_reply_to=ctx.request_id,
        consignment_id=cid,
        cosigner=ctx.requester,
        recorded_at=ctx.t,
        cosigners=tuple(CosignerStatus(name=n, signed_at=signed.get(n)) for n in cosigners),
    )
    return Result(MessageType.COSIGN_REPLY, reply, tuple(notices), cid)


async def handle_agreement(ctx: Context) -> Result:
    """What a co-signer (or the sender) is asked to sign: the whole policy."""
    assert isinstance(ctx.body, AgreementBody)
    cid = ctx.body.consignment_id
    row = await records.get_deposit(ctx.tx, cid)
    if row is None:
        return refuse(ctx, _UNKNOWN, consignment_id=cid)
    if ctx.requester != row.sender and ctx.requester not in row.policy.attributes.cosigners:
        refusal = Denial(
            ErrorCode.NOT_A_COSIGNER, f"{ctx.requester!r} is not a co-signer of this consignment"
        )
        notice = denied(ctx, row.sender, cid, refusal, None)
        return refuse(ctx, refusal, consignment_id=cid, notices=(notice,))
    reply = AgreementReplyBody(
        in_reply_to=ctx.request_id,
        consignment_id=cid,
        sender=row.sender,
        deposited_at=row.deposited_at,
        consignment_digest=row.consignment_digest,
        consignment_size=row.consignment_size,
        policy=row.policy,
        policy_digest=row.policy_digest,
        cosigners=await cosigner_status(ctx, row),
    )
    return Result(MessageType.AGREEMENT_REPLY, reply, (), cid)

"""`batch`: many deposits, key requests or revocations in one signed request,
decided in the request's one transaction, answered by one `batch-reply` with
a result per item (docs/protocol.md, "Batches").

Each item is decided by the handler of its kind exactly as a request alone
would be, under the item's own id: its decision and reply body are recorded in
`requests` under that id, so the item is idempotent on its own. An item seen
before (in this batch redelivered, or in another batch) with the same body from
the same signer gets its recorded result and decides nothing again; the same id
with another body or signer is `replayed`, for that item only. A refusal of one
item never fails the others. Each item decided now (refusals included) is
handed back as an `ItemDecision`, which the service logs as a decision of its
own; an item answered from its record decided nothing now and is not logged
again. Nothing here logs or keeps a key part.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Final

from broker.canonical import canonical_json
from broker.messages import (
    BatchBody,
    BatchItem,
    BatchKind,
    BatchReplyBody,
    BatchResult,
    ErrorCode,
    MessageType,
    UnknownMessage,
    error_reply,
    parse_body,
)
from escrow_worker.handlers.common import Context, ItemDecision, Notice, Result
from escrow_worker.handlers.deposit import handle_deposit
from escrow_worker.handlers.release import handle_key_request
from escrow_worker.handlers.sender import handle_revoke
from escrow_worker.state import records

__all__ = ["handle_batch", "item_digest", "item_sha256"]

_HANDLERS: Final[dict[BatchKind, Callable[[Context], Awaitable[Result]]]] = {
    BatchKind.DEPOSIT: handle_deposit,
    BatchKind.KEY_REQUEST: handle_key_request,
    BatchKind.REVOKE: handle_revoke,
}


def item_sha256(kind: BatchKind, body: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON `{"body": body, "kind": kind}`: the
    item's `request_sha256` in its log entry."""
    return hashlib.sha256(canonical_json({"kind": kind.value, "body": body})).hexdigest()


def item_digest(kind: BatchKind, body: dict[str, Any]) -> str:
    """What an item's record is compared by: never equal to the SHA-256 of a
    signed request's payload, so an item's id cannot be answered to a request
    sent alone (that is `replayed`)."""
    return "item:" + item_sha256(kind, body)


def _order(item: BatchItem) -> tuple[str, str]:
    """Decide items by consignment id: two batches about the same consignments
    lock their rows (PostgreSQL) in the same order."""
    cid = item.body.get("consignment_id")
    return (cid if isinstance(cid, str) else "", item.id)


async def handle_batch(ctx: Context) -> Result:
    assert isinstance(ctx.body, BatchBody)
    kind = ctx.body.kind
    for item_id in sorted(item.id for item in ctx.body.items):
        await ctx.tx.lock(item_id)  # the same item in two batches: one at a time
    answers: dict[str, BatchResult] = {}
    decided: dict[str, ItemDecision] = {}
    notices: list[Notice] = []
    batch_ctx = replace(ctx, memo={})  # the directory read once per name
    for item in sorted(ctx.body.items, key=_order):
        answers[item.id], decision = await _item(batch_ctx, kind, item)
        if decision is not None:
            decided[item.id] = decision
            notices.extend(decision.result.notices)
    reply = BatchReplyBody(
        in_reply_to=ctx.request_id,
        kind=kind,
        results=tuple(answers[item.id] for item in ctx.body.items),
    )
    items = tuple(decided[item.id] for item in ctx.body.items if item.id in decided)
    return Result(MessageType.BATCH_REPLY, reply, tuple(notices), items=items)


def _refusal(
    item: BatchItem, kind: BatchKind, code: ErrorCode, message: str
) -> tuple[BatchResult, ItemDecision]:
    """A refusal of one item that changes nothing and is recorded under no id
    (it is logged all the same: the batch decided it)."""
    cid = item.body.get("consignment_id")
    body = error_reply(
        in_reply_to=item.id,
        code=code,
        message=message,
        request_type=kind.value,
        consignment_id=cid if isinstance(cid, str) else None,
    )
    answer = BatchResult(id=item.id, type="error", body=body.model_dump(mode="json"))
    # Its entry names no consignment: the id in an item refused unread may be anything.
    result = Result(MessageType.ERROR, body, decision=code.value)
    return answer, ItemDecision(item.id, item_sha256(kind, item.body), result)


async def _item(
    ctx: Context, kind: BatchKind, item: BatchItem
) -> tuple[BatchResult, ItemDecision | None]:
    envelope = ctx.request.envelope
    if item.id == envelope.request_id:
        message = "an item's id must differ from the id of the batch that carries it"
        return _refusal(item, kind, ErrorCode.MALFORMED, message)
    digest = item_digest(kind, item.body)
    stored = await records.find_request(ctx.tx, item.id)
    if stored is not None:
        if stored.signer != envelope.signer or stored.request_sha256 != digest:
            message = f"request id {item.id} was already used for another request"
            return _refusal(item, kind, ErrorCode.REPLAYED, message)
        recorded = BatchResult.model_validate(
            {"id": item.id, "type": stored.reply_type, "body": json.loads(stored.reply)}
        )
        return recorded, None  # decided, and logged, when it was first seen
    try:
        body = parse_body(kind.value, 1, item.body)
    except UnknownMessage as exc:
        return _refusal(item, kind, ErrorCode.MALFORMED, str(exc))
    item_ctx = replace(ctx, body=body, item_id=item.id, item_type=kind.value)
    result = await _HANDLERS[kind](item_ctx)
    reply = result.reply.model_dump(mode="json")
    await records.insert_request(
        ctx.tx,
        records.StoredRequest(
            request_id=item.id,
            signer=envelope.signer,
            signer_name=ctx.requester,
            type=kind.value,
            request_sha256=digest,
            decision=result.decision,
            # Answered inside the batch's reply, never alone.
            reply_id=envelope.request_id,
            reply_type=result.reply_type.value,
            reply=canonical_json(reply),
        ),
        consignment_id=result.consignment_id,
        now=ctx.t,
    )
    answer = BatchResult.model_validate(
        {"id": item.id, "type": result.reply_type.value, "body": reply}
    )
    return answer, ItemDecision(item.id, digest.removeprefix("item:"), result)

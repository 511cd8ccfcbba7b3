"""What the transaction log says about a decided request and about each message
the escrow sends: the `LogItem`s the service hands to `Tx.log` in the request's
own transaction (docs/log.md, "Entry kinds").

Pure: builds data from what the service already holds. It must never put a key
part in the log: a deposit's sealed body (alone or in a batch of deposits) is
logged by digest only, and a key release's reply without its `sealed_key_part`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from pydantic import BaseModel

from broker.canonical import b64, canonical_json
from broker.envelope import SignedEnvelope
from broker.messages import BatchKind, BatchReplyBody, MessageType
from escrow_worker.handlers.auth import VerifiedRequest
from escrow_worker.handlers.common import ItemDecision, Notice, Result
from escrow_worker.state.base import LogItem

__all__ = ["batch_items", "message_item", "request_item"]

#: Requests whose signed bytes carry a key part sealed to the escrow: logged by digest.
_BYTES_WITHHELD: Final = frozenset({MessageType.DEPOSIT.value})
#: Reply fields never logged (a key part, sealed to the receiver).
_SECRET_FIELDS: Final = frozenset({"sealed_key_part"})
#: Replies logged in full (less the fields above); the rest by digest only.
_REPLIES_LOGGED: Final = frozenset(
    {
        MessageType.DEPOSIT_RECEIPT.value,
        MessageType.KEY_RELEASE.value,
        MessageType.REVOKE_REPLY.value,
        MessageType.RECEIPT_REPLY.value,
        MessageType.COSIGN_REPLY.value,
        MessageType.ERROR.value,
    }
)


def _body(model: BaseModel) -> dict[str, Any]:
    data = model.model_dump(mode="json", exclude_none=True)
    return {k: v for k, v in data.items() if k not in _SECRET_FIELDS}


def _withheld(envelope_type: str, result: Result) -> bool:
    """Whether the signed request carries a key part sealed to the escrow."""
    if envelope_type in _BYTES_WITHHELD:
        return True
    # A batch that was decided at all parsed: its reply says its kind.
    return envelope_type == MessageType.BATCH.value and (
        not isinstance(result.reply, BatchReplyBody) or result.reply.kind is BatchKind.DEPOSIT
    )


def _parties(requester: str, result: Result) -> tuple[str, ...]:
    parties = {requester, *(n.destination for n in result.notices)}
    receivers = getattr(result.reply, "receivers", None)
    if isinstance(receivers, tuple):
        parties.update(str(r) for r in receivers)
    return tuple(parties)


def request_item(
    signed: SignedEnvelope,
    request: VerifiedRequest,
    result: Result,
    *,
    reply_id: str,
    reply_body: bytes,
    at: int,
) -> LogItem:
    """The `request` entry: who asked what (the signed bytes, as received), the
    decision and the reply."""
    envelope = request.envelope
    data: dict[str, Any] = {
        "request_id": envelope.request_id,
        "type": envelope.type,
        "version": envelope.version,
        "signer": request.sender,
        "certificate": envelope.signer,
        "decision": result.decision,
        "request_sha256": hashlib.sha256(signed.payload).hexdigest(),
        "reply_id": reply_id,
        "reply_type": result.reply_type.value,
        "reply_sha256": hashlib.sha256(reply_body).hexdigest(),
    }
    if not _withheld(envelope.type, result):
        data["request"] = b64(signed.to_wire())
    if result.reply_type.value in _REPLIES_LOGGED:
        data["reply"] = _body(result.reply)
    parties = _parties(request.sender, result)
    return LogItem("request", data, at, result.consignment_id, parties)


def batch_items(
    signed: SignedEnvelope, request: VerifiedRequest, result: Result, *, reply_id: str, at: int
) -> list[LogItem]:
    """A `request` entry per item the batch decided, in the batch's order, after
    the batch's own: the item as a request of the batch's kind, under its id,
    with `batch` naming the batch's entry (docs/log.md, "Batch items")."""
    envelope = request.envelope
    batch = {
        "request_id": envelope.request_id,
        "request_sha256": hashlib.sha256(signed.payload).hexdigest(),
    }
    kind = result.reply.kind.value if isinstance(result.reply, BatchReplyBody) else envelope.type
    return [_item(envelope.signer, request.sender, kind, batch, item, reply_id, at)
            for item in result.items]  # fmt: skip


def _item(
    certificate: str,
    signer: str,
    kind: str,
    batch: dict[str, str],
    item: ItemDecision,
    reply_id: str,
    at: int,
) -> LogItem:
    result = item.result
    # What the batch-reply holds for the item: its `results[i].body`.
    answered = canonical_json(result.reply.model_dump(mode="json"))
    data: dict[str, Any] = {
        "request_id": item.item_id,
        "type": kind,
        "version": 1,
        "signer": signer,
        "certificate": certificate,
        "decision": result.decision,
        "request_sha256": item.sha256,
        "batch": batch,
        "reply_id": reply_id,
        "reply_type": result.reply_type.value,
        "reply_sha256": hashlib.sha256(answered).hexdigest(),
    }
    if result.reply_type.value in _REPLIES_LOGGED:
        data["reply"] = _body(result.reply)
    return LogItem("request", data, at, result.consignment_id, _parties(signer, result))


def message_item(notice: Notice, message_id: str, request_id: str, at: int) -> LogItem:
    """The `event` or `notify` entry: what the escrow told whom, about what."""
    body = _body(notice.body)
    consignment = body.get("consignment_id")
    parties = {notice.destination}
    about = body.get("receiver")
    if isinstance(about, str):
        parties.add(about)
    data = {
        "to": notice.destination,
        "message_id": message_id,
        "request_id": request_id,
        "body": body,
    }
    kind = "notify" if notice.type is MessageType.NOTIFY else "event"
    cid = consignment if isinstance(consignment, str) else None
    return LogItem(kind, data, at, cid, tuple(parties))

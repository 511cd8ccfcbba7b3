"""What the transaction log says about a decided request and about each message
the escrow sends: the `LogItem`s the service hands to `Tx.log` in the request's
own transaction (docs/log.md, "Entry kinds").

Pure: builds data from what the service already holds. It must never put a key
part in the log: a deposit's sealed body is logged by digest only, and a key
release's reply without its `sealed_key_part`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from pydantic import BaseModel

from broker.canonical import b64
from broker.envelope import SignedEnvelope
from broker.messages import MessageType
from escrow_worker.handlers.auth import VerifiedRequest
from escrow_worker.handlers.common import Notice, Result
from escrow_worker.state.base import LogItem

__all__ = ["message_item", "request_item"]

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
    if envelope.type not in _BYTES_WITHHELD:
        data["request"] = b64(signed.to_wire())
    if result.reply_type.value in _REPLIES_LOGGED:
        data["reply"] = _body(result.reply)
    parties = {request.sender, *(n.destination for n in result.notices)}
    receivers = getattr(result.reply, "receivers", None)
    if isinstance(receivers, tuple):
        parties.update(str(r) for r in receivers)
    return LogItem("request", data, at, result.consignment_id, tuple(parties))


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

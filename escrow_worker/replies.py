"""What the escrow sends: signed replies, refusals and events, and what the
worker does with one delivery (`Outcome`).

`Replies` signs every message the escrow sends with its signing key, lifetime
`REPLY_LIFETIME`; `error` is the one way the service builds a refusal it was not
a handler's to decide (unauthenticated, stale, replayed, unknown type). This
module must never decide anything and never log a message body.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from broker.envelope import Envelope, sign_new_envelope
from broker.messages import ErrorCode, MessageType, error_reply
from broker.transport.base import Message
from escrow_worker.state.records import OutboxRow

__all__ = ["REPLY_LIFETIME", "Outcome", "Outgoing", "Replies", "outbox_message"]

#: Lifetime written into the escrow's replies and events. A stored reply is sent
#: again, byte for byte, whenever its request comes again, so agents match it by
#: `in_reply_to` and should not refuse it for age; the window only bounds how long
#: a captured event looks current.
REPLY_LIFETIME = timedelta(days=30)


@dataclass(frozen=True)
class Outgoing:
    """One signed message for one inbox."""

    destination: str
    message: Message
    #: Set for outbox rows: mark it sent once published.
    outbox_id: int | None = None
    #: The destination is an authenticated, registered party: the escrow may
    #: declare its inbox. False for the claimed (unauthenticated) reply_to.
    declare: bool = True


class Who(TypedDict):
    request_id: str
    request_type: str
    requester: str


@dataclass(frozen=True)
class Outcome:
    """What to do with one delivery."""

    #: Unparseable or oversize: reject it to the dead-letter queue, send nothing.
    dead_letter: bool
    reply: Outgoing | None = None
    events: tuple[Outgoing, ...] = ()
    request_id: str | None = None
    request_type: str | None = None
    #: The authenticated requester's name (or "?" if it is not authenticated).
    requester: str | None = None
    #: For the log line: "ok", "refused:<code>", "resent:<decision>", ...
    decision: str = ""
    #: The reply is stored: a redelivery gets the same bytes again.
    stored: bool = False


def _wire_type(type_: str) -> str:
    return f"{type_}.v1"


def outbox_message(row: OutboxRow) -> Outgoing:
    """An outbox row as the message to publish (again: same id, same bytes)."""
    message = Message(
        body=row.body, message_id=row.message_id, type=row.type, correlation_id=row.request_id
    )
    return Outgoing(row.destination, message, outbox_id=row.id)


class Replies:
    """Signs the escrow's messages with its signing key."""

    def __init__(self, signing_key: Ed25519PrivateKey, signer: str) -> None:
        self._signing_key = signing_key
        self._signer = signer

    def sign(
        self,
        type_: MessageType,
        body: BaseModel,
        *,
        audience: str,
        now: datetime,
        correlation_id: str,
    ) -> Message:
        message_id, wire = sign_new_envelope(
            self._signing_key,
            type=type_.value,
            body=body.model_dump(mode="json"),
            audience=audience,
            signer=self._signer,
            now=now,
            lifetime=REPLY_LIFETIME,
        )
        return Message(
            body=wire,
            message_id=message_id,
            type=_wire_type(type_.value),
            correlation_id=correlation_id,
        )

    def error(
        self,
        envelope: Envelope,
        code: ErrorCode,
        message: str,
        *,
        to: str,
        now: datetime,
        detail: str | None = None,
        declare: bool = True,
    ) -> Outgoing:
        body = error_reply(
            in_reply_to=envelope.request_id,
            code=code,
            message=message,
            request_type=envelope.type,
            detail=detail,
        )
        signed = self.sign(
            MessageType.ERROR, body, audience=to, now=now, correlation_id=envelope.request_id
        )
        return Outgoing(to, signed, declare=declare)

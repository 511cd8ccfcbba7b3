"""What the dead-letter queue says about a message: why and where from.

RabbitMQ writes ``x-first-death-reason`` and ``x-first-death-queue`` on what it
dead-letters; a message that the escrow could not deliver to an inbox is put
there by `Transport.dead_letter` with the application headers
`DEAD_LETTER_HEADERS` instead. Both are unsigned: they serve the operator's
listing and must never be acted on. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["DEAD_LETTER_HEADERS", "DeadLetter", "dead_letter_of"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why and where from a message reached the dead-letter queue."""

    #: ``"rejected"`` (a handler or the size check refused it) or
    #: ``"delivery_limit"`` (returned too often), as RabbitMQ says (it may report
    #: others); ``"undeliverable"`` for a message `Transport.dead_letter` put there.
    reason: str
    #: The queue it was dead-lettered from (for "undeliverable", the queue it
    #: could not be delivered to).
    queue: str
    #: Why it could not be delivered ("undeliverable" only).
    detail: str | None = None


#: Application headers of a message `Transport.dead_letter` publishes; RabbitMQ's
#: own ``x-first-death-*`` headers take precedence when present.
DEAD_LETTER_HEADERS: Final = (
    "consign-dead-letter-reason",
    "consign-dead-letter-queue",
    "consign-dead-letter-detail",
)


def dead_letter_of(headers: Mapping[str, object]) -> DeadLetter | None:
    """The `DeadLetter` that a message's headers claim, if any (unsigned: for
    the operator's listing only)."""
    reason = headers.get("x-first-death-reason")
    origin = headers.get("x-first-death-queue")
    if isinstance(reason, str) and isinstance(origin, str):
        return DeadLetter(reason=reason, queue=origin)
    reason, origin, detail = (headers.get(k) for k in DEAD_LETTER_HEADERS)
    if isinstance(reason, str) and isinstance(origin, str):
        return DeadLetter(reason, origin, detail if isinstance(detail, str) else None)
    return None

"""What a worker does with a message that no inbox took: never drop it silently.

An inbox cannot be published to when it is missing or not bound (`Unroutable`),
when the broker refuses the message (`PublishRefused`: the inbox is full, or
RabbitMQ cannot take it now), and it may have been declared with other
arguments than the protocol's (`TopologyError` when the worker declares it).
Then, per docs/protocol.md ("When an inbox cannot be published to"):

- a reply to an authenticated requester is kept: a copy goes to the dead-letter
  queue (reason ``undeliverable``, from that inbox; `consign escrow
  dead-letters` lists it), once per message id per worker; a stored decision is
  also sent again to any retry of its request;
- an event or notification stays unsent in the outbox, and the sweep tries again;
- a reply to the claimed `reply_to` of a request that failed authentication goes
  nowhere else (nothing an attacker names is ever kept or declared): it is
  logged and counted, and the same bytes get the same answer again.

Each inbox's trouble is logged once, with the inbox's name, until a message is
delivered to it again; `counts` (inbox queue name -> messages not delivered) is
the metric. This module must never log a message body.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping

from broker import Transport
from broker.errors import PublishRefused, TopologyError, TransportError, Unroutable
from escrow_worker.replies import Outgoing

__all__ = ["Undelivered"]

_log = logging.getLogger(__name__)

#: Message ids of replies already put into the dead-letter queue by this worker.
_KEPT_IDS = 10_000


def _why(exc: TransportError) -> str:
    if isinstance(exc, Unroutable):
        return "unroutable: the inbox does not exist or is not bound to the inbox exchange"
    if isinstance(exc, PublishRefused):
        return f"refused by the broker: {exc.message}"
    return exc.message


class Undelivered:
    """Counts, logs once per inbox, and keeps what could not be delivered."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._counts: collections.Counter[str] = collections.Counter()
        self._failing: dict[str, str] = {}
        self._misdeclared: set[str] = set()
        self._kept: collections.OrderedDict[str, None] = collections.OrderedDict()
        #: Replies to unauthenticated requests that no inbox took.
        self.unauthenticated = 0

    @property
    def counts(self) -> Mapping[str, int]:
        """Inbox queue name -> messages that could not be delivered to it."""
        return self._counts

    def misdeclared(self, identity: str, exc: TopologyError) -> None:
        """The worker could not declare `identity`'s inbox; it still publishes."""
        inbox = self._transport.config.inbox_queue(identity)
        if inbox not in self._misdeclared:
            self._misdeclared.add(inbox)
            _log.warning("cannot declare inbox %s as the protocol gives it: %s", inbox, exc.message)

    def delivered(self, identity: str) -> None:
        inbox = self._transport.config.inbox_queue(identity)
        if self._failing.pop(inbox, None) is not None:
            _log.info("inbox %s takes messages again", inbox)

    async def failed(self, outgoing: Outgoing, exc: TransportError) -> None:
        """`outgoing` could not be published to its inbox: count, log, keep.

        Raises if a reply cannot be kept either (the request then comes again)."""
        inbox = self._transport.config.inbox_queue(outgoing.destination)
        why = _why(exc)
        message = outgoing.message
        if not outgoing.declare:
            self.unauthenticated += 1
            _log.warning(
                "%s %s to the claimed inbox %s of an unauthenticated request not delivered"
                " (%s); it is not kept",
                message.type,
                message.message_id,
                inbox,
                why,
            )
            return
        self._counts[inbox] += 1
        kept = "kept in the outbox" if outgoing.outbox_id is not None else "dead-lettered"
        if self._failing.get(inbox) != why:
            self._failing[inbox] = why
            _log.warning(
                "cannot deliver to inbox %s (%s): replies are dead-lettered, events stay in the"
                " outbox until it takes them; first: %s %s, %s",
                inbox,
                why,
                message.type,
                message.message_id,
                kept,
            )
        if outgoing.outbox_id is not None or message.message_id in self._kept:
            return
        await self._transport.dead_letter(message, queue=inbox, detail=why)
        self._kept[message.message_id] = None
        if len(self._kept) > _KEPT_IDS:
            self._kept.popitem(last=False)

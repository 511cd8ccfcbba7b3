"""The transport interface: how agents and escrow workers move messages.

A `Transport` is handed to agents and workers through their constructors. Two
implementations pass the same test suite: `AmqpTransport` (RabbitMQ, the real
deployment) and `InProcessTransport` (one process, no server, the embedded
default). `broker.connect_transport(url)` picks one from a URL.

Topology, all names derived from `TransportConfig.prefix` (default ``consign``):

- ``{prefix}.escrow.requests``: the escrow's work queue (durable, quorum, with a
  delivery limit), reached through the default exchange by its name (`ESCROW`);
- ``{prefix}.inbox.{identity}``: one durable quorum inbox per agent identity,
  bound to the direct exchange ``{prefix}.inbox`` by the identity (`Inbox(identity)`);
- ``{prefix}.dlx``: a fanout dead-letter exchange, into the durable queue
  ``{prefix}.dead-letters`` that an operator inspects. Every queue above
  dead-letters into it: rejected messages, oversize ones, and those returned more
  than `delivery_limit` times.

Guarantees: a publish returns only once the broker has taken the message
(publisher confirm); an unroutable, refused or oversize message raises a
`TransportError`, never vanishes. A delivery is removed only when acked; one that
is not acked comes back with `redelivered=True`. Redelivery is normal: handlers
must be idempotent by message id.

An escrow worker::

    async with transport.consume(transport.config.escrow_queue, prefetch=16) as deliveries:
        async for delivery in deliveries:
            async with delivery.process():  # ack, or dead-letter on error
                reply = await handle(delivery)  # idempotent by delivery.message_id
                await transport.publish(Inbox(requester), reply)

An agent's inbox::

    inbox = await transport.declare_inbox("alice")
    delivery = await transport.get(inbox, timeout=5)  # None if nothing came

This module holds no I/O of its own and must never import `client` or
`escrow_worker`. Nothing here looks inside message bodies: authenticity comes
from the signed envelope, not from AMQP properties, which are not signed.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator

from broker.errors import (
    DeliveryLost,
    MessageTooLarge,
    TransportClosed,
)
from broker.lifecycle import Resource
from broker.transport.config import (
    DEFAULT_PREFETCH,
    ESCROW,
    Destination,
    EscrowQueue,
    Inbox,
    Message,
    TransportConfig,
)
from broker.transport.deadletter import DEAD_LETTER_HEADERS, DeadLetter, dead_letter_of
from broker.transport.delivery import Deliveries, Delivery, Requeue, _Consumer

__all__ = [
    "DEAD_LETTER_HEADERS",
    "DEFAULT_PREFETCH",
    "ESCROW",
    "DeadLetter",
    "Deliveries",
    "Delivery",
    "Destination",
    "EscrowQueue",
    "Inbox",
    "Message",
    "Requeue",
    "Transport",
    "TransportConfig",
    "dead_letter_of",
]

_log = logging.getLogger(__name__)


class Transport(Resource, abc.ABC):
    """Moves `Message`s between agents and the escrow. See the module docstring.

    Use as ``async with transport: ...`` or call `start()` and `close()`.
    """

    def __init__(self, config: TransportConfig | None = None) -> None:
        self._config = config if config is not None else TransportConfig()
        self._started = False
        self._closed = False
        self._consumers: set[_Consumer] = set()

    @property
    def config(self) -> TransportConfig:
        return self._config

    # -- life cycle --------------------------------------------------------

    async def start(self) -> None:
        """Connect and declare the exchanges. Idempotent; fails after `close()`."""
        if self._closed:
            raise TransportClosed("the transport is closed", hint="create a new transport")
        if not self._started:
            await self._start()
            self._started = True

    async def close(self) -> None:
        """End consumers, return unsettled deliveries, disconnect. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for consumer in self._consumers:
            consumer.stop()
        if self._started:
            await self._close()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed("the transport is closed", hint="create a new transport")
        if not self._started:
            raise TransportClosed(
                "the transport is not started", hint="use 'async with transport:' or start()"
            )

    # -- topology ----------------------------------------------------------

    async def declare_escrow_queues(self) -> None:
        """Declare the escrow work queue and the dead-letter queue. Idempotent."""
        self._check_open()
        await self._declare_escrow_queues()

    async def declare_inbox(self, identity: str) -> str:
        """Declare the inbox of `identity` (and the dead-letter queue); return its name."""
        name = self._config.inbox_queue(identity)
        self._check_open()
        await self._declare_inbox(identity, name)
        return name

    # -- publish -----------------------------------------------------------

    async def publish(self, destination: Destination, message: Message) -> None:
        """Return once the broker has taken `message` for `destination`.

        Raises `MessageTooLarge`, `Unroutable` (nothing declared for the
        destination), `PublishRefused`, `PublishTimeout` or `ConnectionFailed`.
        Safe to call concurrently; confirms are awaited in parallel.
        """
        self._check_open()
        if len(message.body) > self._config.max_message_size:
            raise MessageTooLarge(
                f"message {message.message_id} is {len(message.body)} bytes, "
                f"over the {self._config.max_message_size}-byte limit",
                hint="send large content as a consignment file, not in a message",
            )
        await self._publish(destination, message)

    async def dead_letter(self, message: Message, *, queue: str, detail: str) -> None:
        """Put `message`, which could not be delivered to `queue`, into the
        dead-letter queue (reason ``undeliverable``), where the operator's
        listing shows it. Raises like `publish`."""
        self._check_open()
        reason_key, queue_key, detail_key = DEAD_LETTER_HEADERS
        headers = {
            **message.headers,
            reason_key: "undeliverable",
            queue_key: queue,
            detail_key: detail[:200],
        }
        kept = dataclasses.replace(message, headers=headers)
        if len(kept.body) > self._config.max_message_size:
            raise MessageTooLarge(f"message {message.message_id} is over the size limit")
        await self._publish_dead_letter(kept)

    # -- consume -----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def consume(
        self, queue: str, *, prefetch: int = DEFAULT_PREFETCH
    ) -> AsyncIterator[Deliveries]:
        """Consume `queue` with manual acks, at most `prefetch` unsettled at once.

        ``async with transport.consume(name, prefetch=8) as deliveries:
              async for delivery in deliveries:
                  async with delivery.process(): ...``

        Leaving the block returns every unsettled delivery to the queue. Oversize
        deliveries are dead-lettered and never yielded (except from the dead-letter
        queue itself). Raises `QueueNotFound`.
        """
        if not 1 <= prefetch <= self._config.max_prefetch:
            raise ValueError(f"prefetch must be between 1 and {self._config.max_prefetch}")
        self._check_open()
        consumer = await self._open_consumer(queue, prefetch)
        self._consumers.add(consumer)
        try:
            yield Deliveries(self, consumer)
        finally:
            self._consumers.discard(consumer)
            await consumer.close()

    # `timeout` rather than asyncio.timeout(): 0 means one look, and the end of the
    # wait is an answer (None, the queue is empty), not an error.
    async def get(self, queue: str, *, timeout: float = 0.0) -> Delivery | None:  # noqa: ASYNC109
        """Fetch one delivery from `queue`, waiting up to `timeout` seconds.

        Returns None if none arrived. The delivery must be settled; if it is not,
        it returns to the queue when the transport closes. Raises `QueueNotFound`.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            delivery = await self._get(queue, max(deadline - loop.time(), 0.0))
            if delivery is None or await self._admit(delivery):
                return delivery

    async def _admit(self, delivery: Delivery) -> bool:
        """Screen a received delivery; dead-letter it if it is oversize.

        The dead-letter queue itself is not screened: it dead-letters nowhere, so
        rejecting there would destroy what the operator is meant to inspect.
        """
        if (
            len(delivery.body) <= self._config.max_message_size
            or delivery.queue == self._config.dead_letter_queue
        ):
            return True
        _log.warning(
            "dead-lettering %r: over the %d-byte limit", delivery, self._config.max_message_size
        )
        with contextlib.suppress(DeliveryLost):  # then it comes back and is screened again
            await delivery.reject(requeue=False)
        return False

    # -- for implementations -------------------------------------------------

    @abc.abstractmethod
    async def _start(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    async def _declare_escrow_queues(self) -> None: ...

    @abc.abstractmethod
    async def _declare_inbox(self, identity: str, queue: str) -> None: ...

    @abc.abstractmethod
    async def _publish(self, destination: Destination, message: Message) -> None: ...

    @abc.abstractmethod
    async def _publish_dead_letter(self, message: Message) -> None: ...

    @abc.abstractmethod
    async def _open_consumer(self, queue: str, prefetch: int) -> _Consumer: ...

    @abc.abstractmethod
    async def _get(self, queue: str, wait: float) -> Delivery | None: ...

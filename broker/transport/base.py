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
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Self, TypeAlias

from broker.canonical import NAME, NAME_RULE
from broker.errors import (
    BrokerError,
    DeliveryLost,
    InvalidName,
    MessageTooLarge,
    TransportClosed,
    TransportError,
)
from broker.transport.deadletter import DEAD_LETTER_HEADERS, DeadLetter, dead_letter_of

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

_MiB: Final = 1024 * 1024
DEFAULT_PREFETCH: Final = 16

# Prefixes and queue names end up in queue names and routing keys (at most 255
# bytes in AMQP); a conservative alphabet keeps them printable and unambiguous.
# Identities follow the one name rule of `broker.canonical`.
_QUEUE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,119}")
_SHORTSTR_MAX = 255  # AMQP short strings: message id, correlation id, type


def _check_name(kind: str, value: str) -> str:
    """Return `value` if it can be part of a queue name, else raise `InvalidName`."""
    if kind == "identity":
        if isinstance(value, str) and NAME.fullmatch(value):
            return value
        raise InvalidName(f"invalid {kind} {value!r}", hint=f"use {NAME_RULE}")
    if not isinstance(value, str) or not _QUEUE_PART.fullmatch(value):
        raise InvalidName(
            f"invalid {kind} {value!r}",
            hint="use 1-120 characters from A-Z a-z 0-9 . _ @ + -, starting with a letter or digit",
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    """Names and limits shared by every transport.

    `prefix` isolates one deployment (or one test) from another on the same broker.
    Changing `delivery_limit` or `max_queue_length` for queues that already exist
    fails with `TopologyError`: RabbitMQ cannot change a queue's arguments.
    """

    prefix: str = "consign"
    #: The escrow work queue; empty means ``{prefix}.escrow.requests``.
    escrow_queue: str = ""
    #: A message returned (requeued, or its consumer gone) more often than this is
    #: dead-lettered, so at most `delivery_limit + 1` deliveries happen.
    delivery_limit: int = 5
    #: Largest body accepted on publish and on receipt, in bytes.
    max_message_size: int = 1 * _MiB
    #: Messages a queue holds before the broker refuses publishes (`PublishRefused`);
    #: None for no limit. RabbitMQ quorum queues apply it approximately (one over).
    max_queue_length: int | None = None
    #: Upper bound for `consume(prefetch=...)`.
    max_prefetch: int = 1000
    #: Seconds a publish may wait for the broker's confirm (`PublishTimeout`).
    publish_timeout: float = 30.0

    def __post_init__(self) -> None:
        _check_name("prefix", self.prefix)
        if self.escrow_queue:
            _check_name("escrow queue name", self.escrow_queue)
        else:
            object.__setattr__(self, "escrow_queue", f"{self.prefix}.escrow.requests")
        if self.delivery_limit < 0:
            raise ValueError("delivery_limit must be >= 0")
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be >= 1")
        if self.max_queue_length is not None and self.max_queue_length < 1:
            raise ValueError("max_queue_length must be >= 1 or None")
        if self.max_prefetch < 1:
            raise ValueError("max_prefetch must be >= 1")
        if self.publish_timeout <= 0:
            raise ValueError("publish_timeout must be > 0")

    @property
    def inbox_exchange(self) -> str:
        return f"{self.prefix}.inbox"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dead-letters"

    def inbox_queue(self, identity: str) -> str:
        return f"{self.prefix}.inbox.{_check_name('identity', identity)}"


@dataclass(frozen=True, slots=True)
class EscrowQueue:
    """Destination: the escrow's work queue."""

    def __str__(self) -> str:
        return "the escrow work queue"


ESCROW: Final = EscrowQueue()


@dataclass(frozen=True, slots=True)
class Inbox:
    """Destination: the inbox of one agent identity."""

    identity: str

    def __post_init__(self) -> None:
        _check_name("identity", self.identity)

    def __str__(self) -> str:
        return f"the inbox of {self.identity!r}"


Destination: TypeAlias = EscrowQueue | Inbox


def _check_shortstr(what: str, value: str) -> None:
    if not value or len(value.encode()) > _SHORTSTR_MAX:
        raise ValueError(f"{what} must be 1-{_SHORTSTR_MAX} bytes of UTF-8")


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message to publish. `message_id` is what handlers deduplicate on."""

    body: bytes
    message_id: str
    #: Message type with its version, e.g. ``"escrow.deposit.v1"``.
    type: str
    correlation_id: str | None = None
    #: Application headers. Names starting with ``x-`` belong to the broker.
    headers: Mapping[str, str] = field(default_factory=dict)
    persistent: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.body, bytes):
            raise TypeError("body must be bytes")
        _check_shortstr("message_id", self.message_id)
        _check_shortstr("type", self.type)
        if self.correlation_id is not None:
            _check_shortstr("correlation_id", self.correlation_id)
        headers = dict(self.headers)
        for key, value in headers.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError("headers must map str to str")
            if not key or key[:2].lower() == "x-":
                raise ValueError(f"header name {key!r} is empty or reserved for the broker")
        object.__setattr__(self, "headers", headers)


class Requeue(BrokerError):
    """Raise inside `Delivery.process()` to put the message back for another try.

    For transient trouble (a database busy, a dependency down). The broker counts
    the return: past `delivery_limit` the message goes to the dead-letter queue.
    """

    def __init__(self, message: str = "requeue for another try", hint: str | None = None) -> None:
        super().__init__(message, hint)


class Delivery(abc.ABC):
    """One received message, to be settled once: `ack()` or `reject()`.

    Prefer `process()`, which settles in one place. A delivery not settled before
    its consumer closes is returned to its queue and delivered again.
    """

    __slots__ = (
        "_settled",
        "body",
        "correlation_id",
        "dead_letter",
        "headers",
        "message_id",
        "queue",
        "redelivered",
        "type",
    )

    def __init__(
        self,
        *,
        queue: str,
        body: bytes,
        message_id: str | None,
        correlation_id: str | None,
        type: str | None,
        headers: Mapping[str, str],
        redelivered: bool,
        dead_letter: DeadLetter | None,
    ) -> None:
        self.queue = queue
        self.body = body
        self.message_id = message_id
        self.correlation_id = correlation_id
        self.type = type
        self.headers = headers
        #: True when the broker delivered this message before (to anyone).
        self.redelivered = redelivered
        #: Set on messages read from the dead-letter queue.
        self.dead_letter = dead_letter
        self._settled = False

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} queue={self.queue!r} message_id={self.message_id!r} "
            f"type={self.type!r} size={len(self.body)} redelivered={self.redelivered}>"
        )

    @property
    def settled(self) -> bool:
        return self._settled

    async def ack(self) -> None:
        """Remove the message from its queue: it has been handled.

        Raises `DeliveryLost` if its channel closed first (it will come back).
        """
        self._begin_settle()
        await self._ack()

    async def reject(self, *, requeue: bool = False) -> None:
        """Dead-letter the message, or with `requeue=True` return it for another try."""
        self._begin_settle()
        await self._reject(requeue)

    def _begin_settle(self) -> None:
        if self._settled:
            raise RuntimeError(f"{self!r} is already settled")
        # Settled even if sending the ack fails: the broker then takes it back anyway.
        self._settled = True

    @contextlib.asynccontextmanager
    async def process(self) -> AsyncIterator[None]:
        """Settle the delivery according to how the block ends.

        - normal exit: ack (unless the block settled it itself);
        - `Requeue`, or a transient `TransportError` (e.g. the reply could not be
          published): return it for another try, bounded by the delivery limit;
        - any other exception: log it and reject without requeue, to the
          dead-letter queue. The exception is NOT re-raised, so a consumer loop
          keeps serving the next message;
        - cancellation (or KeyboardInterrupt): return it and re-raise.
        """
        try:
            yield
        except Requeue as exc:
            _log.info("requeueing %r: %s", self, exc)
            await self._settle_quietly(requeue=True)
        except TransportError as exc:
            if exc.transient:
                _log.warning("requeueing %r after a transient error: %s", self, exc)
                await self._settle_quietly(requeue=True)
            else:
                _log.exception("dead-lettering %r", self)
                await self._settle_quietly(requeue=False)
        except Exception:
            _log.exception("dead-lettering %r: its handler failed", self)
            await self._settle_quietly(requeue=False)
        except BaseException:
            await self._settle_quietly(requeue=True)
            raise
        else:
            if not self._settled:
                try:
                    await self.ack()
                except DeliveryLost as exc:
                    _log.warning("ack for %r lost; it will be redelivered: %s", self, exc)

    async def _settle_quietly(self, *, requeue: bool) -> None:
        if self._settled:
            return
        try:
            await self.reject(requeue=requeue)
        except DeliveryLost as exc:
            _log.warning("reject for %r lost; it will be redelivered: %s", self, exc)

    @abc.abstractmethod
    async def _ack(self) -> None: ...

    @abc.abstractmethod
    async def _reject(self, requeue: bool) -> None: ...


class _Consumer(abc.ABC):
    """What an implementation provides behind `Transport.consume()`."""

    @abc.abstractmethod
    async def next(self) -> Delivery | None:
        """The next delivery within the prefetch bound; None once stopped.

        Must be safe to cancel: a cancelled call loses no message.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Make `next()` return None from now on (the transport is closing)."""

    def end(self) -> None:
        """Make `next()` return None from now on, the consumer itself staying
        open until `close()` (its user has had enough)."""
        self.stop()

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consuming; every unsettled delivery goes back to the queue."""


class Deliveries:
    """Async iterator over one consumer's deliveries (see `Transport.consume`).

    Ends when the transport closes. Cancelling a pending `__anext__` (e.g. with
    `asyncio.timeout`) loses nothing and the iterator stays usable.
    """

    def __init__(self, transport: Transport, consumer: _Consumer) -> None:
        self._transport = transport
        self._consumer = consumer

    def __aiter__(self) -> Self:
        return self

    def stop(self) -> None:
        """End the iteration for every task iterating: each gets StopAsyncIteration
        at its next step (a delivery it holds is its own to settle). Leaving the
        `consume` block then cancels the consumer as usual."""
        self._consumer.end()

    async def __anext__(self) -> Delivery:
        while True:
            delivery = await self._consumer.next()
            if delivery is None:
                raise StopAsyncIteration
            if await self._transport._admit(delivery):
                return delivery


class Transport(abc.ABC):
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

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

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

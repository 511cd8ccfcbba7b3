"""In-process transport: the embedded default, one process, no server.

A real implementation of `Transport`, not a mock: `InProcessBroker` keeps queues,
exchanges and bindings with the semantics the AMQP transport gets from RabbitMQ
quorum queues, so the same test suite passes against both:

- publishing to a destination with no queue raises `Unroutable`;
- a full queue (`max_queue_length`) refuses the publish (`PublishRefused`);
- a delivery is removed only when acked; one rejected with requeue, or left
  unsettled when its consumer or transport closes, comes back with
  `redelivered=True` and its return is counted; past `delivery_limit` returns it
  is dead-lettered (reason ``delivery_limit``), a rejected one too (``rejected``);
- `prefetch` bounds unsettled deliveries per consumer.

Several `InProcessTransport`s may share one `InProcessBroker` (like several
connections to one RabbitMQ). Nothing is persisted: messages live as long as the
broker object. The broker must be used from one event loop.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import Any

from broker.errors import (
    DeliveryLost,
    PublishRefused,
    QueueNotFound,
    TopologyError,
    TransportClosed,
    Unroutable,
)
from broker.transport.base import Transport
from broker.transport.config import Destination, EscrowQueue, Message, TransportConfig
from broker.transport.deadletter import DeadLetter, dead_letter_of
from broker.transport.delivery import Delivery, _Consumer

__all__ = ["InProcessBroker", "InProcessTransport"]

_DIRECT = "direct"
_FANOUT = "fanout"


@dataclass(frozen=True, slots=True)
class _QueueArguments:
    delivery_limit: int | None
    dead_letter_exchange: str | None
    max_length: int | None


class _Stored:
    """A message in one queue, with that queue's delivery bookkeeping."""

    __slots__ = ("dead_letter", "delivery_count", "message", "redelivered")

    def __init__(self, message: Message, dead_letter: DeadLetter | None = None) -> None:
        self.message = message
        self.dead_letter = dead_letter
        self.delivery_count = 0  # returns so far, like RabbitMQ's x-delivery-count
        self.redelivered = False


class _Queue:
    def __init__(self, name: str, arguments: _QueueArguments) -> None:
        self.name = name
        self.arguments = arguments
        self.ready: collections.deque[_Stored] = collections.deque()
        self.in_flight = 0
        self._waiters: set[asyncio.Future[None]] = set()

    def wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def changed(self) -> None:
        """Wait until a message arrives or a delivery of this queue is settled."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)


@dataclass(slots=True)
class _Exchange:
    kind: str
    bindings: dict[str, set[str]]  # routing key -> queue names


class InProcessBroker:
    """Queues, exchanges and bindings shared by the `InProcessTransport`s using it."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._exchanges: dict[str, _Exchange] = {}

    def declare_exchange(self, name: str, kind: str) -> None:
        existing = self._exchanges.get(name)
        if existing is None:
            self._exchanges[name] = _Exchange(kind, {})
        elif existing.kind != kind:
            raise TopologyError(f"exchange {name!r} exists with type {existing.kind!r}")

    def declare_queue(self, name: str, arguments: _QueueArguments) -> None:
        existing = self._queues.get(name)
        if existing is None:
            self._queues[name] = _Queue(name, arguments)
        elif existing.arguments != arguments:
            raise TopologyError(
                f"queue {name!r} exists with other arguments",
                hint="use the same delivery limit and queue length, or another prefix",
            )

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        self._exchanges[exchange].bindings.setdefault(routing_key, set()).add(queue)

    def queue(self, name: str) -> _Queue:
        try:
            return self._queues[name]
        except KeyError:
            raise QueueNotFound(f"queue {name!r} does not exist", hint="declare it first") from None

    def wake_all(self) -> None:
        for queue in self._queues.values():
            queue.wake()

    def _route(self, exchange: str, routing_key: str) -> list[_Queue]:
        if exchange == "":  # the default exchange routes by queue name
            names = {routing_key} if routing_key in self._queues else set()
        else:
            found = self._exchanges.get(exchange)
            if found is None:
                return []
            if found.kind == _FANOUT:
                names = set().union(*found.bindings.values())
            else:
                names = found.bindings.get(routing_key, set())
        return [self._queues[name] for name in sorted(names)]

    def publish(self, exchange: str, routing_key: str, message: Message, what: str) -> None:
        queues = self._route(exchange, routing_key)
        if not queues:
            raise Unroutable(
                f"{what} is unroutable: no queue is bound for it",
                hint="is the receiving side's queue declared?",
            )
        for queue in queues:
            limit = queue.arguments.max_length
            if limit is not None and len(queue.ready) + queue.in_flight >= limit:
                raise PublishRefused(f"queue {queue.name!r} is full ({limit} messages); {what}")
        for queue in queues:
            queue.ready.append(_Stored(message))
            queue.wake()

    def take(self, queue: _Queue) -> _Stored:
        stored = queue.ready.popleft()
        queue.in_flight += 1
        return stored

    def settle(self, queue: _Queue, stored: _Stored, *, ack: bool, requeue: bool) -> None:
        queue.in_flight -= 1
        if not ack and not requeue:
            self._dead_letter(queue, stored, "rejected")
        elif not ack:
            stored.delivery_count += 1
            limit = queue.arguments.delivery_limit
            if limit is not None and stored.delivery_count > limit:
                self._dead_letter(queue, stored, "delivery_limit")
            else:
                stored.redelivered = True
                queue.ready.appendleft(stored)
        queue.wake()  # also makes room under a waiting consumer's prefetch

    def _dead_letter(self, queue: _Queue, stored: _Stored, reason: str) -> None:
        exchange = queue.arguments.dead_letter_exchange
        if exchange is None:
            return  # dropped, as RabbitMQ does without a dead-letter exchange
        dead_letter = stored.dead_letter or DeadLetter(reason=reason, queue=queue.name)
        for target in self._route(exchange, queue.name):
            target.ready.append(_Stored(stored.message, dead_letter))
            target.wake()


class _Holder:
    """Owns unsettled deliveries, like an AMQP channel; closing it returns them."""

    def __init__(self, broker: InProcessBroker) -> None:
        self.broker = broker
        self.unsettled: set[_InProcessDelivery] = set()

    def deliver(self, queue: _Queue) -> _InProcessDelivery:
        stored = self.broker.take(queue)
        message = stored.message
        delivery = _InProcessDelivery(
            self,
            queue,
            stored,
            queue=queue.name,
            body=message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            headers=dict(message.headers),
            redelivered=stored.redelivered,
            dead_letter=stored.dead_letter or dead_letter_of(message.headers),
        )
        self.unsettled.add(delivery)
        return delivery

    def settle(self, delivery: _InProcessDelivery, *, ack: bool, requeue: bool) -> None:
        if delivery not in self.unsettled:
            raise DeliveryLost(
                f"{delivery!r} was returned to its queue when its consumer closed",
                hint="settle deliveries inside the consume block",
            )
        self.unsettled.discard(delivery)
        self.broker.settle(delivery._queue_obj, delivery._stored, ack=ack, requeue=requeue)

    def release_all(self) -> None:
        unsettled, self.unsettled = self.unsettled, set()
        for delivery in unsettled:
            self.broker.settle(delivery._queue_obj, delivery._stored, ack=False, requeue=True)


class _InProcessDelivery(Delivery):
    __slots__ = ("_holder", "_queue_obj", "_stored")

    def __init__(self, holder: _Holder, queue_obj: _Queue, stored: _Stored, **fields: Any) -> None:
        super().__init__(**fields)
        self._holder = holder
        self._queue_obj = queue_obj
        self._stored = stored

    async def _ack(self) -> None:
        self._holder.settle(self, ack=True, requeue=False)

    async def _reject(self, requeue: bool) -> None:
        self._holder.settle(self, ack=False, requeue=requeue)


class _InProcessConsumer(_Consumer, _Holder):
    def __init__(
        self, broker: InProcessBroker, queue: _Queue, prefetch: int, holders: set[_Holder]
    ) -> None:
        _Holder.__init__(self, broker)
        self._queue = queue
        self._prefetch = prefetch
        self._stopped = False
        self._holders = holders  # the transport's, so closing it returns our deliveries
        holders.add(self)

    async def next(self) -> Delivery | None:
        while not self._stopped:
            if self._queue.ready and len(self.unsettled) < self._prefetch:
                return self.deliver(self._queue)
            await self._queue.changed()
        return None

    def stop(self) -> None:
        self._stopped = True
        self._queue.wake()

    async def close(self) -> None:
        self.stop()
        self.release_all()
        self._holders.discard(self)


class InProcessTransport(Transport):
    """`Transport` over an `InProcessBroker` (a new private one unless given)."""

    def __init__(
        self, config: TransportConfig | None = None, *, broker: InProcessBroker | None = None
    ) -> None:
        super().__init__(config)
        self._broker = broker if broker is not None else InProcessBroker()
        self._gets = _Holder(self._broker)
        self._holders: set[_Holder] = {self._gets}

    @property
    def broker(self) -> InProcessBroker:
        return self._broker

    async def _start(self) -> None:
        self._broker.declare_exchange(self.config.inbox_exchange, _DIRECT)
        self._broker.declare_exchange(self.config.dead_letter_exchange, _FANOUT)

    async def _close(self) -> None:
        for holder in self._holders:
            holder.release_all()
        self._broker.wake_all()

    def _declare_dead_letter_queue(self) -> None:
        config = self.config
        self._broker.declare_queue(config.dead_letter_queue, _QueueArguments(None, None, None))
        self._broker.bind(config.dead_letter_queue, config.dead_letter_exchange, "")

    def _work_queue_arguments(self) -> _QueueArguments:
        config = self.config
        return _QueueArguments(
            config.delivery_limit, config.dead_letter_exchange, config.max_queue_length
        )

    async def _declare_escrow_queues(self) -> None:
        self._declare_dead_letter_queue()
        self._broker.declare_queue(self.config.escrow_queue, self._work_queue_arguments())

    async def _declare_inbox(self, identity: str, queue: str) -> None:
        self._declare_dead_letter_queue()
        self._broker.declare_queue(queue, self._work_queue_arguments())
        self._broker.bind(queue, self.config.inbox_exchange, identity)

    async def _publish(self, destination: Destination, message: Message) -> None:
        what = f"message {message.message_id} for {destination}"
        if isinstance(destination, EscrowQueue):
            self._broker.publish("", self.config.escrow_queue, message, what)
        else:
            self._broker.publish(self.config.inbox_exchange, destination.identity, message, what)

    async def _publish_dead_letter(self, message: Message) -> None:
        config = self.config
        what = f"message {message.message_id} for {config.dead_letter_queue!r}"
        self._broker.publish(config.dead_letter_exchange, config.dead_letter_queue, message, what)

    async def _open_consumer(self, queue: str, prefetch: int) -> _Consumer:
        return _InProcessConsumer(self._broker, self._broker.queue(queue), prefetch, self._holders)

    async def _get(self, queue: str, wait: float) -> Delivery | None:
        found = self._broker.queue(queue)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not found.ready:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    await found.changed()
            except TimeoutError:
                return None
            if self._closed:
                raise TransportClosed("the transport closed while waiting")
        return self._gets.deliver(found)

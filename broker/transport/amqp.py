"""AMQP transport: `Transport` over RabbitMQ with aio-pika.

One robust connection (`connect_robust`: channels, queues and consumers come back
after the connection drops) carries:

- one publish channel with publisher confirms and ``on_return_raises=True``;
  every publish is ``mandatory``, so an unroutable message raises `Unroutable`
  and a negative confirm raises `PublishRefused`; confirms are awaited
  concurrently, never one after another;
- one channel for declarations, so a refused declaration cannot break publishing;
- one channel per consumer, with its own prefetch (``basic.qos``); closing the
  consumer closes the channel, which returns its unacked messages;
- one short-lived channel per `get`, closed once its delivery is settled.

Queues, exchanges and bindings are declared exactly as `broker.transport.topology`
gives them (docs/protocol.md, "Queues"). aio-pika and aiormq exceptions are
wrapped in `broker.errors` (`amqp_errors`) and never leave this module.
`aio_pika.patterns.RPC` must not be used.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import ChannelInvalidStateError

from broker.errors import (
    ConnectionFailed,
    DeliveryLost,
    TopologyError,
)
from broker.transport.amqp_errors import (
    LINK_ERRORS,
    connect_failed,
    declaration_refused,
    publish_errors,
    where,
    wrapped,
)
from broker.transport.base import (
    Delivery,
    Destination,
    EscrowQueue,
    Message,
    Transport,
    TransportConfig,
    dead_letter_of,
)
from broker.transport.delivery import _Consumer
from broker.transport.topology import dead_letter_queue_arguments, work_queue_arguments

__all__ = ["AmqpTransport"]

_log = logging.getLogger(__name__)

_LINK_ERRORS = LINK_ERRORS
_GET_POLL_MAX = 0.25  # seconds between basic.get polls while `get` waits


async def _close_quietly(channel: AbstractChannel) -> None:
    if channel.is_closed:
        return
    try:
        await channel.close()
    except (*_LINK_ERRORS, TimeoutError) as exc:  # the connection is gone: closed anyway
        _log.debug("closing %r failed: %r", channel, exc)
    except asyncio.CancelledError:
        # aiormq cancels its own close when the connection closes meanwhile; only
        # a cancellation of this task is ours to propagate.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        _log.debug("closing %r was cut short by the connection closing", channel)


class _AmqpDelivery(Delivery):
    __slots__ = ("_after_settle", "_incoming")

    def __init__(
        self,
        incoming: AbstractIncomingMessage,
        queue: str,
        after_settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        raw: Mapping[str, Any] = incoming.headers or {}
        # Broker headers (x-delivery-count, x-death, ...) are not application data.
        headers = {
            key: value
            for key, value in raw.items()
            if isinstance(value, str) and not key.lower().startswith("x-")
        }
        dead_letter = dead_letter_of(raw)
        super().__init__(
            queue=queue,
            body=incoming.body,
            message_id=incoming.message_id,
            correlation_id=incoming.correlation_id,
            type=incoming.type,
            headers=headers,
            redelivered=bool(incoming.redelivered),
            dead_letter=dead_letter,
        )
        self._incoming = incoming
        self._after_settle = after_settle

    async def _ack(self) -> None:
        await self._settle(self._incoming.ack())

    async def _reject(self, requeue: bool) -> None:
        await self._settle(self._incoming.reject(requeue=requeue))

    async def _settle(self, settling: Awaitable[None]) -> None:
        try:
            await settling
        except _LINK_ERRORS as exc:
            raise DeliveryLost(
                f"{self!r} could not be settled: its channel closed ({exc!r})",
                hint="the broker delivers it again",
            ) from exc
        finally:
            if self._after_settle is not None:
                await self._after_settle()


class _AmqpConsumer(_Consumer):
    def __init__(self, channel: AbstractChannel, queue: str) -> None:
        self._channel = channel
        self._queue = queue
        self._buffer: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._stopped = False
        self._transport_closing = False

    async def on_message(self, incoming: AbstractIncomingMessage) -> None:
        self._buffer.put_nowait(incoming)  # bounded by the channel's prefetch

    async def next(self) -> Delivery | None:
        while not self._stopped:
            incoming = await self._buffer.get()
            if incoming is None:
                self._buffer.put_nowait(None)  # for the next task waiting here, if any
                break
            try:
                incoming.channel  # noqa: B018 - raises if its channel died since
            except ChannelInvalidStateError:
                # Delivered before a reconnect: the broker already took it back and
                # redelivers it on the restored channel.
                continue
            return _AmqpDelivery(incoming, self._queue)
        return None

    def stop(self) -> None:
        self._stopped = self._transport_closing = True
        self._buffer.put_nowait(None)

    def end(self) -> None:
        self._stopped = True
        self._buffer.put_nowait(None)

    async def close(self) -> None:
        if self._transport_closing:
            return  # stopped by the transport, whose connection closes the channel
        self.end()
        await _close_quietly(self._channel)


class AmqpTransport(Transport):
    """`Transport` over RabbitMQ at `url` (``amqp://user:password@host:port/vhost``)."""

    def __init__(
        self,
        url: str,
        config: TransportConfig | None = None,
        *,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(config)
        self._url = url
        self._connect_timeout = connect_timeout
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._topology_channel: AbstractChannel | None = None
        self._default_exchange: AbstractExchange | None = None
        self._inbox_exchange: AbstractExchange | None = None
        self._dead_letter_exchange: AbstractExchange | None = None
        # Publishes in flight by message id: see _one_per_message_id.
        self._publishing: dict[str, asyncio.Future[None]] = {}

    @property
    def url(self) -> str:
        """The broker URL without credentials."""
        return where(self._url)

    def _link(self) -> AbstractRobustConnection:
        assert self._connection is not None, "used before start()"
        return self._connection

    async def _start(self) -> None:
        try:
            connection = await aio_pika.connect_robust(
                self._url,
                timeout=self._connect_timeout,
                client_properties={"connection_name": f"consign {self.config.prefix}"},
            )
        except aiormq.exceptions.ProbableAuthenticationError as exc:
            raise ConnectionFailed(
                f"RabbitMQ at {self.url} refused the login",
                hint="check the user name and password in the URL",
            ) from exc
        except (*_LINK_ERRORS, TimeoutError, ValueError) as exc:
            raise connect_failed(self._url, exc, self._connect_timeout) from exc
        try:
            with wrapped(f"opening channels on {self.url}"):
                self._publish_channel = await connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                self._topology_channel = await connection.channel(publisher_confirms=False)
            config = self.config
            with wrapped(f"declaring exchange {config.inbox_exchange!r}"):
                await self._topology_channel.declare_exchange(
                    config.inbox_exchange, aio_pika.ExchangeType.DIRECT, durable=True
                )
            with wrapped(f"declaring exchange {config.dead_letter_exchange!r}"):
                await self._topology_channel.declare_exchange(
                    config.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
                )
            self._default_exchange = self._publish_channel.default_exchange
            self._inbox_exchange = await self._publish_channel.get_exchange(
                config.inbox_exchange, ensure=False
            )
            self._dead_letter_exchange = await self._publish_channel.get_exchange(
                config.dead_letter_exchange, ensure=False
            )
        except BaseException:
            await connection.close()
            raise
        self._connection = connection

    async def _close(self) -> None:
        try:
            await self._link().close()
        except (*_LINK_ERRORS, TimeoutError) as exc:
            _log.debug("closing the connection to %s failed: %r", self.url, exc)

    # -- topology ----------------------------------------------------------

    async def _declare_quorum_queue(
        self, name: str, arguments: dict[str, Any], *, inbox: bool = False
    ) -> AbstractQueue:
        """Declare (never passively) with exactly `arguments`: RabbitMQ refuses if the
        queue exists with any other, which is how a declaration is checked."""
        assert self._topology_channel is not None
        try:
            with wrapped(f"declaring queue {name!r}", declaring=True):
                return await self._topology_channel.declare_queue(
                    name, durable=True, arguments=arguments
                )
        except TopologyError as exc:
            if isinstance(exc.__cause__, aiormq.exceptions.ChannelPreconditionFailed):
                raise declaration_refused(name, exc.__cause__, arguments, inbox=inbox) from exc
            raise

    async def _declare_dead_letter_queue(self) -> None:
        config = self.config
        queue = await self._declare_quorum_queue(
            config.dead_letter_queue, dead_letter_queue_arguments()
        )
        with wrapped(f"binding queue {config.dead_letter_queue!r}", declaring=True):
            await queue.bind(config.dead_letter_exchange)

    async def _declare_escrow_queues(self) -> None:
        await self._declare_dead_letter_queue()
        config = self.config
        await self._declare_quorum_queue(config.escrow_queue, work_queue_arguments(config))

    async def _declare_inbox(self, identity: str, queue: str) -> None:
        await self._declare_dead_letter_queue()
        declared = await self._declare_quorum_queue(
            queue, work_queue_arguments(self.config), inbox=True
        )
        with wrapped(f"binding queue {queue!r}", declaring=True):
            await declared.bind(self.config.inbox_exchange, routing_key=identity)

    # -- publish -----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _one_per_message_id(self, message_id: str) -> AsyncIterator[None]:
        """Keep at most one publish per message id in flight.

        aiormq matches a returned (unroutable) message to its publish by message
        id; two concurrent publishes with the same id could swap outcomes, so an
        unroutable one would look confirmed. Same-id publishes (a re-sent reply)
        are rare, so waiting costs nothing in the common case.
        """
        while (busy := self._publishing.get(message_id)) is not None:
            await asyncio.wait([busy])
        done = asyncio.get_running_loop().create_future()
        self._publishing[message_id] = done
        try:
            yield
        finally:
            del self._publishing[message_id]
            done.set_result(None)

    async def _publish(self, destination: Destination, message: Message) -> None:
        if isinstance(destination, EscrowQueue):
            exchange, routing_key = self._default_exchange, self.config.escrow_queue
        else:
            exchange, routing_key = self._inbox_exchange, destination.identity
        await self._publish_to(exchange, routing_key, message, f"for {destination}")

    async def _publish_dead_letter(self, message: Message) -> None:
        config = self.config
        await self._publish_to(
            self._dead_letter_exchange,
            config.dead_letter_queue,
            message,
            f"for the dead-letter queue {config.dead_letter_queue!r}",
        )

    async def _publish_to(
        self, exchange: AbstractExchange | None, routing_key: str, message: Message, to: str
    ) -> None:
        assert self._publish_channel is not None
        assert exchange is not None
        outgoing = aio_pika.Message(
            message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            headers=dict(message.headers),
            delivery_mode=(
                aio_pika.DeliveryMode.PERSISTENT
                if message.persistent
                else aio_pika.DeliveryMode.NOT_PERSISTENT
            ),
        )
        what = f"message {message.message_id} {to}"
        async with self._one_per_message_id(message.message_id):
            with publish_errors(what, self.config.publish_timeout):
                async with asyncio.timeout(self.config.publish_timeout):
                    await self._publish_channel.ready()  # waits out a reconnect
                    await exchange.publish(outgoing, routing_key=routing_key, mandatory=True)

    # -- consume -----------------------------------------------------------

    async def _channel(self, doing: str) -> AbstractChannel:
        """A new channel without confirms. While the connection is down (being
        restored) this is `ConnectionFailed`, never aiormq's bare RuntimeError."""
        try:
            with wrapped(doing):
                return await self._link().channel(publisher_confirms=False)
        except RuntimeError as exc:  # aiormq: "<Connection ...> closed"
            raise ConnectionFailed(
                f"{doing}: the connection to {self.url} is down",
                hint="it is restored by itself; try again",
            ) from exc

    async def _open_consumer(self, queue: str, prefetch: int) -> _Consumer:
        channel = await self._channel(f"consuming queue {queue!r}")
        try:
            with wrapped(f"consuming queue {queue!r}"):
                await channel.set_qos(prefetch_count=prefetch)
                amqp_queue = await channel.get_queue(queue, ensure=True)
                consumer = _AmqpConsumer(channel, queue)
                await amqp_queue.consume(consumer.on_message, no_ack=False)
        except BaseException:
            await _close_quietly(channel)
            raise
        return consumer

    async def _get(self, queue: str, wait: float) -> Delivery | None:
        # basic.get does not wait, so poll; a consumer would take more than one.
        channel = await self._channel(f"reading queue {queue!r}")
        delivery: Delivery | None = None
        try:
            with wrapped(f"reading queue {queue!r}"):
                amqp_queue = await channel.get_queue(queue, ensure=True)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + wait
                pause = 0.01
                while True:
                    incoming = await amqp_queue.get(no_ack=False, fail=False)
                    if incoming is not None:
                        after = functools.partial(_close_quietly, channel)
                        delivery = _AmqpDelivery(incoming, queue, after_settle=after)
                        return delivery
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return None
                    await asyncio.sleep(min(pause, remaining))
                    pause = min(pause * 2, _GET_POLL_MAX)
        finally:
            if delivery is None:  # else the channel stays open until it is settled
                await _close_quietly(channel)

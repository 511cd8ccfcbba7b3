"""RabbitMQ-only behaviour: surviving a dropped connection, failing to connect.

The shared broker is never stopped: a dropped connection is simulated by a TCP
proxy between the transport and RabbitMQ that cuts every connection through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from yarl import URL

from broker import ESCROW, AmqpTransport, Message
from broker.errors import ConnectionFailed, PublishTimeout, TransportClosed
from tests.broker.transport_helpers import WAIT, message, receive
from tests.support import TransportFactory

pytestmark = pytest.mark.rabbitmq


class _CuttableProxy:
    """Forwards TCP connections to RabbitMQ; can hold back its answers or cut them all."""

    def __init__(self, upstream: URL) -> None:
        self._upstream = upstream
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._answers_flow = asyncio.Event()
        self._answers_flow.set()
        self.port = 0

    def url(self) -> str:
        """The upstream URL through this proxy, reconnecting quickly."""
        through = self._upstream.with_host("127.0.0.1").with_port(self.port)
        return str(through % {"reconnect_interval": "0.2"})

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        gate: asyncio.Event | None = None,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if gate is not None:
                    await gate.wait()
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = (self._upstream.host or "127.0.0.1", self._upstream.port or 5672)
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        self._writers |= {writer, up_writer}
        for pipe in (
            self._pipe(reader, up_writer),
            self._pipe(up_reader, writer, self._answers_flow),
        ):
            task = asyncio.create_task(pipe)
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    def hold_answers(self) -> None:
        """RabbitMQ's frames (confirms, deliveries) stop reaching the client."""
        self._answers_flow.clear()

    def cut(self) -> None:
        """Abort every connection through the proxy; new ones flow normally."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        self._answers_flow.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield
        finally:
            server.close()
            self.cut()
            await asyncio.gather(*self._pipes, return_exceptions=True)
            await server.wait_closed()


async def test_consumer_and_publisher_recover_after_the_connection_drops(
    amqp_url: str, amqp_factory: TransportFactory
) -> None:
    proxy = _CuttableProxy(URL(amqp_url))
    async with proxy.running():
        direct = await amqp_factory()
        proxied = await amqp_factory(url=proxy.url())
        await direct.declare_escrow_queues()
        queue = direct.config.escrow_queue
        await direct.publish(ESCROW, message(1))

        async with proxied.consume(queue, prefetch=4) as deliveries:
            first = await receive(deliveries)
            proxy.cut()
            # The ack cannot reach the broker: logged, not raised; the broker
            # took the message back when the connection died.
            async with first.process():
                pass

            again = await receive(deliveries)  # the consumer is restored
            assert again.message_id == "msg-1"
            assert again.redelivered is True
            await again.ack()

            await proxied.publish(ESCROW, message(2))  # publishing works again
            after = await receive(deliveries)
            assert after.message_id == "msg-2"
            assert after.redelivered is False
            await after.ack()
        await proxied.close()  # before the proxy goes away, or it reconnects in vain


async def test_missing_confirm_times_out_and_a_dropped_one_raises_connection_failed(
    amqp_url: str, amqp_factory: TransportFactory
) -> None:
    proxy = _CuttableProxy(URL(amqp_url))
    async with proxy.running():
        direct = await amqp_factory()
        await direct.declare_escrow_queues()
        impatient = await amqp_factory(url=proxy.url(), publish_timeout=0.5)
        patient = await amqp_factory(url=proxy.url(), publish_timeout=60)

        proxy.hold_answers()
        with pytest.raises(PublishTimeout) as timeout:
            await impatient.publish(ESCROW, message(1))
        assert timeout.value.transient

        pending = asyncio.create_task(patient.publish(ESCROW, message(2)))
        await asyncio.sleep(0.2)
        proxy.cut()
        with pytest.raises(ConnectionFailed) as failure:
            async with asyncio.timeout(WAIT):
                await pending
        assert failure.value.transient
        await impatient.close()
        await patient.close()


async def test_connect_failure_is_typed_and_hides_the_password() -> None:
    transport = AmqpTransport("amqp://guest:s3cret@127.0.0.1:1/", connect_timeout=2)
    with pytest.raises(ConnectionFailed) as failure:
        await transport.start()
    assert "s3cret" not in str(failure.value)
    assert failure.value.hint
    assert "127.0.0.1:1" in str(failure.value)


async def test_wrong_password_is_reported_as_a_login_failure(amqp_url: str) -> None:
    wrong = str(URL(amqp_url).with_password("not-the-password"))
    transport = AmqpTransport(wrong, connect_timeout=5)
    with pytest.raises(ConnectionFailed, match="refused the login") as failure:
        await transport.start()
    assert "not-the-password" not in str(failure.value)


async def test_publish_on_an_unstarted_transport_is_refused(amqp_url: str) -> None:
    transport = AmqpTransport(amqp_url)
    with pytest.raises(TransportClosed):
        await transport.publish(ESCROW, Message(body=b"", message_id="m", type="t.v1"))

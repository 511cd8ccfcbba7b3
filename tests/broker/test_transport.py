"""One behaviour suite for every `Transport`: in-process and RabbitMQ.

Each test runs twice through the parametrised `transport`/`transport_factory`
fixtures (see conftest.py) and asserts what would break if the feature did.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from broker import ESCROW, Inbox, Message, Requeue, Transport
from broker.errors import (
    DeliveryLost,
    MessageTooLarge,
    PublishRefused,
    QueueNotFound,
    TopologyError,
    TransportClosed,
    Unroutable,
)
from tests.broker.transport_helpers import (
    QUIET,
    WAIT,
    assert_empty,
    assert_nothing_arrives,
    message,
    receive,
)
from tests.support import TEST_DELIVERY_LIMIT, TransportFactory


async def test_round_trip_keeps_every_property(transport: Transport) -> None:
    await transport.declare_escrow_queues()
    sent = Message(
        body=b"\x00\xff signed envelope",
        message_id="req-1",
        type="escrow.deposit.v1",
        correlation_id="corr-1",
        headers={"schema": "1", "sender": "alice"},
    )
    await transport.publish(ESCROW, sent)

    async with transport.consume(transport.config.escrow_queue, prefetch=1) as deliveries:
        delivery = await receive(deliveries)
        async with delivery.process():
            pass

    assert delivery.queue == transport.config.escrow_queue
    assert delivery.body == sent.body
    assert delivery.message_id == "req-1"
    assert delivery.correlation_id == "corr-1"
    assert delivery.type == "escrow.deposit.v1"
    assert dict(delivery.headers) == {"schema": "1", "sender": "alice"}
    assert delivery.redelivered is False
    assert delivery.dead_letter is None
    assert delivery.settled


async def test_inbox_receives_only_its_identity(transport: Transport) -> None:
    alice = await transport.declare_inbox("alice")
    bob = await transport.declare_inbox("bob")
    assert alice == f"{transport.config.prefix}.inbox.alice"

    await transport.publish(Inbox("bob"), message("for-bob"))

    got = await transport.get(bob, timeout=WAIT)
    assert got is not None
    assert got.message_id == "msg-for-bob"
    await got.ack()
    await assert_empty(transport, alice)


async def test_ack_removes_the_message(transport: Transport) -> None:
    await transport.declare_escrow_queues()
    queue = transport.config.escrow_queue
    await transport.publish(ESCROW, message(1))

    async with transport.consume(queue) as deliveries:
        delivery = await receive(deliveries)
        async with delivery.process():
            pass
        await assert_nothing_arrives(deliveries)

    await assert_empty(transport, queue)
    await assert_empty(transport, transport.config.dead_letter_queue)


async def test_unsettled_delivery_comes_back_redelivered_when_consumer_closes(
    transport: Transport,
) -> None:
    await transport.declare_escrow_queues()
    queue = transport.config.escrow_queue
    await transport.publish(ESCROW, message(1))

    async with transport.consume(queue) as deliveries:
        first = await receive(deliveries)
        assert first.redelivered is False
    # Too late: the consumer is gone and the broker has taken the message back.
    with pytest.raises(DeliveryLost):
        await first.ack()

    async with transport.consume(queue) as deliveries:
        again = await receive(deliveries)
        assert (again.message_id, again.body) == (first.message_id, first.body)
        assert again.redelivered is True
        await again.ack()


async def test_unsettled_get_comes_back_when_its_transport_closes(
    transport_factory: TransportFactory,
) -> None:
    first = await transport_factory()
    await first.declare_escrow_queues()
    await first.publish(ESCROW, message(1))
    taken = await first.get(first.config.escrow_queue, timeout=WAIT)
    assert taken is not None
    assert taken.redelivered is False

    await first.close()

    second = await transport_factory()
    again = await second.get(second.config.escrow_queue, timeout=WAIT)
    assert again is not None
    assert again.message_id == "msg-1"
    assert again.redelivered is True
    await again.ack()


async def test_handler_error_dead_letters_the_message(transport: Transport) -> None:
    await transport.declare_escrow_queues()
    queue = transport.config.escrow_queue
    await transport.publish(ESCROW, message("poison"))
    await transport.publish(ESCROW, message("fine"))

    handled = []
    async with transport.consume(queue, prefetch=1) as deliveries:
        for _ in range(2):
            delivery = await receive(deliveries)
            async with delivery.process():  # swallows the error: the loop goes on
                if delivery.message_id == "msg-poison":
                    raise ValueError("malformed request")
                handled.append(delivery.message_id)
        await assert_nothing_arrives(deliveries)

    assert handled == ["msg-fine"]
    dead = await transport.get(transport.config.dead_letter_queue, timeout=WAIT)
    assert dead is not None
    assert dead.message_id == "msg-poison"
    assert dead.body == b"body poison"
    assert dead.dead_letter is not None
    assert (dead.dead_letter.reason, dead.dead_letter.queue) == ("rejected", queue)
    await dead.ack()
    await assert_empty(transport, queue)


async def test_requeue_is_bounded_by_the_delivery_limit(transport: Transport) -> None:
    await transport.declare_escrow_queues()
    queue = transport.config.escrow_queue
    await transport.publish(ESCROW, message("retry"))

    redelivered = []
    async with transport.consume(queue) as deliveries:
        for _ in range(TEST_DELIVERY_LIMIT + 1):
            delivery = await receive(deliveries)
            redelivered.append(delivery.redelivered)
            async with delivery.process():
                raise Requeue("database busy")
        await assert_nothing_arrives(deliveries)  # not an endless loop

    assert redelivered == [False] + [True] * TEST_DELIVERY_LIMIT
    dead = await transport.get(transport.config.dead_letter_queue, timeout=WAIT)
    assert dead is not None
    assert dead.message_id == "msg-retry"
    assert dead.dead_letter is not None
    assert (dead.dead_letter.reason, dead.dead_letter.queue) == ("delivery_limit", queue)
    await dead.ack()


async def test_transient_transport_error_requeues_and_permanent_one_dead_letters(
    transport: Transport,
) -> None:
    await transport.declare_escrow_queues()
    queue = transport.config.escrow_queue
    await transport.publish(ESCROW, message(1))

    async with transport.consume(queue) as deliveries:
        delivery = await receive(deliveries)
        async with delivery.process():
            raise PublishRefused("reply queue full")
        again = await receive(deliveries)
        assert again.message_id == "msg-1"
        assert again.redelivered is True
        async with again.process():
            raise Unroutable("no inbox for the reply")

    dead = await transport.get(transport.config.dead_letter_queue, timeout=WAIT)
    assert dead is not None
    assert dead.message_id == "msg-1"
    await dead.ack()


async def test_cancelled_handler_returns_the_message(transport: Transport) -> None:
    await transport.declare_escrow_queues()
    await transport.publish(ESCROW, message(1))

    async with transport.consume(transport.config.escrow_queue) as deliveries:
        delivery = await receive(deliveries)
        started = asyncio.Event()

        async def handle() -> None:
            async with delivery.process():
                started.set()
                await asyncio.sleep(WAIT * 10)

        task = asyncio.create_task(handle())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        again = await receive(deliveries)
        assert again.message_id == "msg-1"
        assert again.redelivered is True
        await again.ack()


async def test_unroutable_publish_raises_and_the_transport_keeps_working(
    transport: Transport,
) -> None:
    with pytest.raises(Unroutable):
        await transport.publish(ESCROW, message(1))  # no escrow queue declared yet
    with pytest.raises(Unroutable):
        await transport.publish(Inbox("nobody"), message(2))

    inbox = await transport.declare_inbox("alice")
    await transport.publish(Inbox("alice"), message(3))
    got = await transport.get(inbox, timeout=WAIT)
    assert got is not None
    assert got.message_id == "msg-3"
    await got.ack()


async def test_concurrent_publishes_with_one_message_id_keep_their_own_outcome(
    transport: Transport,
) -> None:
    """aiormq pairs a returned message with its publish by message id; a re-sent
    reply racing an unroutable one must not swap their outcomes."""
    inbox = await transport.declare_inbox("alice")
    same = message("same")
    for _ in range(5):
        lost, delivered = await asyncio.gather(
            transport.publish(Inbox("nobody"), same),
            transport.publish(Inbox("alice"), same),
            return_exceptions=True,
        )
        assert isinstance(lost, Unroutable)
        assert delivered is None
    for _ in range(5):
        got = await transport.get(inbox, timeout=WAIT)
        assert got is not None
        await got.ack()
    await assert_empty(transport, inbox)


async def test_oversize_publish_raises(transport: Transport) -> None:
    await transport.declare_escrow_queues()
    limit = transport.config.max_message_size
    assert limit == 1024 * 1024  # the default

    with pytest.raises(MessageTooLarge):
        await transport.publish(ESCROW, message("big", body=bytes(limit + 1)))
    await transport.publish(ESCROW, message("max", body=bytes(limit)))

    got = await transport.get(transport.config.escrow_queue, timeout=WAIT)
    assert got is not None
    assert got.message_id == "msg-max"
    assert len(got.body) == limit
    await got.ack()
    await assert_empty(transport, transport.config.escrow_queue)


async def test_oversize_delivery_is_dead_lettered_and_traffic_keeps_flowing(
    transport_factory: TransportFactory,
) -> None:
    strict = await transport_factory(max_message_size=1000)
    lax = await transport_factory(max_message_size=2000)  # a peer with a higher limit
    await strict.declare_escrow_queues()
    queue = strict.config.escrow_queue
    await lax.publish(ESCROW, message("big", body=bytes(1001)))
    await lax.publish(ESCROW, message("small"))
    await lax.publish(ESCROW, message("big-get", body=bytes(1500)))

    async with strict.consume(queue, prefetch=1) as deliveries:
        delivery = await receive(deliveries)
        assert delivery.message_id == "msg-small"
        await delivery.ack()
    assert await strict.get(queue, timeout=QUIET) is None  # screened on `get` too

    # The operator reads them, oversize or not: the dead-letter queue is not screened.
    dead: list[str | None] = []
    for _ in range(2):
        got = await strict.get(strict.config.dead_letter_queue, timeout=WAIT)
        assert got is not None
        assert got.dead_letter is not None
        assert (got.dead_letter.reason, got.dead_letter.queue) == ("rejected", queue)
        dead.append(got.message_id)
        await got.ack()
    assert set(dead) == {"msg-big", "msg-big-get"}


async def test_prefetch_bounds_unsettled_deliveries(transport: Transport) -> None:
    await transport.declare_escrow_queues()
    for n in range(5):
        await transport.publish(ESCROW, message(n))

    async with transport.consume(transport.config.escrow_queue, prefetch=2) as deliveries:
        held = [await receive(deliveries), await receive(deliveries)]
        await assert_nothing_arrives(deliveries)  # two unsettled: no third
        await held.pop(0).ack()
        held.append(await receive(deliveries))
        await assert_nothing_arrives(deliveries)
        for delivery in held:
            await delivery.ack()
        rest = [await receive(deliveries), await receive(deliveries)]
        for delivery in rest:
            await delivery.ack()
        seen = {d.message_id for d in held} | {d.message_id for d in rest}
    assert len(seen) == 4  # plus the first one acked above: all five, no repeats


async def test_prefetch_must_be_bounded(transport: Transport) -> None:
    await transport.declare_escrow_queues()
    for prefetch in (0, transport.config.max_prefetch + 1):
        with pytest.raises(ValueError, match="prefetch"):
            async with transport.consume(transport.config.escrow_queue, prefetch=prefetch):
                pass


async def test_many_concurrent_publishes_are_all_confirmed_and_delivered(
    transport: Transport,
) -> None:
    await transport.declare_escrow_queues()
    count = 500
    await asyncio.gather(*(transport.publish(ESCROW, message(n)) for n in range(count)))

    received: list[str] = []
    async with transport.consume(transport.config.escrow_queue, prefetch=100) as deliveries:
        while len(received) < count:
            delivery = await receive(deliveries)
            received.append(str(delivery.message_id))
            await delivery.ack()
        await assert_nothing_arrives(deliveries)
    assert sorted(received) == sorted(f"msg-{n}" for n in range(count))


async def test_full_queue_refuses_publish(transport_factory: TransportFactory) -> None:
    transport = await transport_factory(max_queue_length=2)
    await transport.declare_escrow_queues()
    await transport.publish(ESCROW, message(1))
    await transport.publish(ESCROW, message(2))

    # RabbitMQ's quorum queues enforce the length one message late; two more
    # publishes are enough to see the broker's negative confirm either way.
    outcomes = [
        await asyncio.gather(transport.publish(ESCROW, message(n)), return_exceptions=True)
        for n in (3, 4)
    ]
    refused = [o[0] for o in outcomes if isinstance(o[0], PublishRefused)]
    assert refused, outcomes
    assert all(o[0] is None or isinstance(o[0], PublishRefused) for o in outcomes)


async def test_declare_is_idempotent_and_keeps_messages(
    transport_factory: TransportFactory,
) -> None:
    transport = await transport_factory()
    await transport.declare_escrow_queues()
    await transport.declare_inbox("alice")
    await transport.publish(ESCROW, message(1))
    await transport.publish(Inbox("alice"), message(2))

    await transport.declare_escrow_queues()
    await transport.declare_inbox("alice")
    other = await transport_factory()  # another process starting up
    await other.declare_escrow_queues()
    await other.declare_inbox("alice")

    for queue, expected in (
        (transport.config.escrow_queue, "msg-1"),
        (transport.config.inbox_queue("alice"), "msg-2"),
    ):
        got = await other.get(queue, timeout=WAIT)
        assert got is not None
        assert got.message_id == expected
        await got.ack()
        await assert_empty(other, queue)


async def test_declare_with_other_arguments_raises_and_transport_survives(
    transport_factory: TransportFactory,
) -> None:
    first = await transport_factory()
    await first.declare_escrow_queues()
    other = await transport_factory(delivery_limit=TEST_DELIVERY_LIMIT + 1)

    with pytest.raises(TopologyError):
        await other.declare_escrow_queues()

    await other.publish(ESCROW, message(1))  # the existing queue still works
    got = await other.get(other.config.escrow_queue, timeout=WAIT)
    assert got is not None
    assert got.message_id == "msg-1"
    await got.ack()


async def test_get_waits_up_to_timeout_then_returns_none(transport: Transport) -> None:
    await transport.declare_escrow_queues()
    queue = transport.config.escrow_queue

    assert await transport.get(queue) is None  # one look, no wait
    started = time.monotonic()
    assert await transport.get(queue, timeout=QUIET) is None
    assert time.monotonic() - started >= QUIET * 0.9

    async def publish_soon() -> None:
        await asyncio.sleep(0.1)
        await transport.publish(ESCROW, message("late"))

    publisher = asyncio.create_task(publish_soon())
    got = await transport.get(queue, timeout=WAIT)
    await publisher
    assert got is not None
    assert got.message_id == "msg-late"
    await got.ack()
    with pytest.raises(RuntimeError, match="already settled"):
        await got.ack()


async def test_unknown_queue_raises(transport: Transport) -> None:
    missing = f"{transport.config.prefix}.no-such-queue"
    with pytest.raises(QueueNotFound):
        await transport.get(missing)
    with pytest.raises(QueueNotFound):
        async with transport.consume(missing):
            pass
    await transport.declare_escrow_queues()  # the transport still works
    await transport.publish(ESCROW, message(1))


async def test_closing_the_transport_ends_consumers_and_refuses_use(
    transport: Transport,
) -> None:
    await transport.declare_escrow_queues()
    entered = asyncio.Event()

    async def consume_all() -> int:
        count = 0
        async with transport.consume(transport.config.escrow_queue) as deliveries:
            entered.set()
            async for _ in deliveries:
                count += 1
        return count

    consumer = asyncio.create_task(consume_all())
    await entered.wait()
    await transport.close()
    async with asyncio.timeout(WAIT):
        assert await consumer == 0
    await transport.close()  # idempotent

    with pytest.raises(TransportClosed):
        await transport.publish(ESCROW, message(1))
    with pytest.raises(TransportClosed):
        await transport.get(transport.config.escrow_queue)
    with pytest.raises(TransportClosed):
        await transport.start()

"""Connections cut under load, through a TCP proxy the test owns (the real
RabbitMQ and PostgreSQL are never touched): every connection to RabbitMQ at
once (the worker's, the publisher's, the receiver's) with new ones refused for a
while (a broker outage as its clients see it), and the worker's connections to
PostgreSQL. Pass: every request answered, every copy of a reply the same bytes,
one release per key request, nothing dead-lettered. `bench/reliability.py`
runs the long versions (and the worker's connection alone: `cut`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker import ESCROW, Message, Transport
from broker.errors import BrokerError, ConnectionFailed
from escrow_worker.state.location import Location
from tests.escrow_worker.helpers import (
    WAIT,
    Agent,
    EscrowSetup,
    deposit_body,
    key_request_body,
    make_escrow,
    request,
    request_id_of,
    running_worker,
    seal_for,
)
from tests.reliability.helpers import TcpProxy, escrow_counts, queue_depth
from tests.support import TransportFactory

pytestmark = pytest.mark.rabbitmq

REQUESTS = 30
#: Each crosses the slow link a few times: fewer, to stay a short test.
SLOW_REQUESTS = 10
#: Unacked deliveries return to the queue at every cut: room for a few.
DELIVERY_LIMIT = 10


async def _answers(agent: Agent, ids: set[str], *, patient: bool = False) -> dict[str, set[bytes]]:
    """Replies to `ids` by request id. `patient`: the agent's own connection may
    be down for a while; it reads again until it is back."""
    found: dict[str, set[bytes]] = {}
    async with asyncio.timeout(60):
        while not ids <= set(found):
            try:
                received = await agent.receive(WAIT)
            except BrokerError:
                if not patient:
                    raise
                await asyncio.sleep(0.2)
                continue
            assert received is not None, f"{len(ids - set(found))} requests never answered"
            if (in_reply_to := getattr(received.body, "in_reply_to", None)) is not None:
                found.setdefault(in_reply_to, set()).add(received.raw)
                assert received.type == "key-release", received.body
        while (received := await agent.receive(0.3)) is not None:  # late copies
            if (in_reply_to := getattr(received.body, "in_reply_to", None)) is not None:
                found.setdefault(in_reply_to, set()).add(received.raw)
    return found


async def _prepared(
    setup: EscrowSetup, transport: Callable[[], Awaitable[Transport]], count: int = REQUESTS
) -> tuple[Agent, list[bytes]]:
    """alice deposits one consignment for bob; bob's key requests for it."""
    _, deposit = seal_for(setup["alice"], [setup["bob"]])
    alice = await Agent(setup, setup["alice"], await transport()).start()
    bob = await Agent(setup, setup["bob"], await transport()).start()
    async with await setup.open_service() as service, running_worker(service, await transport()):
        now = datetime.now(UTC)
        await alice.ask(request(setup["alice"], "deposit", deposit_body(setup, deposit), now=now))
    datas = [
        request(setup["bob"], "key-request", key_request_body(deposit), now=datetime.now(UTC))
        for _ in range(count)
    ]
    return bob, datas


async def _publish(transport: Transport, datas: list[bytes]) -> None:
    for data in datas:
        message = Message(body=data, message_id=request_id_of(data), type="request.v1")
        await transport.publish(ESCROW, message)


async def _released(setup: EscrowSetup, at_least: int) -> None:
    async with asyncio.timeout(60):
        while (await escrow_counts(setup))["releases"] < at_least:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def _check(
    setup: EscrowSetup,
    found: dict[str, set[bytes]],
    amqp_url: str,
    t: Transport,
    count: int = REQUESTS,
) -> None:
    assert all(len(raws) == 1 for raws in found.values())
    counts = await escrow_counts(setup)
    assert counts["releases"] == counts["released"] == count
    assert await queue_depth(amqp_url, t.config.dead_letter_queue) == 0


async def test_a_broker_outage_seen_by_everyone_mid_burst(
    tmp_path: Path, amqp_factory: TransportFactory, amqp_url: str
) -> None:
    """Every connection (worker, publisher, receiver) reset at once and new
    ones refused for 2 s: what RabbitMQ going away and coming back looks like
    from its clients; the queues themselves are RabbitMQ's to keep."""
    setup = await make_escrow(tmp_path / "escrow", now=datetime.now(UTC))
    async with TcpProxy.to(amqp_url) as proxy:

        async def transport() -> Transport:
            return await amqp_factory(url=proxy.url(amqp_url), delivery_limit=DELIVERY_LIMIT)

        bob, datas = await _prepared(setup, transport)
        publisher = await transport()
        service = await setup.open_service()
        async with service, running_worker(service, await transport(), prefetch=4):
            await _publish(publisher, datas[: REQUESTS // 2])
            await _released(setup, 3)
            # On an idle machine the worker may finish this half before the cut:
            # the second half, published through the outage, is still mid-burst.
            proxy.refusing = True
            assert proxy.cut() >= 3
            await asyncio.sleep(2)
            proxy.refusing = False
            await _publish_again(publisher, datas[REQUESTS // 2 :])
            found = await _answers(bob, {request_id_of(d) for d in datas}, patient=True)
    await _check(setup, found, amqp_url, await amqp_factory(delivery_limit=DELIVERY_LIMIT))


async def _publish_again(transport: Transport, datas: list[bytes]) -> None:
    """Publish, trying again while the connection comes back (as agents do:
    the same bytes, so the escrow answers once whatever got through)."""
    async with asyncio.timeout(60):
        for data in datas:
            while True:
                try:
                    await _publish(transport, [data])
                    break
                except BrokerError:
                    await asyncio.sleep(0.2)


@pytest.mark.postgresql
async def test_the_workers_database_connection_cut_mid_burst(
    pg_url: str, amqp_factory: TransportFactory, amqp_url: str
) -> None:
    """The worker's PostgreSQL connections reset, new ones refused for 2 s:
    requests wait for the database (`PostgresStore` waits it out) and each is
    decided once, whether its commit got through before the cut or not."""
    async with TcpProxy.to(pg_url) as proxy:
        setup = await make_escrow(Location(database=proxy.url(pg_url)), now=datetime.now(UTC))

        async def transport() -> Transport:
            return await amqp_factory(delivery_limit=DELIVERY_LIMIT)

        bob, datas = await _prepared(setup, transport)
        publisher = await transport()
        await _publish(publisher, datas)
        service = await setup.open_service()
        async with service, running_worker(service, await transport(), prefetch=8):
            await _released(setup, 3)
            assert (await escrow_counts(setup))["releases"] < REQUESTS, "cut after the burst"
            proxy.refusing = True
            assert proxy.cut() >= 1
            await asyncio.sleep(2)
            proxy.refusing = False
            found = await _answers(bob, {request_id_of(d) for d in datas})
        await _check(setup, found, amqp_url, publisher)


async def test_reading_while_the_connection_is_down_is_a_transport_error(
    amqp_factory: TransportFactory, amqp_url: str
) -> None:
    """`get` and `consume` while the connection is being restored raise
    `ConnectionFailed` (a BrokerError an agent knows to retry), never aiormq's
    bare RuntimeError; once it is back, they work again."""
    async with TcpProxy.to(amqp_url) as proxy:
        transport = await amqp_factory(url=proxy.url(amqp_url))
        queue = await transport.declare_inbox("bob")
        proxy.refusing = True
        proxy.cut()
        await asyncio.sleep(0.2)
        with pytest.raises(ConnectionFailed, match=r"reading queue .* is down"):
            await transport.get(queue, timeout=0.1)
        with pytest.raises(ConnectionFailed):
            async with transport.consume(queue):
                pass
        proxy.refusing = False
        async with asyncio.timeout(30):
            while True:
                try:
                    assert await transport.get(queue, timeout=0.1) is None
                    break
                except ConnectionFailed:
                    await asyncio.sleep(0.2)


async def test_a_slow_link_delays_everything_and_loses_nothing(
    tmp_path: Path, amqp_factory: TransportFactory, amqp_url: str
) -> None:
    """Every connection (worker, publisher, receiver) through a link that adds
    30 ms each way and carries 256 KiB/s (`bench/reliability.py slow` varies
    it over 50-200 ms): the requests, published at once, are each answered
    once, one release each, and the link really was slow."""
    setup = await make_escrow(tmp_path / "escrow", now=datetime.now(UTC))
    async with TcpProxy.to(amqp_url) as proxy:

        async def transport() -> Transport:
            return await amqp_factory(url=proxy.url(amqp_url), delivery_limit=DELIVERY_LIMIT)

        bob, datas = await _prepared(setup, transport, SLOW_REQUESTS)
        proxy.delay, proxy.bandwidth = 0.03, 256 << 10
        publisher = await transport()
        loop = asyncio.get_running_loop()
        started = loop.time()
        service = await setup.open_service()
        async with service, running_worker(service, await transport(), prefetch=8):
            await asyncio.gather(*(_publish(publisher, [d]) for d in datas))
            found = await _answers(bob, {request_id_of(d) for d in datas})
        # A request and its reply cross the link twice each way at least.
        assert loop.time() - started > 0.2
    await _check(
        setup,
        found,
        amqp_url,
        await amqp_factory(delivery_limit=DELIVERY_LIMIT),
        SLOW_REQUESTS,
    )

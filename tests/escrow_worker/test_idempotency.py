"""A decision is taken once per request id: duplicates, redeliveries after a
worker died between its commit and its ack, and two workers racing on the same
requests all give the same reply bytes and one release per request."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import pytest

from broker import ESCROW, ControlAttributes, Deposit, EscrowQueue, Message
from broker.errors import TopologyError
from broker.messages import KeyReleaseBody, MessageType
from escrow_worker import EscrowWorker
from escrow_worker.state.location import Location
from tests.escrow_worker.helpers import (
    WAIT,
    Agent,
    EscrowSetup,
    _wait_for_queue,
    deposit_body,
    eventually,
    key_request_body,
    make_escrow,
    releases,
    replies,
    request,
    request_id_of,
    running_worker,
    seal_for,
    verify,
)
from tests.support import TransportFactory


async def seen_ids(setup: EscrowSetup) -> int:
    return int(await setup.run(lambda tx: tx.fetchval("SELECT COUNT(*) FROM seen_requests")))


async def deposited(
    setup: EscrowSetup, alice: Agent, attributes: ControlAttributes | None = None
) -> Deposit:
    _, deposit = seal_for(setup["alice"], [setup["bob"]], attributes=attributes)
    reply = await alice.ask(request(setup["alice"], "deposit", deposit_body(setup, deposit)))
    assert reply.type == MessageType.DEPOSIT_RECEIPT
    return deposit


async def prepared(
    setup: EscrowSetup, factory: TransportFactory, attributes: ControlAttributes | None = None
) -> tuple[Agent, Deposit]:
    """Bob's agent, and a consignment alice deposited for bob."""
    worker_transport = await factory()
    async with await setup.open_service() as service, running_worker(service, worker_transport):
        alice = await Agent(setup, setup["alice"], await factory()).start()
        bob = await Agent(setup, setup["bob"], await factory()).start()
        return bob, await deposited(setup, alice, attributes)


async def test_a_duplicate_gets_the_same_reply_bytes_even_after_expiry(
    escrow_location: Location, tmp_path: Path, transport_factory: TransportFactory
) -> None:
    setup = await make_escrow(escrow_location)
    worker_transport = await transport_factory()
    async with await setup.open_service() as service, running_worker(service, worker_transport):
        alice = await Agent(setup, setup["alice"], await transport_factory()).start()
        bob = await Agent(setup, setup["bob"], await transport_factory()).start()
        deposit = await deposited(setup, alice)
        data = request(setup["bob"], "key-request", key_request_body(deposit))
        first = await bob.ask(data)
        second = await bob.ask(data)
        assert isinstance(first.body, KeyReleaseBody)
        assert second.raw == first.raw
        # Long after the request expired its id is forgotten by the replay
        # table (the sweep prunes it), yet a retry of the same bytes still gets it.
        assert await seen_ids(setup) >= 2
        setup.clock.advance(3600)
        assert await service.prune_seen() >= 2
        assert await seen_ids(setup) == 0
        third = await bob.ask(data)
        assert third.raw == first.raw
        assert await releases(setup) == (1, 1)
        # The sender heard of one release only (events come at least once; the
        # message id tells copies apart).
        events = {r.message_id: r.body.kind for r in await alice.drain()}
        assert list(events.values()).count("released") == 1


async def test_worker_dies_between_commit_and_ack(
    escrow_location: Location, tmp_path: Path, transport_factory: TransportFactory
) -> None:
    """The service commits its decision, then the consumer goes away without
    acking: the redelivery gets the stored reply and the unsent events."""
    setup = await make_escrow(escrow_location)
    async with await setup.open_service() as service:
        worker_transport = await transport_factory()
        async with running_worker(service, worker_transport):
            alice = await Agent(setup, setup["alice"], await transport_factory()).start()
            bob = await Agent(setup, setup["bob"], await transport_factory()).start()
            deposit = await deposited(setup, alice)
            await alice.drain()

        data = request(setup["bob"], "key-request", key_request_body(deposit))
        await bob.send(data)
        dying = await transport_factory()
        queue = dying.config.escrow_queue
        async with dying.consume(queue, prefetch=1) as deliveries:
            delivery = await asyncio.wait_for(anext(deliveries), WAIT)
            outcome = await service.handle(delivery.body)  # steps 1-5: committed
            assert outcome.stored
            assert outcome.decision == "ok"
            assert await releases(setup) == (1, 1)
        await dying.close()  # never published, never acked: the broker redelivers

        async with running_worker(service, await transport_factory()):
            reply = await bob.reply_to(request_id_of(data))
            assert outcome.reply is not None
            assert reply.raw == outcome.reply.message.body
            events = [r for r in await alice.drain() if r.type == MessageType.EVENT]
            assert [e.body.kind for e in events] == ["released"]
            assert [e.raw for e in events] == [e.message.body for e in outcome.events]
        assert await releases(setup) == (1, 1)
        unsent = await setup.run(
            lambda tx: tx.fetchall("SELECT * FROM outbox WHERE sent_at IS NULL")
        )
        assert unsent == []


async def test_worker_killed_while_publishing(
    escrow_location: Location, tmp_path: Path, transport_factory: TransportFactory
) -> None:
    """The worker's publish hangs after its commit; its transport is closed and
    the worker cancelled. A new worker answers with the stored reply."""
    setup = await make_escrow(escrow_location)
    async with await setup.open_service() as service:
        async with running_worker(service, await transport_factory()):
            alice = await Agent(setup, setup["alice"], await transport_factory()).start()
            bob = await Agent(setup, setup["bob"], await transport_factory()).start()
            deposit = await deposited(setup, alice)

        doomed = await transport_factory()
        hang = asyncio.Event()

        async def publish_never(*args: Any, **kwargs: Any) -> None:
            await hang.wait()

        doomed.publish = publish_never  # type: ignore[method-assign]
        worker = EscrowWorker(service, doomed)
        task = asyncio.create_task(worker.run())
        data = request(setup["bob"], "key-request", key_request_body(deposit))
        await bob.send(data)
        await eventually(lambda: releases(setup), (1, 1))
        await doomed.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async with running_worker(service, await transport_factory()):
            first = await bob.reply_to(request_id_of(data))
            assert isinstance(first.body, KeyReleaseBody)
            again = await bob.ask(data)
            assert again.raw == first.raw
        assert await releases(setup) == (1, 1)


async def _race(
    setup: EscrowSetup,
    factory: TransportFactory,
    deposit: Deposit,
    bob: Agent,
    *,
    distinct: int,
    copies: int,
) -> dict[str, list[bytes]]:
    """Two workers (two services, two connections each) on one queue; bob sends
    `distinct` key requests, each `copies` times, all at once."""
    first, second = await setup.open_service(), await setup.open_service()
    try:
        async with (
            running_worker(first, await factory(), prefetch=16),
            running_worker(second, await factory(), prefetch=16),
        ):
            datas = [
                request(setup["bob"], "key-request", key_request_body(deposit))
                for _ in range(distinct)
            ]
            publishers = [await factory() for _ in range(4)]
            sends = [
                publishers[i % len(publishers)].publish(*_message(data))
                for i, data in enumerate(d for d in datas for _ in range(copies))
            ]
            await asyncio.gather(*sends)
            found = await replies(bob, distinct * copies)
            assert set(found) == {request_id_of(d) for d in datas}
            return found
    finally:
        await first.close()
        await second.close()


def _message(data: bytes) -> tuple[EscrowQueue, Message]:
    return ESCROW, Message(body=data, message_id=request_id_of(data), type="request.v1")


async def test_two_workers_never_release_twice_for_one_request(
    escrow_location: Location, tmp_path: Path, transport_factory: TransportFactory
) -> None:
    setup = await make_escrow(escrow_location)
    bob, deposit = await prepared(setup, transport_factory)
    found = await _race(setup, transport_factory, deposit, bob, distinct=20, copies=3)
    for raws in found.values():
        assert len(raws) == 3
        assert len(set(raws)) == 1  # every copy got the same bytes
    assert await releases(setup) == (20, 20)


async def test_max_releases_holds_under_concurrency(
    escrow_location: Location, tmp_path: Path, transport_factory: TransportFactory
) -> None:
    setup = await make_escrow(escrow_location)
    bob, deposit = await prepared(setup, transport_factory, ControlAttributes(max_releases=3))
    found = await _race(setup, transport_factory, deposit, bob, distinct=12, copies=2)
    outcomes: collections.Counter[str] = collections.Counter()
    for raws in found.values():
        assert len(set(raws)) == 1
        received = verify(setup, raws[0])
        outcomes[received.type if received.code is None else received.code] += 1
    assert outcomes == {"key-release": 3, "exhausted": 9}
    assert await releases(setup) == (3, 3)


async def test_a_notification_the_broker_refused_stays_in_the_outbox_until_sent(
    escrow_location: Location, tmp_path: Path, transport_factory: TransportFactory
) -> None:
    """The broker refuses to declare bob's inbox: alice still gets her receipt,
    bob's notification is not marked sent (nor lost), and once the broker
    accepts, the sweep delivers it."""
    setup = await make_escrow(escrow_location)
    transport = await transport_factory()
    declare = transport.declare_inbox
    refuse = True

    async def flaky_declare(identity: str) -> str:
        if refuse and identity == "bob":
            raise TopologyError("access refused to the inbox (test)")
        return await declare(identity)

    transport.declare_inbox = flaky_declare  # type: ignore[method-assign]
    async with await setup.open_service() as service:
        worker = EscrowWorker(service, transport, sweep_interval=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await _wait_for_queue(transport)
            alice = await Agent(setup, setup["alice"], await transport_factory()).start()
            deposit = await deposited(setup, alice)
            setup.clock.advance(60)  # the sweep takes rows older than 30 s
            # alice's events are marked sent; bob's notification is not
            await eventually(lambda: _pending(service), ["bob"])
            refuse = False
            await eventually(lambda: _pending(service), [])
            bob = Agent(setup, setup["bob"], await transport_factory())
            notice = await bob.receive()
            assert notice is not None
            assert notice.type == MessageType.NOTIFY
            assert notice.body.consignment_id == deposit.consignment_id
        finally:
            stop.set()
            await task


async def _pending(service: Any) -> list[str]:
    return [o.destination for o in await service.pending_outbox()]

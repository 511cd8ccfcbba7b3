"""A worker never drops a reply silently (issue 17): when the requester's inbox
cannot be published to, the reply is kept in the dead-letter queue (and stays
stored for a retry), the inbox is named in one log line, and the worker's
`undelivered` metric counts it; once the inbox takes messages, a retry of the
same request gets the stored reply."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from broker import Transport
from broker.errors import TopologyError
from broker.messages import MessageType
from tests.escrow_worker.helpers import (
    CONSIGN,
    WAIT,
    Agent,
    EscrowSetup,
    environment,
    eventually,
    make_escrow,
    request,
    running_worker,
    verify,
)
from tests.support import TransportFactory


def _lookup(setup: EscrowSetup) -> bytes:
    return request(setup["bob"], "lookup", {"name": "alice"})


async def _dead_letters(transport: Transport, count: int) -> list[tuple[object, bytes]]:
    found = []
    for _ in range(count):
        delivery = await transport.get(transport.config.dead_letter_queue, timeout=WAIT)
        assert delivery is not None, f"only {len(found)} dead letters"
        found.append((delivery.dead_letter, delivery.body))
        await delivery.ack()
    return found


async def _processed(worker: Any, count: int) -> None:
    async def processed() -> bool:
        return bool(worker.processed >= count)

    await eventually(processed, True)


async def test_a_reply_no_inbox_takes_is_dead_lettered_logged_once_and_counted(
    tmp_path: Path, transport_factory: TransportFactory, caplog: pytest.LogCaptureFixture
) -> None:
    setup = await make_escrow(tmp_path / "escrow")
    transport = await transport_factory()
    declare = transport.declare_inbox
    refuse = True

    async def refused_declare(identity: str) -> str:
        if refuse and identity == "bob":
            raise TopologyError("bob's inbox cannot be declared (test)")
        return await declare(identity)

    transport.declare_inbox = refused_declare  # type: ignore[method-assign]
    inbox = transport.config.inbox_queue("bob")
    bob = Agent(setup, setup["bob"], await transport_factory())  # no inbox of its own yet
    first, second = _lookup(setup), _lookup(setup)
    caplog.set_level(logging.INFO, logger="escrow_worker")
    async with await setup.open_service() as service, running_worker(service, transport) as worker:
        ids = [await bob.send(first), await bob.send(second)]
        await _processed(worker, 2)
        assert worker.undelivered == {inbox: 2}
        kept = await _dead_letters(await transport_factory(), 2)
        for dead_letter, _ in kept:
            assert dead_letter is not None
            assert (dead_letter.reason, dead_letter.queue) == ("undeliverable", inbox)
            assert "unroutable" in (dead_letter.detail or "")
        replies = sorted(verify(setup, body).body.in_reply_to for _, body in kept)
        assert replies == sorted(ids)
        warnings = [r for r in caplog.records if "cannot deliver to inbox" in r.getMessage()]
        assert len(warnings) == 1
        assert inbox in warnings[0].getMessage()
        declared = [r for r in caplog.records if "cannot declare inbox" in r.getMessage()]
        assert len(declared) == 1
        # the inbox comes; the same request again gets the stored reply
        refuse = False
        await bob.start()
        await bob.send(first)
        reply = await bob.reply_to(ids[0])
        assert reply.type == MessageType.LOOKUP_REPLY
        assert any("takes messages again" in r.getMessage() for r in caplog.records)


@pytest.mark.rabbitmq
async def test_the_inbox_the_old_docs_described_gets_nothing_silently(
    tmp_path: Path, amqp_factory: TransportFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17's case on the real RabbitMQ: bob's inbox exists without
    x-dead-letter-strategy and x-overflow and is not bound: the worker cannot
    declare it (PRECONDITION_FAILED), the reply is unroutable, and `consign escrow
    dead-letters` lists it as undeliverable from bob's inbox."""
    setup = await make_escrow(tmp_path / "escrow")
    transport = await amqp_factory()
    config = transport.config
    inbox = config.inbox_queue("bob")
    amqp_factory.track_queue(inbox)
    connection = await aio_pika.connect(amqp_factory.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            inbox,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": config.delivery_limit,
                "x-dead-letter-exchange": config.dead_letter_exchange,
            },
        )
    caplog.set_level(logging.INFO, logger="escrow_worker")
    async with await setup.open_service() as service, running_worker(service, transport) as worker:
        bob = Agent(setup, setup["bob"], await amqp_factory())
        request_id = await bob.send(_lookup(setup))
        await _processed(worker, 1)
        assert worker.undelivered == {inbox: 1}
        assert any(
            "cannot declare inbox" in r.getMessage() and "x-dead-letter-strategy" in r.getMessage()
            for r in caplog.records
        )
        env = environment(setup, amqp_factory, amqp_factory.amqp_url)
        listed = await asyncio.to_thread(
            subprocess.run,
            [CONSIGN, "escrow", "dead-letters", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        messages = json.loads(listed.stdout)["messages"]
        assert [(m["reason"], m["from_queue"]) for m in messages] == [("undeliverable", inbox)]
        assert "unroutable" in messages[0]["detail"]
        assert messages[0]["envelope"]["type"] == "lookup-reply"
        kept = await _dead_letters(await amqp_factory(), 1)
        assert verify(setup, kept[0][1]).body.in_reply_to == request_id


@pytest.mark.rabbitmq
async def test_an_inbox_bound_but_declared_otherwise_still_gets_its_reply(
    tmp_path: Path, amqp_factory: TransportFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Declaring fails, but the queue exists and is bound: the reply is published
    all the same, and the misdeclared inbox is logged once."""
    setup = await make_escrow(tmp_path / "escrow")
    transport = await amqp_factory()
    config = transport.config
    inbox = config.inbox_queue("bob")
    amqp_factory.track_queue(inbox)
    connection = await aio_pika.connect(amqp_factory.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            inbox, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(config.inbox_exchange, routing_key="bob")
    caplog.set_level(logging.INFO, logger="escrow_worker")
    async with await setup.open_service() as service, running_worker(service, transport) as worker:
        bob = Agent(setup, setup["bob"], await amqp_factory())
        ids = [await bob.send(_lookup(setup)), await bob.send(_lookup(setup))]
        for request_id in ids:
            assert (await bob.reply_to(request_id)).type == MessageType.LOOKUP_REPLY
        assert worker.undelivered == {}
        declared = [r for r in caplog.records if "cannot declare inbox" in r.getMessage()]
        assert [inbox in r.getMessage() for r in declared] == [True]

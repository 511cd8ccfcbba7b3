"""The topology on the real RabbitMQ is the documented one (`broker.transport.
topology`, docs/protocol.md "Queues"), and a queue declared otherwise is refused
with an error that names the queue and the documented arguments."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import aio_pika
import aiormq
import pytest

from broker import TransportConfig
from broker.errors import TopologyError
from broker.transport.topology import topology
from tests.support import TransportFactory

pytestmark = pytest.mark.rabbitmq


def _rabbitmqctl(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["rabbitmqctl", *args, "--formatter", "json"], capture_output=True, text=True, check=True
    )
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


async def test_declarations_are_the_documented_ones(amqp_factory: TransportFactory) -> None:
    """Re-declaring every queue and exchange with exactly the documented arguments
    is accepted (RabbitMQ would refuse any difference), and `rabbitmqctl` shows
    exactly the documented arguments and bindings."""
    transport = await amqp_factory()
    await transport.declare_escrow_queues()
    await transport.declare_inbox("bob")
    config = transport.config
    documented = topology(config, "bob")
    connection = await aio_pika.connect(amqp_factory.amqp_url)
    async with connection:
        channel = await connection.channel()
        for exchange in documented.exchanges:
            await channel.declare_exchange(
                exchange.name, exchange.type, durable=exchange.durable, passive=False
            )
        for queue in documented.queues:
            await channel.declare_queue(queue.name, durable=True, arguments=queue.arguments)
    if shutil.which("rabbitmqctl") is None:
        return
    listed = _rabbitmqctl("list_queues", "-q", "name", "durable", "arguments")
    queues = {row["name"]: row for row in listed}
    for queue in documented.queues:
        shown = queues[queue.name]
        assert shown["durable"] is True
        assert {k: v for k, _, v in shown["arguments"]} == queue.arguments
    bindings = {
        (row["source_name"], row["destination_name"], row["routing_key"])
        for row in _rabbitmqctl(
            "list_bindings", "-q", "source_name", "destination_name", "routing_key"
        )
        if row["source_name"].startswith(config.prefix)
    }
    assert bindings == {(b.exchange, b.queue, b.routing_key) for b in documented.bindings}


async def test_an_inbox_declared_as_the_old_docs_said_is_refused_clearly(
    amqp_factory: TransportFactory,
) -> None:
    """The inbox exists without x-dead-letter-strategy and x-overflow (issue 17):
    declaring it names the queue, RabbitMQ's reason and the documented arguments,
    and leaves the queue as it was."""
    transport = await amqp_factory()
    config: TransportConfig = transport.config
    name = config.inbox_queue("bob")
    old = {
        "x-queue-type": "quorum",
        "x-delivery-limit": config.delivery_limit,
        "x-dead-letter-exchange": config.dead_letter_exchange,
    }
    amqp_factory.track_queue(name)
    connection = await aio_pika.connect(amqp_factory.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments=old)
        with pytest.raises(TopologyError) as refused:
            await transport.declare_inbox("bob")
        message, hint = refused.value.message, refused.value.hint or ""
        assert f"the inbox {name!r} exists on RabbitMQ with other arguments" in message
        assert "x-dead-letter-strategy" in message
        assert "x-dead-letter-strategy=at-least-once" in hint
        assert "x-overflow=reject-publish" in hint
        assert f"rabbitmqctl delete_queue {name}" in hint
        # unchanged: the old declaration is still the queue's
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments=old)
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})

"""An agent checks its own inbox at start-up by declaring it exactly as
docs/protocol.md gives it: an inbox declared otherwise (as the old docs said)
stops the start with an error naming the queue and what to do, and changes
nothing."""

from __future__ import annotations

from pathlib import Path

import aio_pika
import pytest

from broker.errors import TopologyError
from client import ReceiverAgent
from tests.client.agent_helpers import ESCROW_NAME, make_world
from tests.support import TransportFactory

pytestmark = pytest.mark.rabbitmq


async def test_an_agent_whose_inbox_was_declared_wrongly_does_not_start(
    tmp_path: Path, amqp_factory: TransportFactory
) -> None:
    world = await make_world(tmp_path, ("alice", "bob"))
    transport = await amqp_factory()
    config = transport.config
    name = config.inbox_queue("bob")
    amqp_factory.track_queue(name)
    wrong = {
        "x-queue-type": "quorum",
        "x-delivery-limit": config.delivery_limit,
        "x-dead-letter-exchange": config.dead_letter_exchange,
    }
    connection = await aio_pika.connect(amqp_factory.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments=wrong)
        agent = ReceiverAgent(world.identities["bob"], transport, ESCROW_NAME, tmp_path / "bob")
        with pytest.raises(TopologyError) as refused:
            await agent.start()
        assert name in refused.value.message
        assert "x-dead-letter-strategy" in refused.value.message
        assert "x-overflow=reject-publish" in (refused.value.hint or "")
        # nothing changed: the queue still has the arguments it had
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments=wrong)

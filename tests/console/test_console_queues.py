"""The overview's RabbitMQ figures: messages waiting in the work queue and the
dead-letter queue, and the work queue's consumers, read without taking a
message; an unreachable broker is said so, without its URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker import ESCROW, Message
from escrow_worker.console.queues import BrokerProbe
from tests.console.helpers import bearer, desk
from tests.support import TransportFactory


@pytest.mark.rabbitmq
async def test_the_overview_shows_the_queues(
    tmp_path: Path, amqp_factory: TransportFactory
) -> None:
    transport = await amqp_factory()
    await transport.declare_escrow_queues()
    for n in range(2):
        await transport.publish(ESCROW, Message(body=b"{}", message_id=f"m{n}", type="request.v1"))
    probe = BrokerProbe(amqp_factory.amqp_url, transport.config)
    async with desk(tmp_path / "escrow", broker=probe) as d:
        token = await d.login()
        seen = (await d.client.get("/api/overview", headers=bearer(token))).json()["broker"]
        assert seen["reachable"] is True
        assert [(q["name"], q["messages"], q["consumers"]) for q in seen["queues"]] == [
            (transport.config.escrow_queue, 2, 0),
            (transport.config.dead_letter_queue, 0, 0),
        ]
        await d.browser_login()
        page = (await d.client.get("/")).text
        assert transport.config.escrow_queue in page
        # Nothing was taken from the queue.
        assert (await d.client.get("/api/overview", headers=bearer(token))).json()["broker"] == seen

        secret = "s3cret-broker-password"
        away = BrokerProbe(f"amqp://guest:{secret}@127.0.0.1:1/", transport.config, timeout=2)
        d.client._transport.app.state.broker = away  # type: ignore[attr-defined]
        r = await d.client.get("/api/overview", headers=bearer(token))
        assert r.json()["broker"]["reachable"] is False
        assert secret not in r.text
        page = (await d.client.get("/")).text
        assert "RabbitMQ does not answer" in page
        assert secret not in page

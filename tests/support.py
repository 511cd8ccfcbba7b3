"""What the tests import (never from conftest.py): the test servers' defaults,
the transport factory every transport test gets from a fixture, a database of a
test's own, and the guard for tests that change the broker with rabbitmqctl."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from yarl import URL

from broker import AmqpTransport, InProcessBroker, InProcessTransport, Transport, TransportConfig

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

#: Small enough that the requeue-limit tests loop only a few times.
TEST_DELIVERY_LIMIT = 2


def require_rabbitmqctl() -> None:
    """For tests that change the broker through `rabbitmqctl`: fails under
    CI=true when it is missing, skips otherwise."""
    if shutil.which("rabbitmqctl") is None:
        reason = "rabbitmqctl is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true needs it", pytrace=False)
        pytest.skip(reason)


class _RecordingAmqpTransport(AmqpTransport):
    """Remembers inbox queues it declares, so the test can delete them."""

    def __init__(self, url: str, config: TransportConfig, inboxes: set[str]) -> None:
        super().__init__(url, config)
        self._inboxes = inboxes

    async def declare_inbox(self, identity: str) -> str:
        self._inboxes.add(self.config.inbox_queue(identity))
        return await super().declare_inbox(identity)


class TransportFactory:
    """Makes started transports of one kind that share one broker and one prefix."""

    def __init__(self, kind: str, amqp_url: str | None) -> None:
        self.kind = kind
        self.prefix = f"test-{uuid.uuid4().hex[:12]}"
        self._amqp_url = amqp_url
        self._memory = InProcessBroker()
        self._transports: list[Transport] = []
        self._queues: set[str] = set()
        self._inboxes: set[str] = set()
        self._exchanges: set[str] = set()

    @property
    def amqp_url(self) -> str:
        assert self._amqp_url is not None, "an AMQP factory"
        return self._amqp_url

    def track_queue(self, name: str) -> None:
        """Delete the queue `name` too, after the test."""
        self._inboxes.add(name)

    async def __call__(self, *, url: str | None = None, **overrides: Any) -> Transport:
        """A started transport; `overrides` are `TransportConfig` fields.

        `url` replaces the RabbitMQ URL (e.g. to go through a proxy).
        """
        settings: dict[str, Any] = {"prefix": self.prefix, "delivery_limit": TEST_DELIVERY_LIMIT}
        config = TransportConfig(**(settings | overrides))
        self._queues.update((config.escrow_queue, config.dead_letter_queue))
        self._exchanges.update((config.inbox_exchange, config.dead_letter_exchange))
        transport: Transport
        if self._amqp_url is None:
            transport = InProcessTransport(config, broker=self._memory)
        else:
            transport = _RecordingAmqpTransport(url or self._amqp_url, config, self._inboxes)
        self._transports.append(transport)
        await transport.start()
        return transport

    async def cleanup(self) -> None:
        for transport in self._transports:
            await transport.close()
        if self._amqp_url is None:
            return
        connection = await aio_pika.connect(self._amqp_url)
        async with connection:
            channel = await connection.channel()
            for queue in sorted(self._queues | self._inboxes):
                await channel.queue_delete(queue)
            for exchange in sorted(self._exchanges):
                await channel.exchange_delete(exchange)


@contextlib.asynccontextmanager
async def temporary_database(admin_url: str) -> AsyncIterator[str]:
    """A database of its own for one test: created, yielded as a URL, dropped
    (its connections closed first) whatever the test did."""
    import asyncpg

    name = f"consign_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield str(URL(admin_url).with_path(f"/{name}"))
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

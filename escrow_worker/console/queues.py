"""What RabbitMQ says about the escrow's queues, for the overview: messages
waiting in the work queue and the dead-letter queue, and how many consumers
(escrow workers) the work queue has. Read by passive declarations, which
create nothing and take no message. This module must never show the broker
URL (it holds a password) nor a message body.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aio_pika
import aio_pika.exceptions
from pydantic import BaseModel

from broker.transport.base import TransportConfig

__all__ = ["BrokerProbe", "BrokerView", "QueueView"]


class QueueView(BaseModel):
    name: str
    #: None when the queue does not exist (no worker has started on this broker).
    messages: int | None
    consumers: int | None


class BrokerView(BaseModel):
    reachable: bool
    #: Why not, without the URL.
    error: str | None = None
    queues: list[QueueView] = []


@dataclass(frozen=True)
class BrokerProbe:
    url: str
    config: TransportConfig
    timeout: float = 3.0

    def __repr__(self) -> str:  # never the URL
        return f"<BrokerProbe {self.config.prefix}>"

    async def look(self) -> BrokerView:
        names = (self.config.escrow_queue, self.config.dead_letter_queue)
        try:
            async with asyncio.timeout(self.timeout):
                connection = await aio_pika.connect(self.url)
                async with connection:
                    return BrokerView(
                        reachable=True, queues=[await _queue(connection, n) for n in names]
                    )
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            return BrokerView(
                reachable=False, error=f"RabbitMQ does not answer ({type(exc).__name__})"
            )


async def _queue(connection: aio_pika.abc.AbstractConnection, name: str) -> QueueView:
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return QueueView(name=name, messages=None, consumers=None)
    result = queue.declaration_result
    await channel.close()
    return QueueView(name=name, messages=result.message_count, consumers=result.consumer_count)

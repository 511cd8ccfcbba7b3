"""A bare aio-pika echo server: the reference bench/key_release.py measures against.

    python bench/_echo_server.py AMQP_URL QUEUE PREFETCH

Consumes a durable quorum queue with manual acks, publishes each body back to the
message's reply_to queue with publisher confirms, then acks; up to PREFETCH
messages in flight. It does no work beyond that: the broker round trip alone.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import aio_pika


async def main(url: str, queue_name: str, prefetch: int) -> None:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.declare_queue(
        queue_name, durable=True, arguments={"x-queue-type": "quorum"}
    )
    tasks: set[asyncio.Task[None]] = set()

    async def answer(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await channel.default_exchange.publish(
            aio_pika.Message(
                message.body,
                correlation_id=message.correlation_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=message.reply_to or "",
            mandatory=True,
        )
        await message.ack()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        task = asyncio.create_task(answer(message))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await queue.consume(on_message)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await connection.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))

"""Requests per second of escrow workers against RabbitMQ, with N requests in flight.

    python -m bench.escrow_worker_rps [--requests 2000] [--in-flight 64] [--workers 1]
                                      [--kind key-request|lookup] [--amqp-url URL]

(from the repository root: it reuses the test helpers to set up the escrow).

Sets up a throwaway escrow (alice and bob registered, one consignment deposited
for bob with no release limit), starts `consign escrow worker` processes on a
queue prefix of its own, and has one agent (this process) keep `--in-flight`
signed requests outstanding, matching replies by `in_reply_to`. Requests are
signed before the clock starts. A key-request is the full path: authenticate,
decide, decrypt the part, seal K2 to bob, store reply and event, publish both.
The last line is exactly:

    kind=<kind> workers=<n> in_flight=<n> requests=<n> rps=<requests/s> p50_ms=<ms> p95_ms=<ms>
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika

from broker import ESCROW, AmqpTransport, Message, SignedEnvelope, TransportConfig
from broker.messages import MessageType, parse_body
from tests.escrow_helpers import (
    deposit_body,
    key_request_body,
    make_escrow,
    request,
    seal_for,
)
from tests.pki_helpers import ESCROW_PASS

CONSIGN = str(Path(sys.executable).parent / "consign")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--kind", choices=["key-request", "lookup"], default="key-request")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    config = TransportConfig(prefix=prefix)
    with tempfile.TemporaryDirectory() as tmp:
        now = datetime.now(UTC)
        setup = await make_escrow(Path(tmp) / "escrow", now=now)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
        env.update(
            CONSIGN_ESCROW_DIR=str(setup.directory),
            CONSIGN_ESCROW_PASSPHRASE=ESCROW_PASS.decode(),
            CONSIGN_AMQP_URL=args.amqp_url,
            CONSIGN_QUEUE_PREFIX=prefix,
        )
        workers = [
            await asyncio.create_subprocess_exec(
                CONSIGN, "escrow", "worker", "--prefetch", str(args.in_flight),
                "--log-level", "warning", env=env,
            )
            for _ in range(args.workers)
        ]  # fmt: skip
        transport = AmqpTransport(args.amqp_url, config)
        try:
            await transport.start()
            await transport.declare_escrow_queues()
            inbox = await transport.declare_inbox("bob")
            await transport.declare_inbox("alice")
            _, deposit = seal_for(setup["alice"], [setup["bob"]])
            stamp = datetime.now(UTC)
            deposit_data = request(
                setup["alice"], "deposit", deposit_body(setup, deposit), now=stamp
            )
            if args.kind == "key-request":
                body = key_request_body(deposit).model_dump(mode="json")
            else:
                body = {"name": "alice"}
            lifetime = timedelta(minutes=10)
            datas = [
                request(setup["bob"], args.kind, body, now=stamp, lifetime=lifetime)
                for _ in range(args.requests)
            ]
            latencies = await run_load(transport, inbox, deposit_data, datas, args.in_flight)
        finally:
            for proc in workers:
                proc.send_signal(signal.SIGTERM)
            for proc in workers:
                await proc.wait()
            await transport.close()
            await delete_queues(args.amqp_url, config)
    total = latencies.pop("total")
    values = sorted(latencies.values())
    p50 = statistics.median(values) * 1000
    p95 = values[int(len(values) * 0.95) - 1] * 1000
    print(
        f"kind={args.kind} workers={args.workers} in_flight={args.in_flight} "
        f"requests={len(values)} rps={len(values) / total:.0f} p50_ms={p50:.1f} p95_ms={p95:.1f}"
    )


async def run_load(
    transport: AmqpTransport, inbox: str, deposit: bytes, datas: list[bytes], in_flight: int
) -> dict[str, float]:
    sent: dict[str, float] = {}
    done: dict[str, float] = {}
    slots = asyncio.Semaphore(in_flight)
    finished = asyncio.Event()
    ids = [SignedEnvelope.from_wire(d).unverified().request_id for d in datas]

    async def publish(data: bytes, request_id: str) -> None:
        await slots.acquire()
        sent[request_id] = time.perf_counter()
        await transport.publish(ESCROW, Message(body=data, message_id=request_id, type="r.v1"))

    async def read_replies() -> None:
        async with transport.consume(inbox, prefetch=512) as deliveries:
            async for delivery in deliveries:
                await delivery.ack()
                envelope = SignedEnvelope.from_wire(delivery.body).unverified()
                body = parse_body(envelope.type, envelope.version, envelope.body)
                request_id = getattr(body, "in_reply_to", None)
                if envelope.type == MessageType.ERROR:
                    raise RuntimeError(f"the escrow refused a request: {body}")
                if request_id in sent and request_id not in done:
                    done[request_id] = time.perf_counter() - sent[request_id]
                    slots.release()
                    if len(done) == len(datas):
                        finished.set()
                        return

    # The deposit first (alice's inbox gets its receipt), then the timed load.
    alice = transport.config.inbox_queue("alice")
    await transport.publish(ESCROW, Message(body=deposit, message_id="deposit", type="d.v1"))
    for _ in range(100):
        if (got := await transport.get(alice, timeout=0.2)) is not None:
            await got.ack()
            break
    reader = asyncio.create_task(read_replies())
    start = time.perf_counter()
    await asyncio.gather(*(publish(d, i) for d, i in zip(datas, ids, strict=True)))
    async with asyncio.timeout(600):
        await finished.wait()
    done["total"] = time.perf_counter() - start
    await reader
    return done


async def delete_queues(url: str, config: TransportConfig) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in (
            config.escrow_queue,
            config.dead_letter_queue,
            config.inbox_queue("alice"),
            config.inbox_queue("bob"),
        ):
            await channel.queue_delete(queue)
        for exchange in (config.inbox_exchange, config.dead_letter_exchange):
            await channel.exchange_delete(exchange)


if __name__ == "__main__":
    asyncio.run(main())

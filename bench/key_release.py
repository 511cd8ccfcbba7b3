"""Key-release round trips through an escrow worker against RabbitMQ, measured
against a bare aio-pika echo server under the same loads.

    python bench/key_release.py [--store sqlite|postgresql] [--requests 2000]
                                [--latency-requests 300] [--in-flight 64]
                                [--amqp-url URL] [--pg-url URL]

(from the repository root: it reuses the test helpers to set up the escrow).

Sets up a throwaway escrow (alice and bob registered, one consignment deposited
by alice for bob with no release limit) on the store chosen (`--store sqlite`,
the default: a temporary escrow directory; `--store postgresql`: a database of
its own on the server `--pg-url` names, dropped afterwards) and starts two
processes on a queue prefix of its own: `consign escrow worker` and
`bench/_echo_server.py` (a durable quorum queue, manual acks, publisher
confirms, no work). This process then plays bob with one client for both: it
publishes signed key requests (signed before the clock starts) with publisher
confirms to the escrow queue or the echo queue, with `reply_to` set to bob's
inbox, and matches replies there by ``correlation_id``. The echo server gets the
very same request bytes, so the message size is the same. A key release is the
whole path: authenticate (certificate chain, CRL, signature, freshness, replay),
decide, decrypt the part, seal K2 to bob, one store transaction storing the
reply and the sender's event, publish both with confirms, ack.

Two loads, each run on the worker and then on the echo server after a warm-up of
both: `--in-flight` requests outstanding (throughput) and 1 outstanding
(latency). It prints one line per load and target, the store, and last, exactly:

    release_per_s=<ours, N in flight> echo_per_s=<echo, N in flight> ratio=<ours/echo> \
p99_ratio=<our p99 / echo p99, 1 in flight> \
cpu_ratio=<worker CPU per release / echo server CPU per request, N in flight>

(one line; split here only to fit).

Queues and exchanges of its prefix are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker import ESCROW, AmqpTransport, Message, TransportConfig
from escrow_worker.state.location import Location
from tests.broker.pki_helpers import ESCROW_PASS
from tests.escrow_worker.helpers import (
    deposit_body,
    key_request_body,
    make_escrow,
    request,
    request_id_of,
    seal_for,
)
from tests.support import temporary_database

CONSIGN = str(Path(sys.executable).parent / "consign")
ECHO_SERVER = str(Path(__file__).resolve().parent / "_echo_server.py")
WARM_UP = 200
LIFETIME = timedelta(minutes=10)  # the escrow accepts at most 15


@dataclass(frozen=True)
class Figures:
    requests: int
    seconds: float
    latencies: list[float]  # seconds, sorted
    server_cpu: float | None  # CPU seconds the serving process used meanwhile

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds

    def quantile_ms(self, q: float) -> float:
        """Nearest-rank quantile."""
        return self.latencies[max(0, math.ceil(q * len(self.latencies)) - 1)] * 1000

    def line(self, target: str, in_flight: int) -> str:
        return (
            f"{target:<6} in_flight={in_flight:<3} requests={self.requests:<5} "
            f"per_s={self.per_s:7.0f} p50_ms={statistics.median(self.latencies) * 1000:7.2f} "
            f"p99_ms={self.quantile_ms(0.99):7.2f}"
        ) + (
            ""
            if self.server_cpu is None
            else f" server_cpu_ms_per_req={self.server_cpu / self.requests * 1000:.2f}"
        )


class Client:
    """Bob's side, the same for both targets: confirmed persistent publishes to a
    queue with reply_to = bob's inbox; replies matched by correlation_id."""

    def __init__(self, url: str, inbox: str) -> None:
        self._url = url
        self._inbox = inbox
        self._waiting: dict[str, asyncio.Future[None]] = {}

    async def __aenter__(self) -> Client:
        self._connection = await aio_pika.connect(self._url)
        self._publish = await self._connection.channel(publisher_confirms=True)
        consume = await self._connection.channel()
        await consume.set_qos(prefetch_count=512)
        queue = await consume.get_queue(self._inbox, ensure=True)
        await queue.consume(self._on_reply)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._connection.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        if message.type == "error.v1":
            waiting = self._waiting.pop(message.correlation_id or "", None)
            if waiting is not None:
                waiting.set_exception(RuntimeError("the escrow refused a request"))
            return
        waiting = self._waiting.pop(message.correlation_id or "", None)
        if waiting is not None:
            waiting.set_result(None)

    async def purge(self, queue: str) -> None:
        await (await self._publish.get_queue(queue, ensure=False)).purge()

    async def run(self, queue: str, server: int, datas: list[bytes], in_flight: int) -> Figures:
        loop = asyncio.get_running_loop()
        ids = [request_id_of(d) for d in datas]
        slots = asyncio.Semaphore(in_flight)
        latencies: list[float] = []
        exchange = self._publish.default_exchange

        async def one(data: bytes, request_id: str) -> None:
            async with slots:
                reply = loop.create_future()
                self._waiting[request_id] = reply
                sent = time.perf_counter()
                await exchange.publish(
                    aio_pika.Message(
                        data,
                        message_id=request_id,
                        correlation_id=request_id,
                        type="key-request.v1",
                        reply_to=self._inbox,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=queue,
                    mandatory=True,
                )
                await reply
                latencies.append(time.perf_counter() - sent)

        cpu = _cpu_seconds(server)
        start = time.perf_counter()
        async with asyncio.timeout(300):
            await asyncio.gather(*(one(d, i) for d, i in zip(datas, ids, strict=True)))
        elapsed = time.perf_counter() - start
        after = _cpu_seconds(server)
        used = None if cpu is None or after is None else after - cpu
        return Figures(len(datas), elapsed, sorted(latencies), used)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` (Linux /proc; else None)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="for the throughput load")
    parser.add_argument("--latency-requests", type=int, default=300, help="for 1 in flight")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server and a database to connect to while creating the bench's own",
    )
    args = parser.parse_args()
    if args.store == "postgresql":
        async with temporary_database(args.pg_url) as url:
            await bench(args, Location(database=url))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            await bench(args, Location(directory=Path(tmp) / "escrow"))


async def bench(args: argparse.Namespace, location: Location) -> None:

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    config = TransportConfig(prefix=prefix)
    echo_queue = f"{prefix}.echo"
    processes: list[asyncio.subprocess.Process] = []
    if True:  # one indentation level, as before the store choice
        setup = await make_escrow(location, now=datetime.now(UTC))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
        if location.database is not None:
            env["CONSIGN_ESCROW_DB"] = location.database
        else:
            env["CONSIGN_ESCROW_DIR"] = str(setup.directory)
        env.update(
            CONSIGN_ESCROW_PASSPHRASE=ESCROW_PASS.decode(),
            CONSIGN_AMQP_URL=args.amqp_url,
            CONSIGN_QUEUE_PREFIX=prefix,
        )
        transport = AmqpTransport(args.amqp_url, config)
        try:
            await transport.start()
            await transport.declare_escrow_queues()
            inbox = await transport.declare_inbox("bob")
            alice = await transport.declare_inbox("alice")
            worker = await asyncio.create_subprocess_exec(
                CONSIGN, "escrow", "worker", "--prefetch", str(args.in_flight),
                "--log-level", "warning", env=env,
            )  # fmt: skip
            processes.append(worker)
            echo_server = await asyncio.create_subprocess_exec(
                sys.executable, ECHO_SERVER, args.amqp_url, echo_queue, str(args.in_flight),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            processes.append(echo_server)
            assert echo_server.stdout is not None
            async with asyncio.timeout(30):
                await echo_server.stdout.readline()  # "ready": its queue is declared

            # The deposit (its receipt lands in alice's inbox), then the requests,
            # all signed now, before any clock starts.
            _, deposit = seal_for(setup["alice"], [setup["bob"]])
            stamp = datetime.now(UTC)
            data = request(setup["alice"], "deposit", deposit_body(setup, deposit), now=stamp)
            await transport.publish(
                ESCROW, Message(body=data, message_id=f"deposit-{prefix}", type="deposit.v1")
            )
            body = key_request_body(deposit)

            def signed(n: int) -> list[bytes]:
                return [
                    request(setup["bob"], "key-request", body, now=stamp, lifetime=LIFETIME)
                    for _ in range(n)
                ]

            warm_up, throughput, latency = (
                signed(WARM_UP), signed(args.requests), signed(args.latency_requests)
            )  # fmt: skip
            got = await transport.get(alice, timeout=30)
            assert got is not None, "no deposit receipt"
            await got.ack()

            results: dict[tuple[str, int], Figures] = {}
            async with Client(args.amqp_url, inbox) as client:
                targets = (
                    ("ours", config.escrow_queue, worker.pid),
                    ("echo", echo_queue, echo_server.pid),
                )
                for _, target, pid in targets:
                    await client.run(target, pid, warm_up, args.in_flight)
                for datas, in_flight in ((throughput, args.in_flight), (latency, 1)):
                    for name, target, pid in targets:
                        figures = await client.run(target, pid, datas, in_flight)
                        results[name, in_flight] = figures
                        print(figures.line(name, in_flight), flush=True)
                        await client.purge(alice)  # the sender's events: unread
        finally:
            for proc in processes:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in processes:
                await proc.wait()
            await transport.close()
            await _delete(args.amqp_url, config, echo_queue)
    ours, echo = results["ours", args.in_flight], results["echo", args.in_flight]
    p99_ratio = results["ours", 1].quantile_ms(0.99) / results["echo", 1].quantile_ms(0.99)
    if ours.server_cpu is None or echo.server_cpu is None:
        cpu_ratio = "n/a"
    else:
        cpu_ratio = f"{(ours.server_cpu / ours.requests) / (echo.server_cpu / echo.requests):.2f}"
    print(f"store={args.store}", flush=True)
    print(
        f"release_per_s={ours.per_s:.0f} echo_per_s={echo.per_s:.0f} "
        f"ratio={ours.per_s / echo.per_s:.2f} p99_ratio={p99_ratio:.2f} cpu_ratio={cpu_ratio}"
    )


async def _delete(url: str, config: TransportConfig, echo_queue: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in (
            config.escrow_queue,
            config.dead_letter_queue,
            config.inbox_queue("alice"),
            config.inbox_queue("bob"),
            echo_queue,
        ):
            await channel.queue_delete(queue)
        for exchange in (config.inbox_exchange, config.dead_letter_exchange):
            await channel.exchange_delete(exchange)


if __name__ == "__main__":
    asyncio.run(main())

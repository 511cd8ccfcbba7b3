"""Consignments end to end in batches through RabbitMQ, measured against the
bare aio-pika echo of bench/key_release.py in the same run.

    python bench/batch.py [--count 10000] [--size 1024] [--echo-requests 2000]
                          [--in-flight 64] [--amqp-url URL]
                          [--workers 1,2] [--no-echo] [--profile DIR]

(from the repository root). Sets up a throwaway escrow (SQLite) with alice and
bob, each with an identity home, through the real `consign` command. Then, per
run (one escrow worker, then two), each a process of its own: bob runs `consign
receive --into DIR` (the unattended receiver: batch key requests, each opened
consignment logged); alice runs `consign batch seal --manifest M --send` (seal
`--count` consignments of `--size` random bytes, deposit them in `batch`
requests, send each as a signed chunk). The clock runs from alice's start until
bob has logged every consignment opened. Each consignment is three messages at
least (deposit item, chunk, key request item) and four public-key operations
at least. Per run it prints the rate and the workers' CPU per consignment.

Then where a worker's time goes per item: one `batch` of 256 deposits and one
of 256 key requests handled by an `EscrowService` in this process (no
transport), timed, with the functions that took most of it (cProfile).

Then the echo: `bench/_echo_server.py` with `--in-flight` requests outstanding,
as in bench/key_release.py. The last line is exactly:

    consignments_per_s=<end to end, one worker> echo_per_s=<echo requests/s> \
ratio=<consignments_per_s / echo_per_s>

(one line; split here only to fit).

`--workers 1` runs the end-to-end part with one worker only; `--no-echo`
skips the per-item part and the echo (no last line): a short run for the CPU
figures. `--profile DIR` samples the sender, the receiver and the workers,
every thread, with py-spy (`pip install py-spy`; not a dependency of the
project) attached to each process, and writes DIR/<role>-<workers>.txt in
py-spy's "raw" format (one collapsed stack and its sample count a line; idle
time left out). Summarise with `python bench/spy_summary.py FILE`.

Queues and exchanges of its prefix are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from key_release import ECHO_SERVER, Client, _cpu_seconds

from broker import TransportConfig, new_envelope, open_deposit, seal_key_part, sign_envelope
from broker.messages import BATCH_LIMIT
from tests.broker.pki_helpers import ESCROW_PASS
from tests.escrow_worker.helpers import (
    deposit_body,
    escrow_encryption_key,
    make_escrow,
    request,
    seal_for,
)

CONSIGN = str(Path(sys.executable).parent / "consign")
PASSWORDS = {"alice": "alice bench pw", "bob": "bob bench pw"}


class Bench:
    def __init__(self, root: Path, url: str, prefix: str, profile: Path | None = None) -> None:
        self.root = root
        self.profile = profile
        self.profilers: list[asyncio.subprocess.Process] = []
        self.base = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
        self.base.update(
            CONSIGN_ESCROW_DIR=str(root / "escrow"),
            CONSIGN_ESCROW_PASSPHRASE=ESCROW_PASS.decode(),
            CONSIGN_AMQP_URL=url,
            CONSIGN_QUEUE_PREFIX=prefix,
        )

    def env(self, name: str | None = None) -> dict[str, str]:
        env = dict(self.base)
        if name is not None:
            env.update(
                CONSIGN_HOME=str(self.root / f"{name}-home"),
                CONSIGN_IDENTITY_PASSPHRASE=PASSWORDS[name],
            )
        return env

    async def run(self, *args: str, name: str | None = None) -> None:
        proc = await asyncio.create_subprocess_exec(
            CONSIGN, *args, cwd=self.root, env=self.env(name),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"consign {' '.join(args)} failed: {err.decode()}")

    async def start(
        self, *args: str, name: str | None = None, role: str | None = None, **kw: object
    ) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            CONSIGN,
            *args,
            cwd=self.root,
            env=self.env(name),
            **kw,  # type: ignore[arg-type]
        )
        if self.profile is not None and role is not None:
            out = self.profile / f"{role}.txt"
            spy = Path(sys.executable).parent / "py-spy"
            self.profilers.append(
                await asyncio.create_subprocess_exec(
                    *(str(spy), "record", "--pid", str(proc.pid), "--format", "raw"),
                    *("--rate", "200", "--nonblocking", "--output", str(out)),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
        return proc


async def end_to_end(bench: Bench, workers: int, count: int, size: int) -> tuple[float, float]:
    """(consignments per second, worker CPU ms per consignment)."""
    run = bench.root / f"run{workers}"
    (run / "in").mkdir(parents=True)
    with (run / "list.jsonl").open("w") as manifest:
        for i in range(count):
            (run / "in" / f"f{i}.bin").write_bytes(os.urandom(size))
            manifest.write(json.dumps({"files": [f"in/f{i}.bin"], "to": ["bob"]}) + "\n")
    procs = [
        await bench.start("escrow", "worker", "--log-level", "warning", role=f"worker{i}-{workers}")
        for i in range(workers)
    ]
    receiver = await bench.start(
        "receive", "--into", str(run / "opened"), name="bob", role=f"receiver-{workers}",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert receiver.stderr is not None
    while not (await receiver.stderr.readline()).startswith(b"OK receiving"):
        pass
    # What a process spends before its first consignment (imports, the identity's
    # passphrase KDF, connecting): the receiver's, measured here, stands for the
    # sender's too in the figures net of start-up.
    startup = _cpu_seconds(receiver.pid) or 0.0
    cpu = [_cpu_seconds(p.pid) or 0.0 for p in procs]
    start = time.perf_counter()
    sender = await bench.start(
        "batch", "seal", "--manifest", str(run / "list.jsonl"), "--out", str(run / "sealed"),
        "--send", "--json", "--timeout", "120", name="alice", role=f"sender-{workers}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    sender_cpu = 0.0

    async def sample() -> None:  # the sender's CPU, until it exits
        nonlocal sender_cpu
        while sender.returncode is None:
            sender_cpu = _cpu_seconds(sender.pid) or sender_cpu
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    opened = 0
    while opened < count:
        line = await receiver.stderr.readline()
        if not line:
            raise SystemExit("the receiver stopped")
        opened += line.startswith(b"received ")
    elapsed = time.perf_counter() - start
    used = sum((_cpu_seconds(p.pid) or 0.0) - c for p, c in zip(procs, cpu, strict=True))
    receiver_cpu = _cpu_seconds(receiver.pid) or 0.0
    if await sender.wait() != 0:
        raise SystemExit("the sender failed")
    await sampler
    for proc in (receiver, *procs):
        proc.send_signal(signal.SIGTERM)
    receiver_task = asyncio.create_task(receiver.stderr.read())
    for proc in (receiver, *procs):
        await proc.wait()
    await receiver_task
    per_s = count / elapsed
    cpu_ms = used / count * 1000

    def net(cpu: float) -> float:
        return max(0.0, cpu - startup) / count * 1000

    print(
        f"workers={workers} consignments={count} size={size} seconds={elapsed:.1f} "
        f"consignments_per_s={per_s:.0f} worker_cpu_ms_per_consignment={cpu_ms:.2f} "
        f"sender_cpu_ms_per_consignment>={sender_cpu / count * 1000:.2f} "
        f"receiver_cpu_ms_per_consignment={receiver_cpu / count * 1000:.2f} "
        f"startup_cpu_s={startup:.2f} sender_net_ms>={net(sender_cpu):.2f} "
        f"receiver_net_ms={net(receiver_cpu):.2f}",
        flush=True,
    )
    return per_s, cpu_ms


async def per_item(root: Path) -> None:
    """Where a worker's time goes per item: one batch of each kind handled by
    the service in this process, and the public-key steps of an item alone."""
    setup = await make_escrow(root / "profile-escrow", now=datetime.now(UTC))
    setup.clock.now = datetime.now(UTC)
    deposits = [seal_for(setup["alice"], [setup["bob"]])[1] for _ in range(BATCH_LIMIT)]
    bodies = [deposit_body(setup, d) for d in deposits]
    items = [{"id": uuid.uuid4().hex, "body": b.model_dump(mode="json")} for b in bodies]
    keys = [
        {"id": uuid.uuid4().hex, "body": {"consignment_id": d.consignment_id,
                                          "consignment_digest": d.consignment_digest}}
        for d in deposits
    ]  # fmt: skip
    async with await setup.open_service() as service:
        for kind, who, batch in (("deposit", "alice", items), ("key-request", "bob", keys)):
            wire = request(setup[who], "batch", {"kind": kind, "items": batch}, now=setup.clock.now)
            start = time.perf_counter()
            outcome = await service.handle(wire)
            elapsed = time.perf_counter() - start
            assert outcome.reply is not None
            print(
                f"per item: {kind}: {elapsed / len(batch) * 1000:.2f} ms in the service "
                f"(batch of {len(batch)}, one transaction, {len(outcome.events)} events)",
                flush=True,
            )
        private = await escrow_encryption_key(setup)
    start = time.perf_counter()
    for d, b in zip(deposits, bodies, strict=True):
        open_deposit(b.sealed_deposit, d.consignment_id, private)
    opened = (time.perf_counter() - start) / len(deposits) * 1000
    bob = setup["bob"].encryption_key.public_key()
    start = time.perf_counter()
    for d in deposits:
        seal_key_part(os.urandom(32), bob, d.consignment_id, d.policy_digest)
    sealed = (time.perf_counter() - start) / len(deposits) * 1000
    print(
        f"per item: of which HPKE open of the deposit {opened:.2f} ms, "
        f"HPKE seal of K2 to the receiver {sealed:.2f} ms; the rest is the store "
        "(SQL, the master-key AEAD), validation, the events' signatures",
        flush=True,
    )


async def echo(url: str, prefix: str, requests: int, in_flight: int) -> float:
    queue, inbox = f"{prefix}.echo", f"{prefix}.echo-replies"
    server = await asyncio.create_subprocess_exec(
        sys.executable, ECHO_SERVER, url, queue, str(in_flight), stdout=asyncio.subprocess.PIPE
    )
    assert server.stdout is not None
    await server.stdout.readline()
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.declare_queue(inbox, durable=True, arguments={"x-queue-type": "quorum"})
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    body = {"consignment_id": "0" * 32, "consignment_digest": "0" * 64}

    def signed(n: int) -> list[bytes]:
        return [
            sign_envelope(
                new_envelope(type="key-request", body=body, audience="acme", signer="0" * 64,
                             now=datetime.now(UTC), reply_to="bob",
                             lifetime=timedelta(minutes=10)),
                key,
            ).to_wire()
            for _ in range(n)
        ]  # fmt: skip

    try:
        async with Client(url, inbox) as client:
            await client.run(queue, server.pid, signed(200), in_flight)
            figures = await client.run(queue, server.pid, signed(requests), in_flight)
            print(figures.line("echo", in_flight), flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        await server.wait()
        await channel.queue_delete(queue)
        await channel.queue_delete(inbox)
        await connection.close()
    return figures.per_s


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--echo-requests", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--workers", default="1,2", help="the end-to-end runs, e.g. 1 or 1,2")
    parser.add_argument("--no-echo", action="store_true", help="skip per-item and the echo")
    parser.add_argument("--profile", type=Path, help="profile the processes into this directory")
    args = parser.parse_args()
    runs = [int(n) for n in args.workers.split(",")]
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp), args.amqp_url, prefix, args.profile)
        try:
            await bench.run("escrow", "init", "--name", "acme")
            for name in PASSWORDS:
                await bench.run("escrow", "register", name, "--out", f"{name}.identity", name=name)
                await bench.run("id", "import", f"{name}.identity", name=name)
            rates = [(await end_to_end(bench, n, args.count, args.size))[0] for n in runs]
            for spy in bench.profilers:  # each writes its file once its process has exited
                await spy.wait()
            if args.no_echo:
                return
            await per_item(Path(tmp))
            echo_per_s = await echo(args.amqp_url, prefix, args.echo_requests, args.in_flight)
        finally:
            await _delete(args.amqp_url, TransportConfig(prefix=prefix))
    one = rates[0]
    print(f"consignments_per_s={one:.0f} echo_per_s={echo_per_s:.0f} ratio={one / echo_per_s:.2f}")


async def _delete(url: str, config: TransportConfig) -> None:
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

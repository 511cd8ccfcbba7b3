"""Time a consignment moving between two agents over RabbitMQ, against a bare
aio-pika transfer of the same bytes measured in the same run.

    python bench/agents_transfer.py [--size-mib 256] [--amqp-url amqp://guest:guest@127.0.0.1:5672/]

Ours: the escrow worker runs in this process; the sender and the receiver
agents each run in a process of their own. The sender seals and deposits
(timed apart), then sends; the receiver reads its inbox (each chunk verified,
written in place and synced before it is acked) until the consignment is
complete, then opens it (timed apart). `transfer_mib_s` is the consignment's
size over the time from the start of `send` to the moment the receiver holds
it complete.

The reference: a bare aio-pika transfer of the same total size in 512 KiB
persistent messages, published with publisher confirms (many in flight)
through a durable quorum queue and consumed with manual acks, publisher and
consumer in processes of their own, timed from the first publish to the last
ack.

`peak_rss_mib` is the largest peak RSS of the two agent processes. The last
line is exactly:

    transfer_mib_s=<ours> raw_mib_s=<bare aio-pika> ratio=<ours/raw> peak_rss_mib=<largest agent>

Queues and exchanges live under a prefix of their own and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_TMP = "/dev/shm" if os.path.isdir("/dev/shm") else None  # tmpfs: time the agents, not the disk
_PASS = b"bench"
_RAW_CHUNK = 512 * 1024
_RAW_IN_FLIGHT = 64


def _peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss: Linux carries
    ru_maxrss over fork and exec, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the agents, each in a process of its own ------------------------------------------


async def _agent(role: str, root: Path, url: str, prefix: str) -> None:
    from broker import TransportConfig, connect_transport
    from broker.pki.identity import Identity, read_identity_file
    from client import ReceiverAgent, SenderAgent

    name = "alice" if role == "send" else "bob"
    identity = read_identity_file(root / f"{name}.identity", _PASS)
    assert isinstance(identity, Identity)
    report: dict[str, float | str] = {}
    async with connect_transport(url, TransportConfig(prefix=prefix)) as transport:
        if role == "send":
            async with SenderAgent(identity, transport, "acme", root / "a") as alice:
                t = time.perf_counter()
                sealed = await alice.seal([root / "big.bin"], root / "big.consignment", to=["bob"])
                report["seal_s"] = time.perf_counter() - t
                report["send_started"] = time.time()
                t = time.perf_counter()
                sent = await alice.send(sealed.consignment_id)
                report["send_s"] = time.perf_counter() - t
                report["consignment_id"] = sent.consignment_id
                report["size"] = sent.size
        else:
            async with ReceiverAgent(identity, transport, "acme", root / "b") as bob:
                (root / "receiver.ready").touch()
                while True:
                    await bob.sync(idle=0.05, timeout=0.5)
                    done = [r for r in (await bob.inbox()).received if r.state == "complete"]
                    if done:
                        break
                report["received_at"] = time.time()
                t = time.perf_counter()
                await bob.open(done[0].consignment_id, root / "out")
                report["open_s"] = time.perf_counter() - t
    report["peak_rss_mib"] = _peak_rss_mib()
    print(json.dumps(report), flush=True)


# -- the reference: bare aio-pika ----------------------------------------------------------


async def _raw(role: str, root: Path, url: str, queue_name: str, total: int) -> None:
    import aio_pika

    count = -(-total // _RAW_CHUNK)
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        report: dict[str, float] = {}
        if role == "consume":
            await channel.set_qos(prefetch_count=64)
            (root / "raw.ready").touch()
            got = 0
            async with queue.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    got += 1
                    if got == count:
                        break
            report["received_at"] = time.time()
        else:
            body = os.urandom(_RAW_CHUNK)
            slots = asyncio.Semaphore(_RAW_IN_FLIGHT)
            report["send_started"] = time.time()

            async def publish(index: int) -> None:
                try:
                    message = aio_pika.Message(
                        body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(index)
                    )
                    await channel.default_exchange.publish(message, routing_key=queue_name)
                finally:
                    slots.release()

            async with asyncio.TaskGroup() as group:
                for index in range(count):
                    await slots.acquire()
                    group.create_task(publish(index))
        if role == "consume":
            await queue.delete(if_unused=False, if_empty=False)
    report["peak_rss_mib"] = _peak_rss_mib()
    print(json.dumps(report), flush=True)


# -- the run ---------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"a bench process failed (exit {proc.returncode})")
    return dict(json.loads(out.strip().splitlines()[-1]))


async def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    while not path.exists():  # noqa: ASYNC240 - a bench loop
        if proc.poll() is not None:
            raise SystemExit(f"a bench process failed (exit {proc.returncode})")
        await asyncio.sleep(0.02)


async def _main(size_mib: int, url: str) -> None:
    from broker import TransportConfig, connect_transport
    from broker.pki.identity import write_identity_file
    from tests.cli_helpers import delete_topology
    from tests.client.agent_helpers import WorkerRunner, make_world

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(dir=_TMP) as d:
        root = Path(d)
        world = await make_world(root, ("alice", "bob"))
        for name in ("alice", "bob"):
            write_identity_file(root / f"{name}.identity", world.identities[name], _PASS, log_n=14)
        with (root / "big.bin").open("wb") as big:
            for _ in range(size_mib):
                big.write(os.urandom(1 << 20))
        async with (
            connect_transport(url, TransportConfig(prefix=prefix)) as transport,
            WorkerRunner(world, transport),
        ):
            receiver = _spawn("_agent", "receive", str(root), url, prefix)
            await _wait_for(root / "receiver.ready", receiver)
            sender = _spawn("_agent", "send", str(root), url, prefix)
            sent, got = (
                await asyncio.to_thread(_result, sender),
                await asyncio.to_thread(_result, receiver),
            )
        await delete_topology(url, prefix, ("alice", "bob"))
        size = int(sent["size"])
        ours_s = got["received_at"] - sent["send_started"]
        mib = size / (1 << 20)
        print(f"seal + deposit         {sent['seal_s']:7.2f} s  {mib / sent['seal_s']:8.1f} MiB/s")
        print(f"send (sender's part)   {sent['send_s']:7.2f} s  {mib / sent['send_s']:8.1f} MiB/s")
        print(f"send + receive         {ours_s:7.2f} s  {mib / ours_s:8.1f} MiB/s")
        print(f"request + open         {got['open_s']:7.2f} s  {mib / got['open_s']:8.1f} MiB/s")
        rss = f"sender {sent['peak_rss_mib']:.0f} MiB, receiver {got['peak_rss_mib']:.0f} MiB"
        print(f"peak RSS: {rss}")

        queue = f"{prefix}.raw"
        consumer = _spawn("_raw", "consume", str(root), url, queue, str(size))
        await _wait_for(root / "raw.ready", consumer)
        publisher = _spawn("_raw", "publish", str(root), url, queue, str(size))
        pub, con = (
            await asyncio.to_thread(_result, publisher),
            await asyncio.to_thread(_result, consumer),
        )
        raw_s = con["received_at"] - pub["send_started"]
        print(f"bare aio-pika          {raw_s:7.2f} s  {mib / raw_s:8.1f} MiB/s")
    ours, raw = mib / ours_s, mib / raw_s
    peak = max(sent["peak_rss_mib"], got["peak_rss_mib"])
    print(
        f"transfer_mib_s={ours:.1f} raw_mib_s={raw:.1f} ratio={ours / raw:.2f} "
        f"peak_rss_mib={peak:.0f}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_agent":
        asyncio.run(_agent(sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_raw":
        role, root, url, queue, total = sys.argv[2:7]
        asyncio.run(_raw(role, Path(root), url, queue, int(total)))
    else:
        parser = argparse.ArgumentParser()
        parser.add_argument("--size-mib", type=int, default=256)
        parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
        args = parser.parse_args()
        asyncio.run(_main(args.size_mib, args.amqp_url))

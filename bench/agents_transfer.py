"""Time the agents end to end: seal and deposit, send in chunks, receive (each
chunk verified and stored before it is acked), and open, with the real escrow
worker, on the in-process transport or RabbitMQ.

    python bench/agents_transfer.py [--size-mib 64] [--amqp-url amqp://guest:guest@127.0.0.1:5672/]

Prints one line per phase (seconds, MiB/s) and the process's peak RSS. On
RabbitMQ it uses a queue prefix of its own and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker import TransportConfig, connect_transport
from client import ReceiverAgent, SenderAgent
from tests.client.agent_helpers import ESCROW_NAME, WorkerRunner, make_world

_TMP = "/dev/shm" if os.path.isdir("/dev/shm") else None  # tmpfs: time the agents, not the disk


async def main(size_mib: int, url: str | None) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    config = TransportConfig(prefix=prefix)
    with tempfile.TemporaryDirectory(dir=_TMP) as d:
        root = Path(d)
        world = await make_world(root, ("alice", "bob"))
        (root / "big.bin").write_bytes(os.urandom(size_mib << 20))
        async with (
            connect_transport(url, config) as transport,
            WorkerRunner(world, transport),
            SenderAgent(world.identities["alice"], transport, ESCROW_NAME, root / "a") as alice,
            ReceiverAgent(world.identities["bob"], transport, ESCROW_NAME, root / "b") as bob,
        ):

            def line(what: str, started: float) -> None:
                took = time.perf_counter() - started
                print(f"{what:<22} {took:7.2f} s  {size_mib / took:8.1f} MiB/s", flush=True)

            t = time.perf_counter()
            sealed = await alice.seal([root / "big.bin"], root / "big.consignment", to=["bob"])
            line("seal + deposit", t)
            t = time.perf_counter()
            sent = await alice.send(sealed.consignment_id)
            line(f"send ({sent.chunks} chunks)", t)
            while True:
                inbox = await bob.fetch(idle=0.2)
                if any(r.state == "complete" for r in inbox.received):
                    break
            line("send + receive", t)
            t = time.perf_counter()
            await bob.open(sealed.consignment_id, root / "out")
            line("request + open", t)
        if url is not None:
            from tests.cli_helpers import delete_topology

            await delete_topology(url, prefix, ("alice", "bob"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--amqp-url")
    args = parser.parse_args()
    asyncio.run(main(args.size_mib, args.amqp_url))

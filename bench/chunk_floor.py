"""The floor of the chunk format: CPU time to build one signed 512 KiB
`consignment-chunk` message (sender) and to parse and verify it (receiver),
with no broker and no disk. CPU time, not wall time, so a busy machine skews
it less.

    python bench/chunk_floor.py [--chunks 40]

Prints CPU ms per chunk for each side and the MiB/s one core could reach on
that side alone: the ceiling of the agents' transfer whatever the transport.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client.agent import verify
from client.agent.chunks import MAX_CHUNK, Chunk, chunk_wire
from tests.client.agent_helpers import make_world


async def main(chunks: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        world = await make_world(Path(d), ("alice", "bob"))
    alice = world.identities["alice"]
    data = os.urandom(MAX_CHUNK)
    started = time.process_time()
    wires = [
        chunk_wire(
            alice,
            receiver="bob",
            consignment_id="ab" * 16,
            digest="cd" * 32,
            size=chunks * MAX_CHUNK,
            count=chunks,
            chunk=Chunk(i, data),
            now=datetime.now(UTC),
        )[1]
        for i in range(chunks)
    ]
    make = (time.process_time() - started) / chunks
    key = alice.signing_key.public_key()
    cert = alice.signing_certificate
    certs = verify.Certificates("alice", cert, alice.encryption_certificate, None)  # type: ignore[arg-type]
    started = time.process_time()
    for wire in wires:
        verify.verify_with(verify.parse(wire, me="bob"), certs, key)
    check = (time.process_time() - started) / chunks
    mib = MAX_CHUNK / (1 << 20)
    print(f"message bytes per 512 KiB chunk: {len(wires[0])}")
    print(f"sender   build + sign     {make * 1000:6.1f} CPU ms/chunk  {mib / make:6.1f} MiB/s")
    print(f"receiver parse + verify   {check * 1000:6.1f} CPU ms/chunk  {mib / check:6.1f} MiB/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=40)
    asyncio.run(main(parser.parse_args().chunks))

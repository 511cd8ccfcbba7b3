"""Several worker processes append to one transaction log at once, on both store
backends: every append lands, in one unbroken chain (no fork, no gap), each
process's entries in its own order."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from broker.txlog import Entry, verify_chain
from escrow_worker.state.base import open_store
from escrow_worker.state.location import Location
from escrow_worker.state.meta import set_meta

PROCESSES = 3
APPENDS = 40

_CHILD = """
import asyncio, sys
from pathlib import Path
from escrow_worker.state.base import LogItem, open_store

async def main(db, directory, who, count):
    store = await open_store(db or None, Path(directory) if directory else None)
    try:
        async def one(n):
            async def job(tx):
                tx.log(LogItem("test", {"who": who, "n": n}, n, parties=(who,)))
                # a second entry in the same job: both or neither, in order
                tx.log(LogItem("test", {"who": who, "n": n, "second": True}, n))
            await store.run(job)
        await asyncio.gather(*(one(n) for n in range(count)))
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


async def test_processes_append_without_forking_the_chain(escrow_location: Location) -> None:
    directory = escrow_location.directory
    if directory is not None:
        directory.mkdir(parents=True)
    store = await open_store(escrow_location.database, directory)
    try:
        await store.run(lambda tx: set_meta(tx, "name", "acme"))
    finally:
        await store.close()

    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            escrow_location.database or "",
            str(directory or ""),
            f"w{i}",
            str(APPENDS),
            cwd=Path(__file__).parents[2],
        )
        for i in range(PROCESSES)
    ]
    assert [await c.wait() for c in children] == [0] * PROCESSES

    store = await open_store(escrow_location.database, directory)
    try:
        rows = await store.run(
            lambda tx: tx.fetchall("SELECT entry, hash FROM log_entries ORDER BY seq")
        )
    finally:
        await store.close()
    encoded = [bytes(r[0]) for r in rows]
    result = verify_chain(encoded, escrow="acme", claimed=[str(r[1]) for r in rows])
    assert result.first == 1
    assert result.last == PROCESSES * APPENDS * 2
    entries = [Entry.decode(e) for e in encoded]
    for i in range(PROCESSES):
        mine = [(e.data["n"], "second" in e.data) for e in entries if e.data["who"] == f"w{i}"]
        assert sorted(mine) == [(n, s) for n in range(APPENDS) for s in (False, True)]
    # The two entries of one job are always next to each other.
    for a, b in zip(entries[::2], entries[1::2], strict=True):
        assert (a.data["who"], a.data["n"]) == (b.data["who"], b.data["n"])
        assert "second" in b.data

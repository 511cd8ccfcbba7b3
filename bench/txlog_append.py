"""What the transaction log costs a store job: jobs per second with and without
two log entries each (a decided request and one event), on SQLite (in a
temporary directory) and, with a URL as argument, PostgreSQL.

    python bench/txlog_append.py [postgresql://postgres@127.0.0.1:5432/DB] [--jobs 2000]

Jobs are submitted 64 at a time, as a worker's lanes do."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from escrow_worker.state.base import LogItem, Store, Tx, open_store
from escrow_worker.state.meta import set_meta


async def rate(store: Store, jobs: int, entries: int) -> float:
    async def job(tx: Tx, n: int) -> None:
        await tx.execute(
            "INSERT INTO escrow_meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (f"bench-{n % 64}", str(n)),
        )
        for i in range(entries):
            tx.log(LogItem("bench", {"n": n, "i": i, "pad": "x" * 400}, n, parties=("alice",)))

    start = time.perf_counter()
    for first in range(0, jobs, 64):
        await asyncio.gather(
            *(store.run(lambda tx, n=n: job(tx, n)) for n in range(first, min(first + 64, jobs)))
        )
    return jobs / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url", nargs="?")
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(args.url, None if args.url else Path(tmp))
        try:
            await store.run(lambda tx: set_meta(tx, "name", "bench"))
            for entries in (0, 2, 0, 2):
                per_s = await rate(store, args.jobs, entries)
                print(f"{store.kind}: {entries} log entries per job: {per_s:,.0f} jobs/s")
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())

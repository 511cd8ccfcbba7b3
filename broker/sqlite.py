"""The one way our packages open a SQLite database: the escrow's embedded store
and each agent's state.

`open_sqlite` connects in autocommit mode (callers decide where a transaction
starts with `transaction`), turns on WAL (and checks it took), `synchronous =
FULL` (a decision replied to, or a message acked, survives a power cut), foreign
keys and a busy timeout, then applies the caller's schema in one transaction.
`transaction` is BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): the write lock
is taken at the start, so two writers never both decide on what they read.

Errors are the caller's to name: this module raises `sqlite3.Error` or
`OSError` as they come, and the caller wraps them in its own error with a hint.
It must never hold business rules.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

__all__ = ["open_sqlite", "transaction"]


async def open_sqlite(
    path: Path, schema: Sequence[str], *, busy_timeout_ms: int = 5000
) -> aiosqlite.Connection:
    """Open (creating if needed) the database at `path` and apply `schema`.

    Raises `OSError` or `sqlite3.Error`; the connection is closed on failure."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = await conn.execute_fetchall("PRAGMA journal_mode = WAL")
        if next(iter(mode))[0] != "wal":
            raise sqlite3.OperationalError("the database refuses WAL mode")
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
        async with transaction(conn):
            for statement in schema:
                await conn.execute(statement)
    except BaseException:
        await conn.close()
        raise
    return conn


@asynccontextmanager
async def transaction(conn: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block raises."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        await conn.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (a full disk: SQLITE_FULL ends the
        # transaction); the error to report is the one that ended the block.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("ROLLBACK")
        raise

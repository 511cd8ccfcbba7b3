"""The agent database itself: where it lives, its tables, and the one connection
every query goes through.

`Database` opens (and creates) `agent.db` in the agent's state directory the
way every SQLite database here is opened (`broker.sqlite`: write-ahead logging,
`synchronous = FULL`, so a message is acked only once it survives a power cut).
All access goes through one connection and one lock, so the pump and the
processor of an agent never interleave inside a transaction.
The tables' methods live beside it (`requests.py`, `inbox.py`). This module must
never hold protocol logic or store a private key.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import aiosqlite

from broker.sqlite import open_sqlite, transaction
from client.errors import AgentError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DB_NAME: Final = "agent.db"
#: What a failing database raises: the state is at fault, not a message.
StoreError = sqlite3.Error
_R = TypeVar("_R", bound="DataclassInstance")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS spool (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        wire_hash TEXT NOT NULL UNIQUE,
        wire BLOB NOT NULL,
        received_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS chunks (
        consignment_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (consignment_id, idx))""",
    """CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        subject TEXT NOT NULL,
        wire BLOB NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        reply_type TEXT,
        reply_body TEXT,
        reply_wire BLOB,
        replied_at INTEGER)""",
    "CREATE INDEX IF NOT EXISTS requests_subject ON requests (type, subject)",
    # The last reply to a request that decided nothing (docs/protocol.md,
    # "Decisions"): it never settles the request, it only says why none came.
    """CREATE TABLE IF NOT EXISTS nondecisions (
        request_id TEXT PRIMARY KEY,
        code TEXT NOT NULL,
        body TEXT NOT NULL,
        wire BLOB NOT NULL,
        received_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS directory (
        name TEXT PRIMARY KEY,
        signing_certificate TEXT NOT NULL,
        encryption_certificate TEXT NOT NULL,
        crl BLOB NOT NULL,
        fetched_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        wire_hash TEXT NOT NULL UNIQUE,
        consignment_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        receiver TEXT,
        reason TEXT,
        at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        wire BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS notifications (
        consignment_id TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        escrow TEXT NOT NULL,
        deposited_at INTEGER NOT NULL,
        consignment_digest TEXT NOT NULL,
        consignment_size INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        wire BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS received (
        consignment_id TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        consignment_digest TEXT NOT NULL,
        total_size INTEGER NOT NULL,
        chunk_count INTEGER NOT NULL,
        state TEXT NOT NULL,
        path TEXT,
        first_at INTEGER NOT NULL,
        completed_at INTEGER,
        reason TEXT)""",
    """CREATE TABLE IF NOT EXISTS sent (
        consignment_id TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        mode TEXT NOT NULL,
        receivers TEXT NOT NULL,
        consignment_digest TEXT NOT NULL,
        consignment_size INTEGER NOT NULL,
        sealed_at INTEGER NOT NULL,
        receipt TEXT NOT NULL,
        receipt_wire BLOB NOT NULL)""",
    # Batches (`store/batches.py`): every item of a batch operation, stored
    # before its batch is sent (its id and body, so a run after a crash sends the
    # same item again and the escrow answers it from its record), with its result.
    """CREATE TABLE IF NOT EXISTS batch_items (
        job TEXT NOT NULL,
        key TEXT NOT NULL,
        position INTEGER NOT NULL,
        consignment_id TEXT NOT NULL,
        path TEXT,
        item_id TEXT NOT NULL UNIQUE,
        item_body TEXT NOT NULL,
        expect TEXT,
        reply_type TEXT,
        reply_body TEXT,
        done_at INTEGER,
        PRIMARY KEY (job, key))""",
    # Consignments an unattended receiver opened, and what its handler did.
    """CREATE TABLE IF NOT EXISTS handled (
        consignment_id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('opened', 'handled', 'parked')),
        destination TEXT,
        tries INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        opened TEXT,
        updated_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS refused (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        wire_hash TEXT NOT NULL,
        type TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        received_at INTEGER NOT NULL)""",
)


class Database:
    """The connection to an agent's database. Use `await Store.open(dir)`, then `close()`."""

    def __init__(self, conn: aiosqlite.Connection, root: Path) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.root = root

    @classmethod
    async def open(cls, root: Path) -> Self:
        try:
            await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True, mode=0o700)
            conn = await open_sqlite(root / DB_NAME, _SCHEMA, busy_timeout_ms=10_000)
        except OSError as exc:
            raise AgentError(
                f"cannot open the agent state in {root}: {exc}",
                "check the state directory (--home) and that it is writable",
            ) from exc
        except sqlite3.Error as exc:
            raise AgentError(
                f"cannot prepare the agent state {root / DB_NAME}: {exc}",
                "is it an agent database? move it away to start afresh",
            ) from exc
        return cls(conn, root)

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction, alone on the connection."""
        async with self._lock, transaction(self._conn) as conn:
            yield conn

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """The rows of a read-only query (for the methods beside this class, and
        for tests that look inside)."""
        async with self._lock:
            self._conn.row_factory = sqlite3.Row
            try:
                rows = await self._conn.execute_fetchall(sql, params)
            finally:
                self._conn.row_factory = None
        return list(rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


def record(cls: type[_R], row: sqlite3.Row) -> _R:
    """A record whose fields are columns of the same names."""
    return cls(**{f.name: row[f.name] for f in fields(cls)})

"""An agent's durable state: one SQLite database in its state directory.

- `spool`: every inbox message, stored (and committed) before it is acked, then
  verified and moved to the table it belongs in (a chunk's data to a file of
  its own, listed in `chunks`, until its consignment is whole).
- `requests`: every signed request, stored before it is published, with the
  verified reply once it came (so a retry re-sends the same bytes, and a reply
  is never decided twice).
- `directory`: certificates and CRL from the escrow's lookups (checked at use).
- `events`, `notifications`, `received`, `sent`, `refused`: what arrived, what
  was sealed and sent, and what was refused and why.

All access goes through one connection and one lock, so the pump and the
processor of an agent never interleave inside a transaction. This module holds
no protocol logic and must never store a private key.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from client.errors import AgentError

DB_NAME = "agent.db"

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
    """CREATE TABLE IF NOT EXISTS refused (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        wire_hash TEXT NOT NULL,
        type TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        received_at INTEGER NOT NULL)""",
)


class Store:
    """The agent database. Use `await Store.open(dir)`, then `close()`."""

    def __init__(self, conn: aiosqlite.Connection, root: Path) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.root = root

    @classmethod
    async def open(cls, root: Path) -> Store:
        try:
            await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True, mode=0o700)
            conn = await aiosqlite.connect(root / DB_NAME, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise AgentError(
                f"cannot open the agent state in {root}: {exc}",
                "check the state directory (--home) and that it is writable",
            ) from exc
        try:
            await conn.execute("PRAGMA busy_timeout = 10000")
            await conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a message is acked only once it survives a power cut.
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                await conn.execute(statement)
            await conn.execute("COMMIT")
        except sqlite3.Error as exc:
            await conn.close()
            raise AgentError(
                f"cannot prepare the agent state {root / DB_NAME}: {exc}",
                "is it an agent database? move it away to start afresh",
            ) from exc
        return cls(conn, root)

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction, alone on the connection."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
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

    # -- spool ---------------------------------------------------------------

    async def spool(self, items: Iterable[tuple[str, bytes]], now: int) -> None:
        """Store raw inbox messages (hash, bytes); a redelivered one is stored once."""
        async with self.tx() as conn:
            await conn.executemany(
                "INSERT OR IGNORE INTO spool (wire_hash, wire, received_at) VALUES (?, ?, ?)",
                [(h, w, now) for h, w in items],
            )

    # -- requests ------------------------------------------------------------

    async def add_request(
        self,
        *,
        request_id: str,
        type: str,
        subject: str,
        wire: bytes,
        issued_at: int,
        expires_at: int,
    ) -> None:
        async with self.tx() as conn:
            await conn.execute(
                "INSERT INTO requests (request_id, type, subject, wire, issued_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (request_id, type, subject, wire, issued_at, expires_at),
            )

    async def reply_of(self, request_id: str) -> sqlite3.Row | None:
        return await self.fetchone(
            "SELECT * FROM requests WHERE request_id = ? AND reply_type IS NOT NULL",
            (request_id,),
        )


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))

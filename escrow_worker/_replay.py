"""Replay protection: a request id or nonce is accepted once, ever.

An entry is kept until its envelope has expired (plus the allowed clock skew);
after that the freshness check refuses the envelope anyway, so `prune` may drop
it. `check_and_record(conn, ...)` runs inside the caller's transaction (so a
later handler records the request id in the same transaction as its decision);
the stores wrap it for standalone use. This module must never decide anything
but "seen before or not", and never record a request that failed another check:
callers record last.
"""

from __future__ import annotations

import abc
import asyncio
import sqlite3
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from escrow_worker._db import transaction
from escrow_worker.errors import RequestReason, RequestRejected


@dataclass(frozen=True)
class ReplayKey:
    request_id: str
    nonce: str
    signer: str
    #: Unix seconds after which the entry may be pruned.
    keep_until: int


def _replayed(key: ReplayKey) -> RequestRejected:
    return RequestRejected(
        RequestReason.REPLAYED,
        f"request {key.request_id} was already received (replay)",
        "a new request needs a new request id and nonce",
    )


async def check_and_record(conn: aiosqlite.Connection, key: ReplayKey, *, now: datetime) -> None:
    """Record `key` on `conn` within the caller's transaction, or raise
    RequestRejected(REPLAYED) if its request id or nonce was seen before. A
    refused insert leaves the caller's transaction usable."""
    try:
        await conn.execute(
            "INSERT INTO seen_requests (request_id, nonce, signer, expires_at, seen_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (key.request_id, key.nonce, key.signer, key.keep_until, int(now.timestamp())),
        )
    except sqlite3.IntegrityError as exc:
        raise _replayed(key) from exc


class ReplayStore(abc.ABC):
    """Where accepted requests are remembered."""

    @abc.abstractmethod
    async def check_and_record(self, key: ReplayKey, *, now: datetime) -> None:
        """Record `key`, or raise RequestRejected(REPLAYED)."""

    @abc.abstractmethod
    async def prune(self, *, now: datetime) -> int:
        """Forget entries whose keep_until is past; return how many."""


class MemoryReplayStore(ReplayStore):
    """In-process store, for the embedded default and tests."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._nonces: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def check_and_record(self, key: ReplayKey, *, now: datetime) -> None:
        async with self._lock:
            if key.request_id in self._ids or key.nonce in self._nonces:
                raise _replayed(key)
            self._ids[key.request_id] = key.keep_until
            self._nonces[key.nonce] = key.keep_until

    async def prune(self, *, now: datetime) -> int:
        cutoff = int(now.timestamp())
        async with self._lock:
            before = len(self._ids)
            self._ids = {k: v for k, v in self._ids.items() if v >= cutoff}
            self._nonces = {k: v for k, v in self._nonces.items() if v >= cutoff}
            return before - len(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


class SqliteReplayStore(ReplayStore):
    """Store in escrow.db (table seen_requests); each call is its own transaction.
    Inside a larger transaction call the module-level `check_and_record` instead."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def check_and_record(self, key: ReplayKey, *, now: datetime) -> None:
        async with transaction(self._conn):
            await check_and_record(self._conn, key, now=now)

    async def prune(self, *, now: datetime) -> int:
        async with transaction(self._conn):
            cursor = await self._conn.execute(
                "DELETE FROM seen_requests WHERE expires_at < ?", (int(now.timestamp()),)
            )
            return cursor.rowcount

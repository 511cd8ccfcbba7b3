"""Replay protection: a request id or nonce is accepted once, ever.

An entry is kept until its envelope has expired (plus the allowed clock skew);
after that the freshness check refuses the envelope anyway, so `prune` may drop
it. `check_and_record(conn, ...)` runs inside the caller's transaction (so a
later handler records the request id in the same transaction as its decision).
This module must never decide anything
but "seen before or not", and never record a request that failed another check:
callers record last.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

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


async def prune(conn: aiosqlite.Connection, *, now: datetime) -> int:
    """Forget entries whose envelopes expired before `now` (plus the skew), within
    the caller's transaction; returns how many."""
    cursor = await conn.execute(
        "DELETE FROM seen_requests WHERE expires_at < ?", (int(now.timestamp()),)
    )
    return cursor.rowcount

"""Replay protection: a request id or nonce is accepted once, ever.

An entry is kept until its envelope has expired (plus the allowed clock skew);
after that the freshness check refuses the envelope anyway, so `prune` may drop
it. `check_and_record(tx, ...)` runs inside the caller's transaction (so a
later handler records the request id in the same transaction as its decision).
This module must never decide anything
but "seen before or not", and never record a request that failed another check:
callers record last.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from escrow_worker.errors import RequestReason, RequestRejected
from escrow_worker.state.base import Tx


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


async def check_and_record(tx: Tx, key: ReplayKey, *, now: datetime) -> None:
    """Record `key` on `tx` within the caller's transaction, or raise
    RequestRejected(REPLAYED) if its request id or nonce was seen before. A
    refused insert leaves the caller's transaction usable (on both backends: the
    conflict is not an error, so PostgreSQL does not abort the transaction)."""
    added = await tx.execute(
        "INSERT INTO seen_requests (request_id, nonce, signer, expires_at, seen_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (key.request_id, key.nonce, key.signer, key.keep_until, int(now.timestamp())),
    )
    if added != 1:
        raise _replayed(key)


async def prune(tx: Tx, *, now: datetime) -> int:
    """Forget entries whose envelopes expired before `now` (plus the skew), within
    the caller's transaction; returns how many."""
    count = await tx.execute(
        "DELETE FROM seen_requests WHERE expires_at < ?", (int(now.timestamp()),)
    )
    return count

"""The transaction log in the store: appending the entries a job asked for
(`Tx.log`) at the end of that job, in its transaction, and reading entries and
signed heads back (migration 3; the format is `broker.txlog`, docs/log.md).

Appends are serialised per chain: `flush` takes the log's lock
(`Tx.lock(CHAIN_LOCK)`: a transaction-scoped advisory lock on PostgreSQL; on
SQLite the write transaction is serial already) before it reads the head, and
the lock is held until the transaction commits, so the next appender reads the
committed head. `seq` is the table's primary key: even without the lock, two
transactions could not both take the same place (the chain never forks; the
loser is retried). The store backends call `flush` after every job; nothing
else appends. This module must never decide anything, and nothing secret
(a key part, a reply carrying one, a passphrase) may be handed to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from broker.canonical import b64, canonical_json, parse_canonical_json
from broker.txlog import Entry, SignedHead, entry_hash, genesis
from escrow_worker.errors import EscrowError
from escrow_worker.state.base import LogItem, Tx
from escrow_worker.state.meta import get_meta

__all__ = [
    "CHAIN_LOCK",
    "Filter",
    "LogItem",
    "add_head",
    "entries",
    "find",
    "find_numbered",
    "flush",
    "head",
    "heads",
    "latest_head",
    "requests_before",
]

CHAIN_LOCK: Final = "consignment/txlog/chain"


async def flush(tx: Tx) -> int:
    """Append what the job asked for to the chain; return how many entries."""
    items = tx.take_log()
    if not items:
        return 0
    await tx.lock(CHAIN_LOCK)
    row = await tx.fetchone("SELECT seq, hash FROM log_entries ORDER BY seq DESC LIMIT 1")
    if row is None:
        name = await get_meta(tx, "name")
        if name is None:
            raise EscrowError("the escrow has no name yet; nothing can be logged", None)
        seq, prev = 0, genesis(name)
    else:
        seq, prev = int(row[0]), str(row[1])
    for item in items:
        seq += 1
        entry = Entry(
            seq, item.at, item.kind, prev, dict(item.data), item.consignment,
            tuple(sorted(set(item.parties))),
        )  # fmt: skip
        encoded = entry.encode()  # checks the data is canonical JSON
        prev = entry_hash(encoded)
        await tx.execute(
            "INSERT INTO log_entries (seq, at, kind, consignment, entry, hash)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (seq, item.at, item.kind, item.consignment, encoded, prev),
        )
        if entry.parties:
            await tx.executemany(
                "INSERT INTO log_parties (party, seq) VALUES (?, ?)",
                [(p, seq) for p in entry.parties],
            )
    return len(items)


async def head(tx: Tx) -> tuple[int, str] | None:
    """(size, hash of the last entry), or None while the log is empty."""
    row = await tx.fetchone("SELECT seq, hash FROM log_entries ORDER BY seq DESC LIMIT 1")
    return None if row is None else (int(row[0]), str(row[1]))


async def entries(tx: Tx, first: int = 1, last: int | None = None) -> list[bytes]:
    """The stored bytes of entries `first`..`last` (default: to the end), by seq."""
    if last is None:
        rows = await tx.fetchall(
            "SELECT entry FROM log_entries WHERE seq >= ? ORDER BY seq", (first,)
        )
    else:
        rows = await tx.fetchall(
            "SELECT entry FROM log_entries WHERE seq >= ? AND seq <= ? ORDER BY seq",
            (first, last),
        )
    return [bytes(r[0]) for r in rows]


async def requests_before(tx: Tx, end: int) -> list[bytes]:
    """The stored bytes of every `request` entry before time `end`, by seq (what
    invoicing counts from)."""
    rows = await tx.fetchall(
        "SELECT entry FROM log_entries WHERE kind = 'request' AND at < ? ORDER BY seq", (end,)
    )
    return [bytes(r[0]) for r in rows]


@dataclass(frozen=True)
class Filter:
    """What `log show` and `history` select: every field given must match."""

    consignment: str | None = None
    party: str | None = None
    since: int | None = None
    until: int | None = None
    kind: str | None = None
    #: Only entries after this one (by seq).
    after: int = 0
    limit: int = 1000


async def find(tx: Tx, where: Filter) -> list[bytes]:
    """Entries matching `where`, oldest first (at most `where.limit`)."""
    return [entry for _, entry in await find_numbered(tx, where)]


async def find_numbered(tx: Tx, where: Filter) -> list[tuple[int, bytes]]:
    """`find`, each entry with its seq as stored (the console lists an entry
    that no longer decodes, by its place)."""
    sql = "SELECT e.seq, e.entry FROM log_entries e"
    params: list[object] = []
    clauses: list[str] = []
    if where.party is not None:
        sql += " JOIN log_parties p ON p.seq = e.seq AND p.party = ?"
        params.append(where.party)
    for clause, value in (
        ("e.consignment = ?", where.consignment),
        ("e.at >= ?", where.since),
        ("e.at < ?", where.until),
        ("e.kind = ?", where.kind),
        ("e.seq > ?", where.after or None),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY e.seq LIMIT ?"
    params.append(where.limit)
    return [(int(r[0]), bytes(r[1])) for r in await tx.fetchall(sql, params)]


async def add_head(tx: Tx, signed: SignedHead) -> None:
    await tx.execute(
        "INSERT INTO log_heads (size, signed_at, head, signature, signer) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (size, signed_at) DO NOTHING",
        (
            signed.head.size,
            signed.head.signed_at,
            canonical_json(signed.head.to_json()),
            signed.signature,
            signed.signer,
        ),
    )


def _signed_head(row: Sequence[object]) -> SignedHead:
    head_bytes, signature, signer = row
    assert isinstance(head_bytes, bytes | memoryview)
    assert isinstance(signature, bytes | memoryview)
    value = parse_canonical_json(bytes(head_bytes), "log head")
    return SignedHead.from_json(
        {"head": value, "signature": b64(bytes(signature)), "signer": str(signer)}
    )


async def heads(tx: Tx, first: int = 0, last: int | None = None) -> list[SignedHead]:
    """Signed heads with `first` <= size <= `last`, by size then time."""
    top = last if last is not None else 2**62
    rows = await tx.fetchall(
        "SELECT head, signature, signer FROM log_heads WHERE size >= ? AND size <= ?"
        " ORDER BY size, signed_at",
        (first, top),
    )
    return [_signed_head(r) for r in rows]


async def latest_head(tx: Tx) -> SignedHead | None:
    row = await tx.fetchone(
        "SELECT head, signature, signer FROM log_heads ORDER BY size DESC, signed_at DESC LIMIT 1"
    )
    return None if row is None else _signed_head(row)

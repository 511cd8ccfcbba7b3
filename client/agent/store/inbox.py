"""What arrived in the agent's inbox: the spool of raw messages, the events and
notifications filed from it, consignments arriving in chunks, and refusals.

Every inbox message is stored (and committed) in `spool` before it is acked, then
moved in one transaction to the table it belongs in (a chunk's data to a file of
its own, listed in `chunks`, until its consignment is whole; the events and
notifications of one page of the spool together). This module must never
decide whether a message is good: callers verify first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiosqlite

from broker.messages import EventBody, MessageType, NotifyBody
from client.agent.store.database import Database, record
from client.agent.types import Event, InboxContents, Notification, Received, Refusal

#: How a chunk's consignment stands before the chunk is kept.
ChunkState = Literal["new", "held", "inconsistent"]


@dataclass(frozen=True)
class ChunkRow:
    """A verified chunk, as the store sees it (its data is written elsewhere);
    `seq` is its spool row, if it went through the spool."""

    seq: int | None
    consignment_id: str
    index: int
    size: int
    #: (sender, consignment digest, total size, chunk count, chunk length)
    meta: tuple[str, str, int, int, int]


@dataclass(frozen=True)
class Filing:
    """A verified event or notification, still in the spool at `seq`."""

    seq: int
    wire_hash: str
    wire: bytes
    body: EventBody | NotifyBody
    received_at: int


def _event_row(f: Filing) -> tuple[object, ...]:
    body = f.body
    assert isinstance(body, EventBody)
    return (f.wire_hash, body.consignment_id, body.kind.value, body.receiver, body.reason,
            body.at, f.received_at, f.wire)  # fmt: skip


def _notification_row(f: Filing) -> tuple[object, ...]:
    body = f.body
    assert isinstance(body, NotifyBody)
    return (body.consignment_id, body.sender, body.escrow, body.deposited_at,
            body.consignment_digest, body.consignment_size, f.received_at, f.wire)  # fmt: skip


class InboxTables(Database):
    """`spool`, `refused`, `events`, `notifications`, `received` and `chunks`."""

    async def spool(self, items: Iterable[tuple[str, bytes]], now: int) -> None:
        """Store raw inbox messages (hash, bytes); a redelivered one is stored once."""
        async with self._tx() as conn:
            await conn.executemany(
                "INSERT OR IGNORE INTO spool (wire_hash, wire, received_at) VALUES (?, ?, ?)",
                [(h, w, now) for h, w in items],
            )

    async def refuse(
        self, seq: int, wire_hash: str, kind: str, reason: str, message: str, now: int
    ) -> None:
        """Keep why a stored message was refused, and drop it."""
        async with self._tx() as conn:
            await _refused(conn, wire_hash, kind, reason, message, now)
            await conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))

    async def refusals_since(self, since: int) -> list[str]:
        """What the refusals since `since` said, latest first."""
        rows = await self.fetchall(
            "SELECT message FROM refused WHERE received_at >= ? ORDER BY seq DESC", (since,)
        )
        return [r["message"] for r in rows]

    async def spooled_page(self, after: int, limit: int) -> list[sqlite3.Row]:
        """(seq, wire_hash, wire, received_at) of up to `limit` stored messages
        after `after`, oldest first: what one pass of processing reads at once."""
        return await self.fetchall(
            "SELECT seq, wire_hash, wire, received_at FROM spool WHERE seq > ?"
            " ORDER BY seq LIMIT ?",
            (after, limit),
        )

    async def file(self, filings: Sequence[Filing]) -> None:
        """Move verified events and notifications from the spool to their
        tables, all in one transaction."""
        async with self._tx() as conn:
            events = [f for f in filings if isinstance(f.body, EventBody)]
            notes = [f for f in filings if isinstance(f.body, NotifyBody)]
            await conn.executemany(
                "INSERT OR IGNORE INTO events (wire_hash, consignment_id, kind, receiver,"
                " reason, at, received_at, wire) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [_event_row(f) for f in events],
            )
            await conn.executemany(
                "INSERT OR IGNORE INTO notifications (consignment_id, sender, escrow,"
                " deposited_at, consignment_digest, consignment_size, received_at, wire)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [_notification_row(f) for f in notes],
            )
            await conn.executemany("DELETE FROM spool WHERE seq = ?", [(f.seq,) for f in filings])

    async def notified(self, consignment_id: str) -> bool:
        """Whether the escrow's notification of the consignment arrived."""
        row = await self.fetchone(
            "SELECT 1 FROM notifications WHERE consignment_id = ?", (consignment_id,)
        )
        return row is not None

    # -- consignments arriving in chunks -------------------------------------

    async def begin_chunks(self, chunks: Sequence[ChunkRow], now: int) -> list[ChunkState]:
        """Where each verified chunk stands, in one transaction: "new" (write
        it; a first or failed consignment starts afresh), "held" (sent again:
        kept already; its message is dropped here) or "inconsistent" (it
        disagrees with the chunks before it)."""
        states: list[ChunkState] = []
        async with self._tx() as conn:
            for chunk in chunks:
                states.append(await _begin(conn, chunk, now))
        return states

    async def keep_chunks(self, chunks: Sequence[ChunkRow]) -> dict[str, int]:
        """List chunks whose data is written and synced, and drop their
        messages; returns how many chunks of each consignment are held."""
        async with self._tx() as conn:
            await conn.executemany(
                "INSERT OR IGNORE INTO chunks (consignment_id, idx, size) VALUES (?, ?, ?)",
                [(c.consignment_id, c.index, c.size) for c in chunks],
            )
            seqs = [(c.seq,) for c in chunks if c.seq is not None]
            await conn.executemany("DELETE FROM spool WHERE seq = ?", seqs)
            held: dict[str, int] = {}
            for cid in {c.consignment_id for c in chunks}:
                have = await conn.execute_fetchall(
                    "SELECT COUNT(*) FROM chunks WHERE consignment_id = ?", (cid,)
                )
                held[cid] = int(next(iter(have))[0])
        return held

    async def assembled(self, consignment_id: str, path: Path | None, now: int) -> None:
        """The chunks were assembled into `path`, or (None) did not add up to the
        signed digest: then the consignment failed, and a refusal says why."""
        async with self._tx() as conn:
            if path is not None:
                await conn.execute(
                    "UPDATE received SET state = 'complete', path = ?, completed_at = ?"
                    " WHERE consignment_id = ?",
                    (str(path), now, consignment_id),
                )
            else:
                reason = "the chunks do not add up to the signed digest"
                await conn.execute(
                    "UPDATE received SET state = 'failed', reason = ? WHERE consignment_id = ?",
                    (reason, consignment_id),
                )
                message = f"{consignment_id}: {reason}"
                kind = MessageType.CHUNK.value
                await _refused(conn, consignment_id, kind, "digest_mismatch", message, now)
            await conn.execute("DELETE FROM chunks WHERE consignment_id = ?", (consignment_id,))

    async def received_file(self, consignment_id: str) -> tuple[str, Path | None] | None:
        """(state, path) of a consignment arriving in chunks, once one arrived."""
        row = await self.fetchone(
            "SELECT state, path FROM received WHERE consignment_id = ?", (consignment_id,)
        )
        if row is None:
            return None
        return row["state"], Path(row["path"]) if row["path"] else None

    async def arrival(self, consignment_id: str) -> tuple[str, int, int] | None:
        """(state, chunks held, chunks in all) of a consignment arriving in chunks."""
        row = await self.fetchone(
            "SELECT state, chunk_count, (SELECT COUNT(*) FROM chunks c"
            " WHERE c.consignment_id = r.consignment_id) AS held"
            " FROM received r WHERE consignment_id = ?",
            (consignment_id,),
        )
        if row is None:
            return None
        held = row["chunk_count"] if row["state"] == "complete" else row["held"]
        return row["state"], held, row["chunk_count"]

    # -- reading -------------------------------------------------------------

    async def events(self, consignment_id: str | None = None) -> list[Event]:
        """Every verified escrow event kept so far (oldest first)."""
        sql = "SELECT * FROM events"
        params: tuple[str, ...] = ()
        if consignment_id is not None:
            sql += " WHERE consignment_id = ?"
            params = (consignment_id,)
        return [record(Event, r) for r in await self.fetchall(sql + " ORDER BY at, seq", params)]

    async def event_wires(self, consignment_id: str, kinds: Sequence[str]) -> list[bytes]:
        """The signed bytes of the kept events of these kinds (oldest first): a
        receipt or co-signature is verified again from them."""
        marks = ", ".join("?" for _ in kinds)
        rows = await self.fetchall(
            f"SELECT wire FROM events WHERE consignment_id = ? AND kind IN ({marks})"  # noqa: S608
            " ORDER BY at, seq",
            (consignment_id, *kinds),
        )
        return [bytes(r["wire"]) for r in rows]

    async def opened(self, consignment_id: str, now: int) -> Path | None:
        """Note that the consignment was opened; returns the file it arrived in
        (now the caller's to remove), if it arrived in the inbox."""
        async with self._tx() as conn:
            return await mark_opened(conn, consignment_id, now)

    async def collect(self, before: int | None, now: int) -> list[Path]:
        """Drop the files of failed consignments and, with `before`, of those
        complete but unopened since before then (their state becomes
        "removed"); returns the files, now the caller's to remove."""
        async with self._tx() as conn:
            rows = await conn.execute_fetchall(
                "SELECT consignment_id, path FROM received WHERE state = 'failed'"
                " OR (state = 'complete' AND ? IS NOT NULL AND completed_at < ?)",
                (before, before),
            )
            await conn.executemany(
                "UPDATE received SET state = CASE state WHEN 'complete' THEN 'removed'"
                " ELSE state END, path = NULL, opened_at = COALESCE(opened_at, ?)"
                " WHERE consignment_id = ?",
                [(now, r[0]) for r in rows],
            )
        return [Path(r[1]) for r in rows if r[1]]

    async def receiving(self) -> set[str]:
        """The consignments still arriving (their hidden files are in use)."""
        rows = await self.fetchall("SELECT consignment_id FROM received WHERE state = 'partial'")
        return {r["consignment_id"] for r in rows}

    async def inbox(self, *, everything: bool = True) -> InboxContents:
        """What arrived: everything, or (not `everything`) only what waits for
        you: consignments not opened yet, and the events and refusals not
        listed before (which are then marked listed)."""
        waiting = "" if everything else " WHERE opened_at IS NULL"
        notes = await self.fetchall(
            f"SELECT * FROM notifications{waiting} ORDER BY received_at"  # noqa: S608
        )
        unopened = "" if everything else " WHERE state IN ('partial', 'complete', 'failed')"
        received = await self.fetchall(
            f"SELECT * FROM received{unopened} ORDER BY first_at"  # noqa: S608
        )
        counts = {
            r["consignment_id"]: r["n"]
            for r in await self.fetchall(
                "SELECT consignment_id, COUNT(*) AS n FROM chunks GROUP BY consignment_id"
            )
        }
        unlisted = "" if everything else " WHERE listed = 0"
        refused = await self.fetchall(
            f"SELECT * FROM refused{unlisted} ORDER BY seq"  # noqa: S608
        )
        events = await self.fetchall(
            f"SELECT * FROM events{unlisted} ORDER BY at, seq"  # noqa: S608
        )
        if not everything:
            async with self._tx() as conn:
                await conn.execute("UPDATE events SET listed = 1 WHERE listed = 0")
                await conn.execute("UPDATE refused SET listed = 1 WHERE listed = 0")
        return InboxContents(
            notifications=tuple(record(Notification, r) for r in notes),
            received=tuple(_received(r, counts) for r in received),
            events=tuple(record(Event, r) for r in events),
            refused=tuple(record(Refusal, r) for r in refused),
        )


async def _begin(conn: aiosqlite.Connection, chunk: ChunkRow, now: int) -> ChunkState:
    meta = chunk.meta
    rows = await conn.execute_fetchall(
        "SELECT sender, consignment_digest, total_size, chunk_count, chunk_len, state"
        " FROM received WHERE consignment_id = ?",
        (chunk.consignment_id,),
    )
    row = next(iter(rows), None)
    # A consignment of an earlier release (no chunk length) starts afresh too.
    if row is None or row[5] == "failed" or (row[5] == "partial" and row[4] is None):
        await conn.execute("DELETE FROM chunks WHERE consignment_id = ?", (chunk.consignment_id,))
        await conn.execute(
            "INSERT OR REPLACE INTO received (consignment_id, sender, consignment_digest,"
            " total_size, chunk_count, chunk_len, state, first_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (chunk.consignment_id, *meta, "partial", now),
        )
    elif row[5] == "partial" and tuple(row[:5]) != meta:
        return "inconsistent"
    held = await conn.execute_fetchall(
        "SELECT 1 FROM chunks WHERE consignment_id = ? AND idx = ?",
        (chunk.consignment_id, chunk.index),
    )
    if (row is not None and row[5] not in ("partial", "failed")) or held:
        if chunk.seq is not None:
            await conn.execute("DELETE FROM spool WHERE seq = ?", (chunk.seq,))
        return "held"
    return "new"


async def _refused(
    conn: aiosqlite.Connection, wire_hash: str, kind: str, reason: str, message: str, now: int
) -> None:
    await conn.execute(
        "INSERT INTO refused (wire_hash, type, reason, message, received_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (wire_hash, kind, reason, message, now),
    )


def _received(row: sqlite3.Row, counts: dict[str, int]) -> Received:
    complete = row["state"] == "complete"
    return Received(
        consignment_id=row["consignment_id"],
        sender=row["sender"],
        consignment_digest=row["consignment_digest"],
        size=row["total_size"],
        chunks=row["chunk_count"],
        chunks_received=row["chunk_count"] if complete else counts.get(row["consignment_id"], 0),
        state=row["state"],
        path=Path(row["path"]) if row["path"] else None,
        reason=row["reason"],
    )


async def mark_opened(conn: aiosqlite.Connection, consignment_id: str, now: int) -> Path | None:
    """`InboxTables.opened` inside a transaction the caller holds."""
    rows = await conn.execute_fetchall(
        "SELECT path FROM received WHERE consignment_id = ? AND state = 'complete'",
        (consignment_id,),
    )
    row = next(iter(rows), None)
    await conn.execute(
        "UPDATE received SET state = 'opened', path = NULL, opened_at = ?"
        " WHERE consignment_id = ? AND state = 'complete'",
        (now, consignment_id),
    )
    await conn.execute(
        "UPDATE notifications SET opened_at = ? WHERE consignment_id = ? AND opened_at IS NULL",
        (now, consignment_id),
    )
    return Path(row[0]) if row is not None and row[0] else None

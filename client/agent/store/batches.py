"""The tables of batch operations and of the unattended receiver: `batch_items`
(each item stored with its id and body before its batch is sent, then its
result) and `handled` (each consignment `serve` opened, and whether its handler
took it, failed on it, or it was parked).

An item is stored before it is sent, so a run that resumes after a crash sends
the same item (same id, same body) and the escrow answers it from its record:
nothing is deposited or released twice. This module holds no protocol logic.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from client.agent.store.database import Database
from client.agent.store.inbox import mark_opened


@dataclass(frozen=True)
class BatchItemRow:
    """One stored item of a batch operation."""

    job: str
    key: str
    position: int
    consignment_id: str
    path: str | None
    item_id: str
    item_body: str
    expect: str | None
    reply_type: str | None
    reply_body: str | None


@dataclass(frozen=True)
class NewItem:
    key: str
    position: int
    consignment_id: str
    path: Path | None
    item_id: str
    item_body: str
    expect: str | None = None


@dataclass(frozen=True)
class Handled:
    """What became of a consignment the unattended receiver opened (`handled`)."""

    consignment_id: str
    state: str
    destination: Path | None
    now: int
    tries: int = 0
    reason: str | None = None
    #: JSON of what was opened; None keeps what was recorded before.
    opened: str | None = None


def _item(row: sqlite3.Row) -> BatchItemRow:
    return BatchItemRow(**{k: row[k] for k in BatchItemRow.__dataclass_fields__})


class BatchTables(Database):
    """`batch_items` and `handled`."""

    async def batch_items(self, job: str) -> list[BatchItemRow]:
        rows = await self.fetchall(
            "SELECT * FROM batch_items WHERE job = ? ORDER BY position", (job,)
        )
        return [_item(r) for r in rows]

    async def batch_item(self, job: str, key: str) -> BatchItemRow | None:
        row = await self.fetchone("SELECT * FROM batch_items WHERE job = ? AND key = ?", (job, key))
        return None if row is None else _item(row)

    async def batch_items_of(self, job: str, keys: Sequence[str]) -> dict[str, BatchItemRow]:
        """The stored items of `job` with these keys, by key (one query per 500)."""
        found: dict[str, BatchItemRow] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ", ".join("?" * len(part))
            rows = await self.fetchall(
                f"SELECT * FROM batch_items WHERE job = ? AND key IN ({marks})",  # noqa: S608
                (job, *part),
            )
            found.update((str(r["key"]), _item(r)) for r in rows)
        return found

    async def add_batch_items(self, job: str, items: Sequence[NewItem]) -> None:
        async with self._tx() as conn:
            await conn.executemany(
                "INSERT INTO batch_items (job, key, position, consignment_id, path, item_id,"
                " item_body, expect) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        job,
                        i.key,
                        i.position,
                        i.consignment_id,
                        None if i.path is None else str(i.path),
                        i.item_id,
                        i.item_body,
                        i.expect,
                    )
                    for i in items
                ],
            )

    async def batch_results(self, results: Sequence[tuple[str, str, str]], now: int) -> None:
        """Keep the (item id, reply type, reply body) of items answered."""
        async with self._tx() as conn:
            await conn.executemany(
                "UPDATE batch_items SET reply_type = ?, reply_body = ?, done_at = ?"
                " WHERE item_id = ?",
                [(type_, body, now, item_id) for item_id, type_, body in results],
            )

    async def forget_batch_item(self, item_id: str) -> None:
        """Drop an item whose result decided nothing, so it can be made anew."""
        async with self._tx() as conn:
            await conn.execute("DELETE FROM batch_items WHERE item_id = ?", (item_id,))

    async def events_after(self, seq: int) -> list[tuple[int, sqlite3.Row]]:
        """(seq, row) of every kept event after `seq`, in the order kept."""
        rows = await self.fetchall("SELECT * FROM events WHERE seq > ? ORDER BY seq", (seq,))
        return [(int(r["seq"]), r) for r in rows]

    # -- the unattended receiver ---------------------------------------------------

    async def complete_unhandled(self) -> list[tuple[str, Path | None]]:
        """(id, file) of every consignment that arrived whole and that `serve`
        has neither handed to its handler nor parked, oldest first. The file is
        None once opened (opening removes it): the handler still has to take it."""
        rows = await self.fetchall(
            "SELECT r.consignment_id, r.path FROM received AS r"
            " LEFT JOIN handled AS h ON h.consignment_id = r.consignment_id"
            " WHERE (h.state IS NULL AND r.state = 'complete' AND r.path IS NOT NULL)"
            " OR h.state = 'opened'"
            " ORDER BY r.completed_at, r.consignment_id"
        )
        return [
            (str(r["consignment_id"]), None if r["path"] is None else Path(r["path"])) for r in rows
        ]

    async def handling_of(self, consignment_ids: Sequence[str]) -> dict[str, sqlite3.Row]:
        """`handling` of each of these consignments that has a record, by id."""
        found: dict[str, sqlite3.Row] = {}
        for start in range(0, len(consignment_ids), 500):
            part = consignment_ids[start : start + 500]
            marks = ", ".join("?" * len(part))
            rows = await self.fetchall(
                f"SELECT * FROM handled WHERE consignment_id IN ({marks})",  # noqa: S608
                tuple(part),
            )
            found.update((str(r["consignment_id"]), r) for r in rows)
        return found

    async def handling(self, consignment_id: str) -> sqlite3.Row | None:
        return await self.fetchone(
            "SELECT * FROM handled WHERE consignment_id = ?", (consignment_id,)
        )

    async def set_handled(
        self,
        consignment_id: str,
        state: str,
        *,
        destination: Path | None,
        now: int,
        tries: int = 0,
        reason: str | None = None,
        opened: str | None = None,
    ) -> None:
        """Record what became of a consignment; `opened` (JSON of what was
        opened) is kept from before when not given."""
        await self.set_handled_many(
            [Handled(consignment_id, state, destination, now, tries, reason, opened)]
        )

    async def set_handled_many(self, records: Sequence[Handled]) -> None:
        """`set_handled` for each record, in one transaction."""
        async with self._tx() as conn:
            await _set_handled(conn, records)

    async def opened_and_handled(self, records: Sequence[Handled], now: int) -> list[Path]:
        """In one transaction: each consignment noted opened (`opened`) and its
        record kept (`set_handled`), so a consignment is never marked opened
        without the record that hands it to the handler. Returns the files they
        arrived in, now the caller's to remove."""
        arrived: list[Path] = []
        async with self._tx() as conn:
            for r in records:
                path = await mark_opened(conn, r.consignment_id, now)
                if path is not None:
                    arrived.append(path)
            await _set_handled(conn, records)
        return arrived

    async def parked(self) -> list[sqlite3.Row]:
        return await self.fetchall(
            "SELECT * FROM handled WHERE state = 'parked' ORDER BY updated_at"
        )


async def _set_handled(conn: aiosqlite.Connection, records: Sequence[Handled]) -> None:
    await conn.executemany(
        "INSERT INTO handled (consignment_id, state, destination, tries, reason,"
        " opened, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (consignment_id) DO UPDATE"
        " SET state = excluded.state, destination = excluded.destination,"
        " tries = excluded.tries, reason = excluded.reason,"
        " opened = COALESCE(excluded.opened, handled.opened),"
        " updated_at = excluded.updated_at",
        [
            (
                r.consignment_id,
                r.state,
                None if r.destination is None else str(r.destination),
                r.tries,
                r.reason,
                r.opened,
                r.now,
            )
            for r in records
        ],
    )

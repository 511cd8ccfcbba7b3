"""Reading what an agent kept: events, notifications, received consignments
and refusals, as the records of `client._agent_types`. Read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from client._agent_store import Store
from client._agent_types import Event, InboxContents, Notification, Received, Refusal


async def read_events(store: Store, consignment_id: str | None = None) -> list[Event]:
    """Every verified escrow event kept so far (oldest first)."""
    sql = "SELECT * FROM events"
    params: tuple[str, ...] = ()
    if consignment_id is not None:
        sql += " WHERE consignment_id = ?"
        params = (consignment_id,)
    rows = await store.fetchall(sql + " ORDER BY at, seq", params)
    return [
        Event(
            consignment_id=r["consignment_id"],
            kind=r["kind"],
            receiver=r["receiver"],
            reason=r["reason"],
            at=r["at"],
            received_at=r["received_at"],
        )
        for r in rows
    ]


async def read_inbox(store: Store) -> InboxContents:
    """What arrived so far: notifications, consignments, events, refusals."""
    notes = await store.fetchall("SELECT * FROM notifications ORDER BY received_at")
    received = await store.fetchall("SELECT * FROM received ORDER BY first_at")
    counts = {
        r["consignment_id"]: r["n"]
        for r in await store.fetchall(
            "SELECT consignment_id, COUNT(*) AS n FROM chunks GROUP BY consignment_id"
        )
    }
    refused = await store.fetchall("SELECT * FROM refused ORDER BY seq")
    return InboxContents(
        notifications=tuple(
            Notification(
                consignment_id=r["consignment_id"],
                sender=r["sender"],
                escrow=r["escrow"],
                deposited_at=r["deposited_at"],
                consignment_digest=r["consignment_digest"],
                consignment_size=r["consignment_size"],
                received_at=r["received_at"],
            )
            for r in notes
        ),
        received=tuple(_received(r, counts) for r in received),
        events=tuple(await read_events(store)),
        refused=tuple(
            Refusal(
                type=r["type"],
                reason=r["reason"],
                message=r["message"],
                received_at=r["received_at"],
            )
            for r in refused
        ),
    )


def _received(row: Any, counts: dict[str, int]) -> Received:
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

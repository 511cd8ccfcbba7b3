"""Workers' heartbeats (migration 5): each worker process writes one row, by its
random id, when it starts, at every sweep and when it stops: its host, pid,
when it started, when it was last seen and how many deliveries it handled.
The console reads them to show which workers are alive. A heartbeat is
bookkeeping, not a decision, so it is not in the transaction log. This module
must never decide whether a worker is alive (the console does, from its clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from escrow_worker.state.base import Row, Tx

__all__ = ["KEEP_SECONDS", "Heartbeat", "beat", "recent"]

#: Rows not seen for this long are deleted by the next heartbeat of any worker.
KEEP_SECONDS: Final = 7 * 86400


@dataclass(frozen=True)
class Heartbeat:
    worker_id: str
    host: str
    pid: int
    started_at: int
    last_seen: int
    #: Deliveries the worker settled since it started.
    handled: int
    #: When it stopped serving (None: it has not said it stopped).
    stopped_at: int | None = None


async def beat(tx: Tx, heartbeat: Heartbeat) -> None:
    """Write (or refresh) the worker's row; prune rows not seen for a week."""
    h = heartbeat
    await tx.execute(
        "INSERT INTO worker_heartbeats"
        " (worker_id, host, pid, started_at, last_seen, handled, stopped_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (worker_id) DO UPDATE SET last_seen = excluded.last_seen,"
        " handled = excluded.handled, stopped_at = excluded.stopped_at",
        (h.worker_id, h.host, h.pid, h.started_at, h.last_seen, h.handled, h.stopped_at),
    )
    await tx.execute(
        "DELETE FROM worker_heartbeats WHERE last_seen < ?", (h.last_seen - KEEP_SECONDS,)
    )


async def recent(tx: Tx, *, since: int, limit: int = 100) -> list[Heartbeat]:
    """Workers seen at or after `since`, the most recently seen first."""
    rows = await tx.fetchall(
        "SELECT worker_id, host, pid, started_at, last_seen, handled, stopped_at"
        " FROM worker_heartbeats WHERE last_seen >= ? ORDER BY last_seen DESC, worker_id LIMIT ?",
        (since, limit),
    )
    return [_heartbeat(r) for r in rows]


def _heartbeat(r: Row) -> Heartbeat:
    worker_id, host, pid, started, seen, handled, stopped = r
    return Heartbeat(
        str(worker_id), str(host), int(pid), int(started), int(seen), int(handled),
        None if stopped is None else int(stopped),
    )  # fmt: skip

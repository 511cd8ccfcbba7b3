"""Consignments an operator suspended: no key part is released for them until
the operator resumes them (`console_actions` says who did what). Plain async
functions on a `Tx`; the release handler asks `suspended`, the console writes.
This module must never decide anything else about a release.
"""

from __future__ import annotations

from dataclasses import dataclass

from escrow_worker.state.base import Tx

__all__ = ["Suspension", "resume", "suspend", "suspended"]


@dataclass(frozen=True)
class Suspension:
    consignment_id: str
    suspended_at: int
    suspended_by: str
    reason: str


async def suspended(tx: Tx, consignment_id: str) -> Suspension | None:
    row = await tx.fetchone(
        "SELECT consignment_id, suspended_at, suspended_by, reason FROM suspensions"
        " WHERE consignment_id = ?",
        (consignment_id,),
    )
    if row is None:
        return None
    return Suspension(str(row[0]), int(row[1]), str(row[2]), str(row[3]))


async def suspend(tx: Tx, consignment_id: str, *, by: str, reason: str, now: int) -> bool:
    """Suspend; False if it already was."""
    if await suspended(tx, consignment_id) is not None:
        return False
    await tx.execute(
        "INSERT INTO suspensions (consignment_id, suspended_at, suspended_by, reason)"
        " VALUES (?, ?, ?, ?)",
        (consignment_id, now, by, reason),
    )
    return True


async def resume(tx: Tx, consignment_id: str) -> bool:
    """Lift a suspension; False if there was none."""
    return (
        await tx.execute("DELETE FROM suspensions WHERE consignment_id = ?", (consignment_id,)) > 0
    )

"""`escrow_meta`: the escrow's small named values (its name, default validity
days, CRL period, policy mode, the current master key id), read and written
inside the caller's store job. This module must never hold a secret.
"""

from __future__ import annotations

from escrow_worker.state.base import Tx

__all__ = ["get_meta", "set_meta"]


async def get_meta(tx: Tx, key: str) -> str | None:
    rows = list(await tx.fetchall("SELECT value FROM escrow_meta WHERE key = ?", (key,)))
    return str(rows[0][0]) if rows else None


async def set_meta(tx: Tx, key: str, value: str) -> None:
    await tx.execute(
        "INSERT INTO escrow_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )

"""Rows of receipts and co-signatures (`attestations`, migration 2), and of the
expiry sweep: which receivers' windows closed unused, marked once.

Plain async functions on a `Tx`, like `records`; they never begin or commit.
An attestation is one row per consignment, kind and signer, so a second one
from the same party cannot be stored, whichever worker takes it. A receiver is
marked expired by a conditional update, in the transaction that puts its
`expired` event in the outbox: of two workers sweeping at once, only the one
whose update changed the row sends the event (on PostgreSQL the other's update
waits for the row and then finds it marked). This module must never verify a
signature nor decide anything (that is `handlers`).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.attest import StatementKind
from escrow_worker.state.base import Tx


@dataclass(frozen=True)
class AttestationRow:
    """A receipt or an agreement as the escrow stored it."""

    consignment_id: str
    kind: StatementKind
    signer: str
    #: The canonical JSON of the statement, exactly as signed.
    statement: str
    signature: bytes
    #: DER of the signing certificate it verified with.
    certificate: bytes
    request_id: str
    recorded_at: int


_COLUMNS = (
    "consignment_id, kind, signer, statement, signature, certificate, request_id, recorded_at"
)


async def add_attestation(tx: Tx, row: AttestationRow) -> bool:
    """Store it; False (and nothing changed) if this signer's of this kind is in already."""
    count = await tx.execute(
        f"INSERT INTO attestations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
        " ON CONFLICT (consignment_id, kind, signer) DO NOTHING",
        (
            row.consignment_id,
            row.kind.value,
            row.signer,
            row.statement,
            row.signature,
            row.certificate,
            row.request_id,
            row.recorded_at,
        ),
    )
    return count == 1


async def attestations(
    tx: Tx, consignment_id: str, kind: StatementKind | None = None
) -> list[AttestationRow]:
    """The consignment's receipts and agreements (of `kind` only, if given)."""
    where, params = "consignment_id = ?", [consignment_id]
    if kind is not None:
        where += " AND kind = ?"
        params.append(kind.value)
    rows = await tx.fetchall(
        f"SELECT {_COLUMNS} FROM attestations WHERE {where} ORDER BY recorded_at, signer",  # noqa: S608
        params,
    )
    return [_attestation(row) for row in rows]


def _attestation(row: tuple[object, ...]) -> AttestationRow:
    cid, kind, signer, statement, signature, cert, rid, at = row
    assert isinstance(signature, bytes | memoryview)
    assert isinstance(cert, bytes | memoryview)
    assert isinstance(at, int)
    return AttestationRow(
        str(cid), StatementKind(str(kind)), str(signer), str(statement),
        bytes(signature), bytes(cert), str(rid), at,
    )  # fmt: skip


async def signed_at(tx: Tx, consignment_id: str, kind: StatementKind) -> dict[str, int]:
    """Signer -> when the escrow recorded its receipt or agreement."""
    rows = await tx.fetchall(
        "SELECT signer, recorded_at FROM attestations WHERE consignment_id = ? AND kind = ?",
        (consignment_id, kind.value),
    )
    return {str(signer): int(at) for signer, at in rows}


async def has_receipt(tx: Tx, consignment_id: str, receiver: str) -> bool:
    found = await tx.fetchval(
        "SELECT 1 FROM attestations WHERE consignment_id = ? AND kind = ? AND signer = ?",
        (consignment_id, StatementKind.RECEIPT.value, receiver),
    )
    return found is not None


# -- the expiry sweep -------------------------------------------------------------


@dataclass(frozen=True)
class Closed:
    """A receiver whose window closed unused and was not reported yet."""

    consignment_id: str
    receiver: str
    sender: str
    closes_at: int
    #: The deposit's request: what the `expired` event was caused by.
    deposit_request_id: str


async def closed_unused(tx: Tx, *, now: int, limit: int) -> list[Closed]:
    """Receivers whose window closed before `now` (closes_at < now: a key is
    still released at exactly closes_at) with no release, not revoked, not
    reported: candidates, to be claimed one by one with `mark_expired`."""
    rows = await tx.fetchall(
        "SELECT r.consignment_id, r.receiver, d.sender, r.closes_at, d.request_id"
        " FROM deposit_receivers AS r JOIN deposits AS d ON d.consignment_id = r.consignment_id"
        " WHERE r.closes_at < ? AND r.expired_at IS NULL AND r.releases = 0"
        " AND r.revoked_at IS NULL ORDER BY r.closes_at, r.consignment_id, r.receiver LIMIT ?",
        (now, limit),
    )
    return [Closed(str(c), str(r), str(s), int(at), str(rid)) for c, r, s, at, rid in rows]


async def mark_expired(tx: Tx, consignment_id: str, receiver: str, *, now: int) -> bool:
    """Claim one receiver's expiry: True only for the transaction that marked it."""
    count = await tx.execute(
        "UPDATE deposit_receivers SET expired_at = ?"
        " WHERE consignment_id = ? AND receiver = ? AND expired_at IS NULL"
        " AND releases = 0 AND revoked_at IS NULL AND closes_at < ?",
        (now, consignment_id, receiver, now),
    )
    return count == 1

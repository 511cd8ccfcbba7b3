"""Rows of the escrow's work tables (`state.migrations`): deposits, receivers,
releases, answered requests and the outbox.

Plain async functions on a `Tx`; they never begin or commit, so a handler runs
them inside the one store job of its request. This module must never decrypt a part
(that is `state.masterkey`) nor decide anything (that is `handlers.decide`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from broker.deposit import Mode, Policy
from escrow_worker.state.base import Row, Tx


@dataclass(frozen=True)
class ReceiverRecord:
    """What the escrow holds about one receiver of one consignment."""

    name: str
    notified_at: int | None = None
    releases: int = 0
    revoked_at: int | None = None


@dataclass(frozen=True)
class DepositRow:
    consignment_id: str
    sender: str
    mode: Mode
    policy: Policy
    policy_digest: bytes
    part_key_id: str
    part: bytes
    consignment_digest: str
    plaintext_commitment: str
    consignment_size: int
    deposited_at: int

    def __repr__(self) -> str:  # never the (encrypted) part
        return f"<DepositRow {self.consignment_id} from {self.sender!r} ({self.mode})>"


@dataclass(frozen=True)
class StoredRequest:
    request_id: str
    signer: str
    signer_name: str
    type: str
    request_sha256: str
    decision: str
    reply_id: str
    reply_type: str
    reply: bytes


@dataclass(frozen=True)
class OutboxRow:
    id: int
    request_id: str
    destination: str
    message_id: str
    type: str
    body: bytes


# A stored policy never changes, and parsing is a pure function of its bytes:
# each worker parses a consignment's policy once, not at every request.
_parse_policy = functools.lru_cache(maxsize=256)(Policy.model_validate_json)

_DEPOSIT_COLUMNS = (
    "consignment_id, sender, mode, policy, policy_digest, part_key_id, part,"
    " consignment_digest, plaintext_commitment, consignment_size, deposited_at"
)


async def get_deposit(
    tx: Tx, consignment_id: str, *, for_update: bool = False
) -> DepositRow | None:
    """The deposit; with `for_update` its row is locked until the job ends (one
    co-signature at a time, so exactly one sees the set complete)."""
    lock = tx.for_update if for_update else ""
    rows = list(
        await tx.fetchall(
            f"SELECT {_DEPOSIT_COLUMNS} FROM deposits WHERE consignment_id = ?" + lock,  # noqa: S608
            (consignment_id,),
        )
    )
    if not rows:
        return None
    cid, sender, mode, policy, digest, key_id, part, cdigest, commitment, size, at = rows[0]
    return DepositRow(
        consignment_id=str(cid),
        sender=str(sender),
        mode=Mode(str(mode)),
        policy=_parse_policy(str(policy)),
        policy_digest=bytes(digest),
        part_key_id=str(key_id),
        part=bytes(part),
        consignment_digest=str(cdigest),
        plaintext_commitment=str(commitment),
        consignment_size=int(size),
        deposited_at=int(at),
    )


async def insert_deposit(
    tx: Tx,
    row: DepositRow,
    *,
    sealed_at: int,
    request_id: str,
    closes_at: Mapping[str, int | None] | None = None,
) -> None:
    """The deposit and a row per receiver, notified now; `closes_at` says when
    each receiver's window closes (absent: never)."""
    closes = closes_at or {}
    await tx.execute(
        f"INSERT INTO deposits ({_DEPOSIT_COLUMNS}, sealed_at, request_id)"  # noqa: S608
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.consignment_id,
            row.sender,
            row.mode.value,
            row.policy.canonical().decode("utf-8"),
            row.policy_digest,
            row.part_key_id,
            row.part,
            row.consignment_digest,
            row.plaintext_commitment,
            row.consignment_size,
            row.deposited_at,
            sealed_at,
            request_id,
        ),
    )
    await tx.executemany(
        "INSERT INTO deposit_receivers"
        " (consignment_id, receiver, position, notified_at, closes_at) VALUES (?, ?, ?, ?, ?)",
        [
            (row.consignment_id, spec.name, i, row.deposited_at, closes.get(spec.name))
            for i, spec in enumerate(row.policy.receivers)
        ],
    )


@dataclass(frozen=True)
class ReceiverRow:
    state: ReceiverRecord
    last_denied: str | None
    last_denied_at: int | None = None
    requested_at: int | None = None
    released_at: int | None = None
    closes_at: int | None = None
    expired_at: int | None = None


async def receivers(tx: Tx, consignment_id: str) -> list[ReceiverRow]:
    rows = await tx.fetchall(
        "SELECT r.receiver, r.notified_at, r.releases, r.revoked_at, r.last_denied,"
        " r.last_denied_at, r.requested_at, r.closes_at, r.expired_at,"
        " (SELECT MAX(released_at) FROM releases AS x"
        "   WHERE x.consignment_id = r.consignment_id AND x.receiver = r.receiver)"
        " FROM deposit_receivers AS r WHERE r.consignment_id = ? ORDER BY r.position",
        (consignment_id,),
    )
    return [_receiver_row(row) for row in rows]


def _receiver_row(row: Row) -> ReceiverRow:
    name, notified, releases, revoked, denied, denied_at, requested, closes, expired, released = row
    return ReceiverRow(
        ReceiverRecord(str(name), notified, int(releases), revoked),
        denied,
        last_denied_at=denied_at,
        requested_at=requested,
        released_at=None if released is None else int(released),
        closes_at=closes,
        expired_at=expired,
    )


async def receiver_state(
    tx: Tx, consignment_id: str, name: str, *, for_update: bool = False
) -> ReceiverRecord | None:
    """One receiver's state; with `for_update`, its row is locked until the job
    ends, so a decision that counts releases sees every committed one."""
    lock = tx.for_update if for_update else ""
    rows = list(
        await tx.fetchall(
            "SELECT notified_at, releases, revoked_at FROM deposit_receivers"  # noqa: S608
            " WHERE consignment_id = ? AND receiver = ?" + lock,
            (consignment_id, name),
        )
    )
    if not rows:
        return None
    notified, releases, revoked = rows[0]
    return ReceiverRecord(name, notified, int(releases), revoked)


async def record_release(
    tx: Tx, consignment_id: str, name: str, *, request_id: str, now: int
) -> None:
    """One release: the request id is the primary key, so it counts once, ever."""
    insert = (
        "INSERT INTO releases (request_id, consignment_id, receiver, released_at)"
        " VALUES (?, ?, ?, ?)"
    )
    update = (
        "UPDATE deposit_receivers SET releases = releases + 1, requested_at = ?"
        " WHERE consignment_id = ? AND receiver = ?"
    )
    if tx.dialect == "postgresql":  # one round trip for both
        await tx.execute(
            f"WITH released AS ({insert}) {update}",
            (request_id, consignment_id, name, now, now, consignment_id, name),
        )
        return
    await tx.execute(insert, (request_id, consignment_id, name, now))
    await tx.execute(update, (now, consignment_id, name))


async def record_denial(tx: Tx, consignment_id: str, name: str, reason: str, *, now: int) -> None:
    await tx.execute(
        "UPDATE deposit_receivers SET last_denied = ?, last_denied_at = ?, requested_at = ?"
        " WHERE consignment_id = ? AND receiver = ?",
        (reason, now, now, consignment_id, name),
    )


async def revoke(tx: Tx, consignment_id: str, names: Iterable[str], *, now: int) -> list[str]:
    """Revoke `names`; return those that were not revoked before."""
    newly: list[str] = []
    for name in names:
        count = await tx.execute(
            "UPDATE deposit_receivers SET revoked_at = ?"
            " WHERE consignment_id = ? AND receiver = ? AND revoked_at IS NULL",
            (now, consignment_id, name),
        )
        if count == 1:
            newly.append(name)
    return newly


_REQUEST_COLUMNS = (
    "request_id, signer, signer_name, type, request_sha256, decision, reply_id, reply_type, reply"
)


async def find_request(tx: Tx, request_id: str) -> StoredRequest | None:
    rows = list(
        await tx.fetchall(
            f"SELECT {_REQUEST_COLUMNS} FROM requests WHERE request_id = ?",  # noqa: S608
            (request_id,),
        )
    )
    if not rows:
        return None
    rid, signer, name, type_, sha, decision, reply_id, reply_type, reply = rows[0]
    return StoredRequest(
        str(rid), str(signer), str(name), str(type_), str(sha), str(decision),
        str(reply_id), str(reply_type), bytes(reply),
    )  # fmt: skip


async def insert_request(
    tx: Tx,
    stored: StoredRequest,
    *,
    consignment_id: str | None,
    now: int,
) -> None:
    await tx.execute(
        f"INSERT INTO requests ({_REQUEST_COLUMNS}, consignment_id, at)"  # noqa: S608
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            stored.request_id,
            stored.signer,
            stored.signer_name,
            stored.type,
            stored.request_sha256,
            stored.decision,
            stored.reply_id,
            stored.reply_type,
            stored.reply,
            consignment_id,
            now,
        ),
    )


async def add_outbox(
    tx: Tx,
    request_id: str,
    destination: str,
    message_id: str,
    type_: str,
    body: bytes,
    *,
    now: int,
) -> int:
    outbox_id = await tx.fetchval(
        "INSERT INTO outbox (request_id, destination, message_id, type, body, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (request_id, destination, message_id, type_, body, now),
    )
    assert isinstance(outbox_id, int)
    return outbox_id


_OUTBOX_COLUMNS = "id, request_id, destination, message_id, type, body"


def _outbox_row(row: Row) -> OutboxRow:
    id_, rid, dest, mid, type_, body = tuple(row)
    assert isinstance(id_, int)
    assert isinstance(body, bytes)
    return OutboxRow(id_, str(rid), str(dest), str(mid), str(type_), body)


async def unsent_for(tx: Tx, request_id: str) -> list[OutboxRow]:
    rows = await tx.fetchall(
        f"SELECT {_OUTBOX_COLUMNS} FROM outbox"  # noqa: S608
        " WHERE request_id = ? AND sent_at IS NULL ORDER BY id",
        (request_id,),
    )
    return [_outbox_row(r) for r in rows]


async def unsent_before(tx: Tx, before: int, limit: int) -> list[OutboxRow]:
    rows = await tx.fetchall(
        f"SELECT {_OUTBOX_COLUMNS} FROM outbox"  # noqa: S608
        " WHERE sent_at IS NULL AND created_at <= ? ORDER BY id LIMIT ?",
        (before, limit),
    )
    return [_outbox_row(r) for r in rows]


async def mark_sent(tx: Tx, ids: Sequence[int], *, now: int) -> None:
    if not ids:
        return
    await tx.executemany(
        "UPDATE outbox SET sent_at = ? WHERE id = ? AND sent_at IS NULL",
        [(now, i) for i in ids],
    )

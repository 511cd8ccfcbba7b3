"""Filing verified inbox messages in the agent's state: events, notifications,
chunks (each kept in a file of its own until the consignment is whole, then
assembled and checked against its signed digest), and the check that a reply is
about what its request asked. Each function moves one spool row to where it
belongs in one transaction. Callers verify first: nothing here checks a
signature.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from broker.messages import ChunkBody, EventBody, LookupReplyBody, MessageType, NotifyBody
from client._agent_store import Store
from client._chunks import MAX_CHUNK, Assembly
from client.errors import UntrustedMessage


async def file_event(
    store: Store, seq: int, wire_hash: str, wire: bytes, body: EventBody, received_at: int
) -> None:
    async with store.tx() as conn:
        await conn.execute(
            "INSERT OR IGNORE INTO events (wire_hash, consignment_id, kind, receiver, reason,"
            " at, received_at, wire) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                wire_hash,
                body.consignment_id,
                body.kind.value,
                body.receiver,
                body.reason,
                body.at,
                received_at,
                wire,
            ),
        )
        await conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))


async def file_notify(
    store: Store, escrow: str, seq: int, wire: bytes, body: NotifyBody, received_at: int
) -> None:
    if body.escrow != escrow:
        raise UntrustedMessage(
            "wrong_escrow", f"a notification names escrow {body.escrow!r}, not {escrow!r}"
        )
    async with store.tx() as conn:
        await conn.execute(
            "INSERT OR IGNORE INTO notifications (consignment_id, sender, escrow, deposited_at,"
            " consignment_digest, consignment_size, received_at, wire)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                body.consignment_id,
                body.sender,
                body.escrow,
                body.deposited_at,
                body.consignment_digest,
                body.consignment_size,
                received_at,
                wire,
            ),
        )
        await conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))


async def file_chunk(
    store: Store, assembly: Assembly, seq: int, sender: str, body: ChunkBody, received_at: int
) -> bool:
    """Keep a verified chunk's data in a file of its own, then drop the message;
    once every chunk is there, assemble and check the whole."""
    cid = body.consignment_id
    if body.index >= body.count or len(body.data) > MAX_CHUNK:
        raise UntrustedMessage(
            "malformed", f"chunk {body.index} of {body.count} of {cid} is out of bounds"
        )
    meta = (sender, body.consignment_digest, body.total_size, body.count)
    async with store.tx() as conn:
        rows = await conn.execute_fetchall(
            "SELECT sender, consignment_digest, total_size, chunk_count, state FROM received"
            " WHERE consignment_id = ?",
            (cid,),
        )
        row = next(iter(rows), None)
        if row is None or row[4] == "failed":
            await conn.execute("DELETE FROM chunks WHERE consignment_id = ?", (cid,))
            await conn.execute(
                "INSERT OR REPLACE INTO received (consignment_id, sender, consignment_digest,"
                " total_size, chunk_count, state, first_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (cid, *meta, "partial", received_at),
            )
        elif tuple(row[:4]) != meta and row[4] != "complete":
            raise UntrustedMessage(
                "inconsistent_chunk",
                f"chunk {body.index} of {cid} disagrees with the chunks before it",
            )
        held = await conn.execute_fetchall(
            "SELECT 1 FROM chunks WHERE consignment_id = ? AND idx = ?", (cid, body.index)
        )
        if (row is not None and row[4] == "complete") or held:  # sent again: kept already
            await conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))
            return False
    await asyncio.to_thread(assembly.keep, body.index, body.data)
    async with store.tx() as conn:
        await conn.execute(
            "INSERT OR IGNORE INTO chunks (consignment_id, idx, size) VALUES (?, ?, ?)",
            (cid, body.index, len(body.data)),
        )
        await conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))
        have = await conn.execute_fetchall(
            "SELECT COUNT(*) FROM chunks WHERE consignment_id = ?", (cid,)
        )
    return bool(next(iter(have))[0] == body.count)


async def assemble(
    store: Store, assembly: Assembly, count: int, size: int, digest: str, now: int
) -> None:
    """Write the chunks in order to one file, kept only if it checks."""
    cid = assembly.consignment_id
    kept = await asyncio.to_thread(assembly.assemble, count, size, digest)
    async with store.tx() as conn:
        if kept:
            await conn.execute(
                "UPDATE received SET state = 'complete', path = ?, completed_at = ?"
                " WHERE consignment_id = ?",
                (str(assembly.final), now, cid),
            )
        else:
            reason = "the chunks do not add up to the signed digest"
            await conn.execute(
                "UPDATE received SET state = 'failed', reason = ? WHERE consignment_id = ?",
                (reason, cid),
            )
            await conn.execute(
                "INSERT INTO refused (wire_hash, type, reason, message, received_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    cid,
                    MessageType.CHUNK.value,
                    "digest_mismatch",
                    f"{cid}: {reason}",
                    now,
                ),
            )
        await conn.execute("DELETE FROM chunks WHERE consignment_id = ?", (cid,))
    await asyncio.to_thread(assembly.clear)


def check_subject(request_type: MessageType, subject: str, body: BaseModel) -> None:
    """A reply must be about what its request asked: the name looked up, or the
    consignment (and for a key request the digest) it named. Checked before the
    reply is stored, so a forged or confused reply cannot stand in for the real one."""
    if isinstance(body, LookupReplyBody):
        if body.name != subject:
            raise UntrustedMessage(
                "unexpected_reply",
                f"a lookup reply for {body.name!r} answers a lookup of {subject!r}",
            )
        return
    cid = getattr(body, "consignment_id", None)
    if request_type is MessageType.LOOKUP or cid is None:
        return
    wanted = subject.split(":")[0]
    digest = getattr(body, "consignment_digest", None)
    if cid != wanted or (
        request_type is MessageType.KEY_REQUEST
        and digest is not None
        and digest != subject.split(":")[1]
    ):
        raise UntrustedMessage(
            "wrong_consignment",
            f"a {request_type} reply is about consignment {cid}, not {wanted} as asked",
        )

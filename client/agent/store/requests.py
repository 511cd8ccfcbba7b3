"""The agent's requests to the escrow and their replies, the directory cache the
lookup replies fill, and the consignments it sealed.

A request is stored (signed bytes, request id) before it is published, and only
the first verified reply that decides it is kept, so a retry re-sends the same
bytes and a reply is never decided twice; a reply that decided nothing is kept
apart (`nondecisions`) and settles nothing. This module must never decide whether a reply is
good: callers verify first.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.agent.store.database import Database, record
from client.agent.types import Sealed


@dataclass(frozen=True)
class DirectoryEntry:
    """A lookup's answer as cached: PEM certificates and the DER CRL."""

    name: str
    signing_certificate: str
    encryption_certificate: str
    crl: bytes


class RequestTables(Database):
    """`requests`, `directory` and `sent`."""

    async def add_request(
        self,
        *,
        request_id: str,
        type: str,
        subject: str,
        wire: bytes,
        issued_at: int,
        expires_at: int,
    ) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO requests (request_id, type, subject, wire, issued_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (request_id, type, subject, wire, issued_at, expires_at),
            )

    async def request(self, request_id: str) -> sqlite3.Row | None:
        """(type, subject, reply_type) of a request this agent made."""
        return await self.fetchone(
            "SELECT type, subject, reply_type FROM requests WHERE request_id = ?", (request_id,)
        )

    async def latest_request(self, type: str, subject: str) -> sqlite3.Row | None:
        """(request_id, wire, expires_at, reply_type) of the latest request of this
        type and subject."""
        return await self.fetchone(
            "SELECT request_id, wire, expires_at, reply_type FROM requests"
            " WHERE type = ? AND subject = ? ORDER BY rowid DESC LIMIT 1",
            (type, subject),
        )

    async def published(self, request_id: str) -> None:
        """Count one more publish of the request."""
        async with self._tx() as conn:
            await conn.execute(
                "UPDATE requests SET sent = sent + 1 WHERE request_id = ?", (request_id,)
            )

    async def reply_of(self, request_id: str) -> sqlite3.Row | None:
        """The request with its reply, once a reply is kept."""
        return await self.fetchone(
            "SELECT * FROM requests WHERE request_id = ? AND reply_type IS NOT NULL",
            (request_id,),
        )

    async def file_reply(
        self,
        seq: int,
        request_id: str,
        reply_type: str,
        reply_body: Any,
        wire: bytes,
        now: int,
        entry: DirectoryEntry | None,
    ) -> None:
        """Keep the first verified reply to a request, with the certificates a lookup
        reply carries, and drop its stored message; a later reply changes nothing."""
        async with self._tx() as conn:
            cursor = await conn.execute(
                "UPDATE requests SET reply_type = ?, reply_body = ?, reply_wire = ?,"
                " replied_at = ? WHERE request_id = ? AND reply_type IS NULL",
                (reply_type, json.dumps(reply_body), wire, now, request_id),
            )
            if cursor.rowcount and entry is not None:
                await conn.execute(
                    "INSERT OR REPLACE INTO directory (name, signing_certificate,"
                    " encryption_certificate, crl, fetched_at) VALUES (?, ?, ?, ?, ?)",
                    (
                        entry.name,
                        entry.signing_certificate,
                        entry.encryption_certificate,
                        entry.crl,
                        now,
                    ),
                )
            await conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))

    async def note_nondecision(
        self, seq: int, request_id: str, code: str, body: Any, wire: bytes, now: int
    ) -> None:
        """Keep a verified reply that decided nothing (the latest one per request)
        beside the request, which stays open, and drop its stored message."""
        async with self._tx() as conn:
            await conn.execute(
                "INSERT OR REPLACE INTO nondecisions (request_id, code, body, wire, received_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (request_id, code, json.dumps(body), wire, now),
            )
            await conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))

    async def nondecision(self, request_id: str) -> sqlite3.Row | None:
        """(code, body) of the last reply to the request that decided nothing."""
        return await self.fetchone(
            "SELECT code, body FROM nondecisions WHERE request_id = ?", (request_id,)
        )

    async def forget_nondecision(self, request_id: str) -> None:
        async with self._tx() as conn:
            await conn.execute("DELETE FROM nondecisions WHERE request_id = ?", (request_id,))

    async def directory(self) -> list[DirectoryEntry]:
        """Every cached lookup answer (not checked: check at use)."""
        return [record(DirectoryEntry, r) for r in await self.fetchall("SELECT * FROM directory")]

    async def record_sealed(self, sealed: Sealed, sealed_at: int) -> None:
        """Keep a consignment this agent sealed and deposited, with the escrow's receipt."""
        await self.record_sealed_many([(sealed, sealed_at)])

    async def record_sealed_many(self, kept: Sequence[tuple[Sealed, int]]) -> None:
        """`record_sealed` of each (consignment, when sealed), in one transaction."""
        if not kept:
            return
        async with self._tx() as conn:
            await conn.executemany(
                "INSERT OR REPLACE INTO sent (consignment_id, path, mode, receivers,"
                " consignment_digest, consignment_size, sealed_at, receipt, receipt_wire)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        sealed.consignment_id,
                        str(sealed.path),
                        sealed.mode.value,
                        _dumps(list(sealed.receivers)),
                        sealed.consignment_digest,
                        sealed.consignment_size,
                        sealed_at,
                        _dumps(
                            {
                                "request_id": sealed.receipt.request_id,
                                "deposited_at": sealed.receipt.deposited_at,
                            }
                        ),
                        sealed.receipt.signed,
                    )
                    for sealed, sealed_at in kept
                ],
            )

    async def sealed(self, consignment_id: str) -> tuple[Path, list[str]] | None:
        """(file, receivers) of a consignment this agent sealed."""
        row = await self.fetchone(
            "SELECT path, receivers FROM sent WHERE consignment_id = ?", (consignment_id,)
        )
        if row is None:
            return None
        return Path(row["path"]), [str(n) for n in json.loads(row["receivers"])]


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))

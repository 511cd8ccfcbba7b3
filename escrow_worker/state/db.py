"""The escrow's SQLite database (`escrow.db` in the escrow data directory).

`open_db` opens or creates it in WAL mode and applies `SCHEMA`, a list of
idempotent statements (`CREATE ... IF NOT EXISTS`), every time it opens, so a
later feature adds its tables by appending to the list. `transaction` wraps a
block in BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on a connection opened in
autocommit mode, so callers decide where a transaction starts and ends.

This module must never hold business rules; it must never let an aiosqlite or
sqlite3 error escape unwrapped from `open_db`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from broker.sqlite import open_sqlite
from escrow_worker.errors import EscrowError

DB_FILENAME = "escrow.db"

#: Identity: users, their groups, every certificate the CA issued, the current CRL.
IDENTITY_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS escrow_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS users (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('user', 'escrow')),
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS user_groups (
        name TEXT NOT NULL REFERENCES users(name),
        grp TEXT NOT NULL,
        PRIMARY KEY (name, grp)
    )""",
    """CREATE TABLE IF NOT EXISTS certificates (
        fingerprint TEXT PRIMARY KEY,
        serial TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL REFERENCES users(name),
        role TEXT NOT NULL CHECK (role IN ('signing', 'encryption')),
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        der BLOB NOT NULL,
        revoked_at INTEGER,
        revocation_reason TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS certificates_by_name ON certificates (name, role, not_after)",
    """CREATE TABLE IF NOT EXISTS crl (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        number INTEGER NOT NULL,
        der BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS policy_rules (
        from_group TEXT NOT NULL,
        to_group TEXT NOT NULL,
        PRIMARY KEY (from_group, to_group)
    )""",
)

#: Replay protection: every accepted request id and nonce, until it expires.
REPLAY_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS seen_requests (
        request_id TEXT PRIMARY KEY,
        nonce TEXT NOT NULL UNIQUE,
        signer TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        seen_at INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS seen_requests_by_expiry ON seen_requests (expires_at)",
)

#: The escrow's work: deposits, per-receiver state, releases, every answered
#: request with its signed reply, and the outbox of events still to publish.
#: `part` is the escrow part (K2, or the wrapped K3s) AES-256-GCM encrypted under
#: the master key `part_key_id` (`state.masterkey`): never a key in clear.
ESCROW_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS deposits (
        consignment_id TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('split', 'escrowed')),
        policy TEXT NOT NULL,
        policy_digest BLOB NOT NULL,
        part_key_id TEXT NOT NULL,
        part BLOB NOT NULL,
        consignment_digest TEXT NOT NULL,
        plaintext_commitment TEXT NOT NULL,
        consignment_size INTEGER NOT NULL,
        sealed_at INTEGER NOT NULL,
        deposited_at INTEGER NOT NULL,
        request_id TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS deposits_by_sender ON deposits (sender)",
    """CREATE TABLE IF NOT EXISTS deposit_receivers (
        consignment_id TEXT NOT NULL REFERENCES deposits(consignment_id),
        receiver TEXT NOT NULL,
        position INTEGER NOT NULL,
        notified_at INTEGER,
        releases INTEGER NOT NULL DEFAULT 0,
        revoked_at INTEGER,
        last_denied TEXT,
        last_denied_at INTEGER,
        PRIMARY KEY (consignment_id, receiver)
    )""",
    """CREATE TABLE IF NOT EXISTS releases (
        request_id TEXT PRIMARY KEY,
        consignment_id TEXT NOT NULL REFERENCES deposits(consignment_id),
        receiver TEXT NOT NULL,
        released_at INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT PRIMARY KEY,
        signer TEXT NOT NULL,
        signer_name TEXT NOT NULL,
        type TEXT NOT NULL,
        request_sha256 TEXT NOT NULL,
        consignment_id TEXT,
        decision TEXT NOT NULL,
        reply_id TEXT NOT NULL,
        reply_type TEXT NOT NULL,
        reply BLOB NOT NULL,
        at INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL REFERENCES requests(request_id),
        destination TEXT NOT NULL,
        message_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        body BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        sent_at INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_by_request ON outbox (request_id)",
    "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL",
)

#: Everything `open_db` applies, in order. Append new features' statements here.
SCHEMA: tuple[str, ...] = (*IDENTITY_SCHEMA, *REPLAY_SCHEMA, *ESCROW_SCHEMA)


async def open_db(path: Path, *, schema: Sequence[str] = SCHEMA) -> aiosqlite.Connection:
    """Open (creating if needed) the database at `path` (`broker.sqlite`: WAL,
    synchronous FULL, foreign keys, autocommit; use `transaction`) and apply
    `schema`. The caller closes it."""
    try:
        return await open_sqlite(path, schema)
    except OSError as exc:
        raise EscrowError(
            f"cannot open the escrow database {path}: {exc}",
            "check --escrow-dir and that the directory is writable",
        ) from exc
    except sqlite3.Error as exc:
        raise EscrowError(
            f"cannot prepare the escrow database {path}: {exc}",
            "is it an escrow database? restore it from backup if it is damaged",
        ) from exc


# -- escrow_meta: small named values (the escrow's name, policy mode, key ids) --


async def get_meta(conn: aiosqlite.Connection, key: str) -> str | None:
    rows = list(await conn.execute_fetchall("SELECT value FROM escrow_meta WHERE key = ?", (key,)))
    return str(rows[0][0]) if rows else None


async def set_meta(conn: aiosqlite.Connection, key: str, value: str) -> None:
    await conn.execute(
        "INSERT INTO escrow_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )

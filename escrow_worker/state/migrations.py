"""The escrow's schema, as versioned migrations applied in order on open.

Each migration is written once, in the SQL both backends speak, with three
type names filled in per backend so the schema is the same on both:

| placeholder | SQLite | PostgreSQL |
| --- | --- | --- |
| `{BLOB}` | BLOB | BYTEA |
| `{INT}` | INTEGER (64-bit) | BIGINT |
| `{SERIAL}` | INTEGER PRIMARY KEY AUTOINCREMENT | BIGSERIAL PRIMARY KEY |

`schema_migrations` records every version applied. Opening a database whose
version is newer than the newest migration here is refused (`SchemaTooNew`):
an older program must never write to a schema it does not know. A migration is
never edited once released; a change is a new migration appended to
`MIGRATIONS`.

This module holds DDL only: no queries, no business rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["LATEST", "MIGRATIONS", "Dialect", "Migration"]

Dialect = Literal["sqlite", "postgresql"]

_TYPES: Final[dict[str, dict[str, str]]] = {
    "sqlite": {
        "BLOB": "BLOB",
        "INT": "INTEGER",
        "SERIAL": "INTEGER PRIMARY KEY AUTOINCREMENT",
    },
    "postgresql": {"BLOB": "BYTEA", "INT": "BIGINT", "SERIAL": "BIGSERIAL PRIMARY KEY"},
}


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]

    def sql(self, dialect: Dialect) -> tuple[str, ...]:
        """The statements for one backend."""
        return tuple(s.format(**_TYPES[dialect]) for s in self.statements)


#: Applied before anything else, in the same transaction as the migrations.
BOOKKEEPING: Final = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version {INT} PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at {INT} NOT NULL
)"""

_INITIAL = Migration(
    1,
    "directory, CRL, trust policy, replay, deposits, releases, requests, outbox, secrets",
    (
        # -- identity: users, their groups, every certificate the CA issued, the CRL
        """CREATE TABLE IF NOT EXISTS escrow_meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS users (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('user', 'escrow')),
            created_at {INT} NOT NULL,
            revoked_at {INT}
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
            not_before {INT} NOT NULL,
            not_after {INT} NOT NULL,
            der {BLOB} NOT NULL,
            revoked_at {INT},
            revocation_reason TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS certificates_by_name ON certificates (name, role, not_after)",
        """CREATE TABLE IF NOT EXISTS crl (
            id {INT} PRIMARY KEY CHECK (id = 1),
            number {INT} NOT NULL,
            der {BLOB} NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS policy_rules (
            from_group TEXT NOT NULL,
            to_group TEXT NOT NULL,
            PRIMARY KEY (from_group, to_group)
        )""",
        # -- replay protection: every accepted request id and nonce, until it expires
        """CREATE TABLE IF NOT EXISTS seen_requests (
            request_id TEXT PRIMARY KEY,
            nonce TEXT NOT NULL UNIQUE,
            signer TEXT NOT NULL,
            expires_at {INT} NOT NULL,
            seen_at {INT} NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS seen_requests_by_expiry ON seen_requests (expires_at)",
        # -- the escrow's work. `part` is the escrow part (K2, or the wrapped K3s)
        # AES-256-GCM encrypted under the master key `part_key_id`: never in clear.
        """CREATE TABLE IF NOT EXISTS deposits (
            consignment_id TEXT PRIMARY KEY,
            sender TEXT NOT NULL,
            mode TEXT NOT NULL CHECK (mode IN ('split', 'escrowed')),
            policy TEXT NOT NULL,
            policy_digest {BLOB} NOT NULL,
            part_key_id TEXT NOT NULL,
            part {BLOB} NOT NULL,
            consignment_digest TEXT NOT NULL,
            plaintext_commitment TEXT NOT NULL,
            consignment_size {INT} NOT NULL,
            sealed_at {INT} NOT NULL,
            deposited_at {INT} NOT NULL,
            request_id TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS deposits_by_sender ON deposits (sender)",
        """CREATE TABLE IF NOT EXISTS deposit_receivers (
            consignment_id TEXT NOT NULL REFERENCES deposits(consignment_id),
            receiver TEXT NOT NULL,
            position {INT} NOT NULL,
            notified_at {INT},
            releases {INT} NOT NULL DEFAULT 0,
            revoked_at {INT},
            last_denied TEXT,
            last_denied_at {INT},
            PRIMARY KEY (consignment_id, receiver)
        )""",
        """CREATE TABLE IF NOT EXISTS releases (
            request_id TEXT PRIMARY KEY,
            consignment_id TEXT NOT NULL REFERENCES deposits(consignment_id),
            receiver TEXT NOT NULL,
            released_at {INT} NOT NULL
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
            reply {BLOB} NOT NULL,
            at {INT} NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS outbox (
            id {SERIAL},
            request_id TEXT NOT NULL REFERENCES requests(request_id),
            destination TEXT NOT NULL,
            message_id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            body {BLOB} NOT NULL,
            created_at {INT} NOT NULL,
            sent_at {INT}
        )""",
        "CREATE INDEX IF NOT EXISTS outbox_by_request ON outbox (request_id)",
        "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL",
        # -- the escrow's sealed key files, where the store holds them (PostgreSQL:
        # worker hosts share no file system). Sealed under the escrow passphrase.
        """CREATE TABLE IF NOT EXISTS escrow_files (
            name TEXT PRIMARY KEY,
            data {BLOB} NOT NULL,
            updated_at {INT} NOT NULL
        )""",
    ),
)

_CONTROL = Migration(
    2,
    "receipts and co-signatures, receivers' last request, window close and expiry",
    (
        # When the receiver last asked for the key part (released or refused).
        "ALTER TABLE deposit_receivers ADD COLUMN requested_at {INT}",
        # When its window closes (not_after, or ask-within from the notification,
        # whichever is first), computed at deposit; NULL: never. Deposits made
        # before this migration have NULL here and are never reported expired.
        "ALTER TABLE deposit_receivers ADD COLUMN closes_at {INT}",
        # When the sweep reported the window closed unused: set in the same
        # transaction as the `expired` event is put in the outbox, so it is sent
        # once, whichever worker sweeps.
        "ALTER TABLE deposit_receivers ADD COLUMN expired_at {INT}",
        """CREATE INDEX IF NOT EXISTS deposit_receivers_closing
            ON deposit_receivers (closes_at) WHERE expired_at IS NULL""",
        # Receipts (kind 'receipt', from receivers) and agreements (kind
        # 'agreement', from co-signers): one per signer, kind and consignment.
        # `statement` is the canonical JSON that `signature` covers;
        # `certificate` the DER of the signing certificate it verified with.
        """CREATE TABLE IF NOT EXISTS attestations (
            consignment_id TEXT NOT NULL REFERENCES deposits(consignment_id),
            kind TEXT NOT NULL CHECK (kind IN ('receipt', 'agreement')),
            signer TEXT NOT NULL,
            statement TEXT NOT NULL,
            signature {BLOB} NOT NULL,
            certificate {BLOB} NOT NULL,
            request_id TEXT NOT NULL,
            recorded_at {INT} NOT NULL,
            PRIMARY KEY (consignment_id, kind, signer)
        )""",
    ),
)

_LOG = Migration(
    3,
    "the transaction log: hash-chained entries and signed heads",
    (
        # One row per entry (docs/log.md). `entry` is the canonical JSON the hash
        # covers; `consignment`, `kind` and `at` repeat fields of it, for lookups
        # only (verification reads `entry`). `seq` as the primary key means two
        # appends can never both take the same place: the chain cannot fork.
        """CREATE TABLE IF NOT EXISTS log_entries (
            seq {INT} PRIMARY KEY,
            at {INT} NOT NULL,
            kind TEXT NOT NULL,
            consignment TEXT,
            entry {BLOB} NOT NULL,
            hash TEXT NOT NULL UNIQUE
        )""",
        "CREATE INDEX IF NOT EXISTS log_entries_by_consignment ON log_entries (consignment)",
        "CREATE INDEX IF NOT EXISTS log_entries_by_at ON log_entries (at)",
        # The parties each entry names, for `log show --party` and `history`.
        """CREATE TABLE IF NOT EXISTS log_parties (
            party TEXT NOT NULL,
            seq {INT} NOT NULL REFERENCES log_entries(seq),
            PRIMARY KEY (party, seq)
        )""",
        # Heads the escrow signed: the canonical head JSON and the signature.
        """CREATE TABLE IF NOT EXISTS log_heads (
            size {INT} NOT NULL,
            signed_at {INT} NOT NULL,
            head {BLOB} NOT NULL,
            signature {BLOB} NOT NULL,
            signer TEXT NOT NULL,
            PRIMARY KEY (size, signed_at)
        )""",
    ),
)

_CONSOLE = Migration(
    4,
    "the operators' web console: operators, sessions, actions, suspended consignments",
    (
        # Who may use the console: a registered party (its certificates revoked,
        # it may no longer), with an scrypt hash for the passphrase login and/or
        # the SHA-256 fingerprint of its TLS client certificate (ECDSA, clientAuth,
        # issued by the escrow CA for the console only).
        """CREATE TABLE IF NOT EXISTS console_operators (
            name TEXT PRIMARY KEY REFERENCES users(name),
            passphrase_hash TEXT,
            certificate_fingerprint TEXT UNIQUE,
            certificate_not_after {INT},
            created_at {INT} NOT NULL
        )""",
        # A session is known by the SHA-256 of its cookie, never the cookie itself.
        """CREATE TABLE IF NOT EXISTS console_sessions (
            token_sha256 TEXT PRIMARY KEY,
            operator TEXT NOT NULL REFERENCES console_operators(name),
            csrf TEXT NOT NULL,
            created_at {INT} NOT NULL,
            expires_at {INT} NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS console_sessions_by_expiry ON console_sessions (expires_at)",
        # Every action taken in the console, with the operator's name.
        """CREATE TABLE IF NOT EXISTS console_actions (
            id {SERIAL},
            at {INT} NOT NULL,
            operator TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL
        )""",
        # A suspended consignment releases nothing until an operator resumes it.
        """CREATE TABLE IF NOT EXISTS suspensions (
            consignment_id TEXT PRIMARY KEY REFERENCES deposits(consignment_id),
            suspended_at {INT} NOT NULL,
            suspended_by TEXT NOT NULL,
            reason TEXT NOT NULL
        )""",
    ),
)

_HEARTBEATS = Migration(
    5,
    "workers' heartbeats: which workers run, since when, last seen, requests handled",
    (
        # One row per worker process (its random id), written when it starts, at
        # every sweep and when it stops; the console calls a worker alive while
        # its row is recent. Rows a week old are pruned by the next heartbeat.
        """CREATE TABLE IF NOT EXISTS worker_heartbeats (
            worker_id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid {INT} NOT NULL,
            started_at {INT} NOT NULL,
            last_seen {INT} NOT NULL,
            handled {INT} NOT NULL,
            stopped_at {INT}
        )""",
        "CREATE INDEX IF NOT EXISTS worker_heartbeats_by_time ON worker_heartbeats (last_seen)",
    ),
)

#: Every migration, in the order applied. Append; never edit a released one.
MIGRATIONS: Final[tuple[Migration, ...]] = (_INITIAL, _CONTROL, _LOG, _CONSOLE, _HEARTBEATS)
LATEST: Final = MIGRATIONS[-1].version

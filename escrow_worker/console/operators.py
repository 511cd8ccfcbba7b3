"""Who may use the console, and their sessions.

An operator is a registered party of this escrow with a row in
`console_operators`: it logs in with its signing certificate over TLS, or with
a passphrase kept only as an scrypt hash. Every request re-checks, in the
store, that the operator is still registered and unrevoked, so revoking its
certificates (`consign escrow revoke`) ends its sessions at once. A session is
a random token; the store keeps its SHA-256 only, with a CSRF token and a hard
expiry. This module must never keep a passphrase or a session token in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from escrow_worker.errors import EscrowError
from escrow_worker.state.base import LogItem, Tx

__all__ = [
    "ConsoleError",
    "Operator",
    "Session",
    "add_operator",
    "check_login",
    "end_session",
    "hash_passphrase",
    "open_session",
    "operator_by_certificate",
    "record_action",
    "resolve_session",
]

#: scrypt cost of an operator's passphrase hash (2**15: about 0.1 s here).
DEFAULT_LOG_N = 15
_R, _P = 8, 1


class ConsoleError(EscrowError):
    """A console action or login that cannot be done as asked."""


@dataclass(frozen=True)
class Operator:
    name: str
    #: "passphrase" or "certificate": how this session was opened.
    via: str


@dataclass(frozen=True)
class Session:
    operator: Operator
    csrf: str
    expires_at: int
    #: The bearer token / cookie value; only the store's SHA-256 of it is kept.
    token: str = ""

    def __repr__(self) -> str:  # never the token
        return f"<Session {self.operator.name} until {self.expires_at}>"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_passphrase(passphrase: bytes, *, log_n: int = DEFAULT_LOG_N) -> str:
    """`scrypt$<log_n>$<salt>$<hash>` for the store."""
    salt = os.urandom(16)
    digest = Scrypt(salt=salt, length=32, n=2**log_n, r=_R, p=_P).derive(passphrase)
    return f"scrypt${log_n}${_b64(salt)}${_b64(digest)}"


def _passphrase_matches(stored: str, passphrase: bytes) -> bool:
    try:
        scheme, log_n, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        kdf = Scrypt(salt=_unb64(salt), length=32, n=2 ** int(log_n), r=_R, p=_P)
        kdf.verify(passphrase, _unb64(digest))
    except (InvalidKey, ValueError):
        return False
    return True


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def _active(tx: Tx, name: str) -> bool:
    """Registered, unrevoked, an operator, with an unrevoked signing certificate."""
    row = await tx.fetchone(
        "SELECT 1 FROM console_operators o JOIN users u ON u.name = o.name"
        " WHERE o.name = ? AND u.revoked_at IS NULL AND EXISTS (SELECT 1 FROM certificates c"
        " WHERE c.name = o.name AND c.role = 'signing' AND c.revoked_at IS NULL)",
        (name,),
    )
    return row is not None


async def add_operator(
    tx: Tx,
    name: str,
    passphrase_hash: str | None,
    *,
    now: int,
    certificate: tuple[str, int] | None = None,
) -> None:
    """Make registered user `name` an operator, or replace how it logs in: an
    scrypt `passphrase_hash` and/or a client `certificate` (fingerprint, not_after).
    """
    kind = await tx.fetchval("SELECT kind FROM users WHERE name = ?", (name,))
    revoked = await tx.fetchval("SELECT revoked_at FROM users WHERE name = ?", (name,))
    if kind != "user" or revoked is not None:
        raise ConsoleError(
            f"no registered, unrevoked user named {name!r}",
            "register it first with `consign escrow register` (or sign its CSR)",
        )
    if passphrase_hash is None and certificate is None:
        raise ConsoleError("an operator needs a passphrase or a client certificate")
    await tx.execute("DELETE FROM console_sessions WHERE operator = ?", (name,))
    await tx.execute("DELETE FROM console_operators WHERE name = ?", (name,))
    fingerprint, not_after = certificate if certificate is not None else (None, None)
    await tx.execute(
        "INSERT INTO console_operators (name, passphrase_hash, certificate_fingerprint,"
        " certificate_not_after, created_at) VALUES (?, ?, ?, ?, ?)",
        (name, passphrase_hash, fingerprint, not_after, now),
    )


async def check_login(tx: Tx, name: str, passphrase: bytes) -> Operator | None:
    """The operator if `name` and `passphrase` match an active operator, else None
    (the same None whatever was wrong: no oracle for guessing names)."""
    stored = await tx.fetchval(
        "SELECT passphrase_hash FROM console_operators WHERE name = ?", (name,)
    )
    if not isinstance(stored, str) or not _passphrase_matches(stored, passphrase):
        return None
    return Operator(name, "passphrase") if await _active(tx, name) else None


async def operator_by_certificate(tx: Tx, fingerprint: str, *, now: int) -> Operator | None:
    """The active operator whose console client certificate has this
    fingerprint (SHA-256 of the DER, hex) and has not expired, or None."""
    name = await tx.fetchval(
        "SELECT name FROM console_operators WHERE certificate_fingerprint = ?"
        " AND certificate_not_after >= ?",
        (fingerprint, now),
    )
    if name is None or not await _active(tx, str(name)):
        return None
    return Operator(str(name), "certificate")


async def open_session(tx: Tx, operator: Operator, *, now: int, lifetime: int) -> Session:
    await tx.execute("DELETE FROM console_sessions WHERE expires_at < ?", (now,))
    token, csrf = _b64(os.urandom(32)), _b64(os.urandom(32))
    await tx.execute(
        "INSERT INTO console_sessions (token_sha256, operator, csrf, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (_token_hash(f"{operator.via}:{token}"), operator.name, csrf, now, now + lifetime),
    )
    return Session(operator, csrf, now + lifetime, f"{operator.via}:{token}")


async def resolve_session(tx: Tx, token: str, *, now: int) -> Session | None:
    """The live session of an active operator this token opens, or None."""
    row = await tx.fetchone(
        "SELECT operator, csrf, expires_at FROM console_sessions WHERE token_sha256 = ?",
        (_token_hash(token),),
    )
    if row is None or int(row[2]) <= now or not await _active(tx, str(row[0])):
        return None
    via = token.split(":", 1)[0]
    return Session(Operator(str(row[0]), via), str(row[1]), int(row[2]))


async def end_session(tx: Tx, token: str) -> None:
    await tx.execute("DELETE FROM console_sessions WHERE token_sha256 = ?", (_token_hash(token),))


def csrf_matches(session: Session, offered: str | None) -> bool:
    return offered is not None and hmac.compare_digest(session.csrf, offered)


async def record_action(
    tx: Tx,
    operator: str,
    action: str,
    target: str,
    detail: str = "",
    *,
    now: int,
    consignment: str | None = None,
) -> None:
    """One line of the console's own record of who did what, and the same as a
    `console` entry of the transaction log (docs/log.md), in this transaction."""
    await tx.execute(
        "INSERT INTO console_actions (at, operator, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        (now, operator, action, target, detail),
    )
    data = {"operator": operator, "action": action, "target": target, "detail": detail}
    tx.log(LogItem("console", data, now, consignment=consignment, parties=(operator,)))

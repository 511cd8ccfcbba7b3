"""The directory: registered parties, their groups and every certificate issued,
in escrow.db. Functions take an open connection and run inside the caller's
transaction (they never BEGIN or COMMIT), so an operation and its CRL update
commit together. `lookup_encryption_certificate` is the handler a later message
endpoint serves. This module must never decide trust (that is `broker.pki.checks`) and
never hold a private key.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.canonical import b64, check_name
from broker.pki.profile import Role, fingerprint, load_crl, to_der
from escrow_worker.ca.cache import cached, directory_changed
from escrow_worker.errors import DirectoryError, EscrowError
from escrow_worker.state.base import LogItem, Row, Tx
from escrow_worker.state.meta import get_meta


def _ts(when: datetime) -> int:
    return int(when.timestamp())


def _dt(ts: int | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True)
class CertificateRecord:
    name: str
    role: Role
    fingerprint: str
    serial: int
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    certificate: x509.Certificate


@dataclass(frozen=True)
class UserRecord:
    name: str
    kind: str  # "user" or "escrow"
    created_at: datetime
    revoked_at: datetime | None
    groups: tuple[str, ...]
    certificates: tuple[CertificateRecord, ...] = field(default=())


@dataclass(frozen=True)
class DirectoryAnswer:
    """What a sender gets back for a name: the current encryption certificate and
    the current CRL, both DER. The sender must check them itself
    (`client.verify_encryption_certificate`): the answer proves nothing alone."""

    name: str
    certificate: bytes
    crl: bytes


async def has_escrow(tx: Tx) -> bool:
    """Whether this store already holds an escrow (`consign escrow init` ran)."""
    return await get_meta(tx, "name") is not None


async def escrow_name(tx: Tx) -> str:
    name = await get_meta(tx, "name")
    if name is None:
        raise EscrowError("the escrow database has no escrow name", "run `consign escrow init`")
    return name


async def add_party(
    tx: Tx, name: str, *, kind: str, groups: tuple[str, ...], now: datetime
) -> None:
    """Create the user row, or reopen a revoked one for a new registration."""
    check_name(name)
    for group in groups:
        check_name(group, "group")
    rows = list(await tx.fetchall("SELECT kind, revoked_at FROM users WHERE name = ?", (name,)))
    if rows and (rows[0][0] != "user" or rows[0][1] is None):
        raise DirectoryError(
            f"{name!r} is already registered",
            "revoke it first (consign escrow revoke) or choose another name",
        )
    if rows:
        await tx.execute("UPDATE users SET revoked_at = NULL WHERE name = ?", (name,))
        await tx.execute("DELETE FROM user_groups WHERE name = ?", (name,))
    else:
        await tx.execute(
            "INSERT INTO users (name, kind, created_at) VALUES (?, ?, ?)", (name, kind, _ts(now))
        )
    await tx.executemany(
        "INSERT INTO user_groups (name, grp) VALUES (?, ?)", [(name, g) for g in set(groups)]
    )
    data = {"name": name, "kind": kind, "groups": sorted(set(groups))}
    tx.log(LogItem("register", data, _ts(now), parties=(name,)))
    await directory_changed(tx)


async def store_certificate(tx: Tx, name: str, role: Role, cert: x509.Certificate) -> None:
    """Keep a certificate the CA issued (logged as `certificate`, with its DER)."""
    data = {
        "name": name,
        "role": role.value,
        "fingerprint": fingerprint(cert),
        "serial": format(cert.serial_number, "x"),
        "not_before": _ts(cert.not_valid_before_utc),
        "not_after": _ts(cert.not_valid_after_utc),
        "der": b64(to_der(cert)),
    }
    tx.log(LogItem("certificate", data, _ts(cert.not_valid_before_utc), parties=(name,)))
    await tx.execute(
        "INSERT INTO certificates (fingerprint, serial, name, role, not_before, not_after, der)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            fingerprint(cert),
            format(cert.serial_number, "x"),
            name,
            role.value,
            _ts(cert.not_valid_before_utc),
            _ts(cert.not_valid_after_utc),
            to_der(cert),
        ),
    )
    await directory_changed(tx)


_CERT_COLUMNS = "name, role, fingerprint, serial, not_before, not_after, revoked_at, der"


# Parsing is a pure function of the stored bytes: the same DER gives the same
# object, so a worker parses each certificate and each CRL once. The bytes are
# still read from the database at every use, so a new CRL takes effect at once.
_parse_certificate = functools.lru_cache(maxsize=1024)(x509.load_der_x509_certificate)
_parse_crl = functools.lru_cache(maxsize=8)(load_crl)


def _cert_record(row: Row) -> CertificateRecord:
    name, role, fp, serial, nb, na, revoked, der = tuple(row)
    assert isinstance(der, bytes)
    assert isinstance(nb, int)
    assert isinstance(na, int)
    return CertificateRecord(
        name=str(name),
        role=Role(str(role)),
        fingerprint=str(fp),
        serial=int(str(serial), 16),
        not_before=datetime.fromtimestamp(nb, UTC),
        not_after=datetime.fromtimestamp(na, UTC),
        revoked_at=_dt(revoked if isinstance(revoked, int) else None),
        certificate=_parse_certificate(der),
    )


async def certificate_by_fingerprint(tx: Tx, fp: str) -> CertificateRecord | None:
    return await cached(tx, ("certificate", fp), lambda tx: _certificate_by_fingerprint(tx, fp))


async def _certificate_by_fingerprint(tx: Tx, fp: str) -> CertificateRecord | None:
    rows = list(
        await tx.fetchall(
            f"SELECT {_CERT_COLUMNS} FROM certificates WHERE fingerprint = ?",  # noqa: S608
            (fp,),
        )
    )
    return _cert_record(rows[0]) if rows else None


async def get_user(tx: Tx, name: str) -> UserRecord | None:
    return await cached(tx, ("user", name), lambda tx: _get_user(tx, name))


async def _get_user(tx: Tx, name: str) -> UserRecord | None:
    rows = list(
        await tx.fetchall(
            "SELECT name, kind, created_at, revoked_at FROM users WHERE name = ?", (name,)
        )
    )
    if not rows:
        return None
    _, kind, created, revoked = rows[0]
    groups = await tx.fetchall("SELECT grp FROM user_groups WHERE name = ? ORDER BY grp", (name,))
    certs = await tx.fetchall(
        f"SELECT {_CERT_COLUMNS} FROM certificates WHERE name = ?"  # noqa: S608
        " ORDER BY not_before, role",
        (name,),
    )
    return UserRecord(
        name=name,
        kind=str(kind),
        created_at=datetime.fromtimestamp(int(created), UTC),
        revoked_at=_dt(revoked),
        groups=tuple(str(g[0]) for g in groups),
        certificates=tuple(_cert_record(r) for r in certs),
    )


async def list_users(tx: Tx) -> list[UserRecord]:
    names = await tx.fetchall("SELECT name FROM users ORDER BY name")
    users = [await get_user(tx, str(row[0])) for row in names]
    return [u for u in users if u is not None]


async def mark_revoked(tx: Tx, name: str, *, now: datetime, reason: str) -> list[CertificateRecord]:
    """Mark the user and all its unrevoked certificates revoked; return those."""
    user = await get_user(tx, name)
    if user is None:
        raise DirectoryError(f"no user named {name!r}", "see `consign escrow users`")
    if user.kind != "user":
        raise DirectoryError(
            f"{name!r} is the escrow itself and cannot be revoked here",
            "to retire an escrow, stop its workers and archive its directory",
        )
    if user.revoked_at is not None:
        raise DirectoryError(
            f"{name!r} is already revoked", "register the name again to give it new certificates"
        )
    await tx.execute("UPDATE users SET revoked_at = ? WHERE name = ?", (_ts(now), name))
    await tx.execute(
        "UPDATE certificates SET revoked_at = ?, revocation_reason = ?"
        " WHERE name = ? AND revoked_at IS NULL",
        (_ts(now), reason, name),
    )
    revoked = [c for c in user.certificates if c.revoked_at is None]
    data = {"name": name, "reason": reason, "certificates": [c.fingerprint for c in revoked]}
    tx.log(LogItem("revoke-party", data, _ts(now), parties=(name,)))
    await directory_changed(tx)
    return revoked


async def revoked_serials(tx: Tx) -> list[tuple[int, datetime]]:
    rows = await tx.fetchall(
        "SELECT serial, revoked_at FROM certificates WHERE revoked_at IS NOT NULL"
        " ORDER BY revoked_at, serial"
    )
    return [(int(str(s), 16), datetime.fromtimestamp(int(t), UTC)) for s, t in rows]


async def store_crl(tx: Tx, crl: x509.CertificateRevocationList, number: int) -> None:
    """Make `crl` the current one (logged as `crl`, with its DER)."""
    der = crl.public_bytes(serialization.Encoding.DER)
    await tx.execute(
        "INSERT INTO crl (id, number, der) VALUES (1, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET number = excluded.number, der = excluded.der",
        (number, der),
    )
    at = _ts(crl.last_update_utc) if crl.last_update_utc else int(time.time())
    data = {
        "number": number,
        "revoked": len(list(crl)),
        "sha256": hashlib.sha256(der).hexdigest(),
        "der": b64(der),
    }
    tx.log(LogItem("crl", data, at))
    await directory_changed(tx)


async def current_crl_number(tx: Tx) -> int:
    rows = list(await tx.fetchall("SELECT number FROM crl WHERE id = 1"))
    return int(rows[0][0]) if rows else 0


async def current_crl_der(tx: Tx) -> bytes:
    return await cached(tx, "crl", _current_crl_der)


async def _current_crl_der(tx: Tx) -> bytes:
    rows = list(await tx.fetchall("SELECT der FROM crl WHERE id = 1"))
    if not rows:
        raise EscrowError("the escrow has no CRL", "run `consign escrow crl`")
    der = rows[0][0]
    assert isinstance(der, bytes)
    return der


async def current_crl(tx: Tx) -> x509.CertificateRevocationList:
    """The CRL as stored now: consulted at the moment of every check."""
    return _parse_crl(await current_crl_der(tx))


def select_current(
    certificates: tuple[CertificateRecord, ...], role: Role, now: datetime
) -> CertificateRecord | None:
    """Pure: the newest unrevoked certificate of `role` valid at `now`."""
    usable = [
        c
        for c in certificates
        if c.role is role and c.revoked_at is None and c.not_before <= now <= c.not_after
    ]
    return max(usable, key=lambda c: c.not_before, default=None)


async def lookup_encryption_certificate(tx: Tx, name: str, *, now: datetime) -> DirectoryAnswer:
    """Handler: a receiver's current encryption certificate and the current CRL."""
    user = await get_user(tx, name)
    if user is None:
        raise DirectoryError(f"no user named {name!r} in the directory", "check the name")
    record = select_current(user.certificates, Role.ENCRYPTION, now)
    if record is None or user.revoked_at is not None:
        raise DirectoryError(
            f"{name!r} has no current encryption certificate",
            "the user was revoked or its certificate expired; ask the operator",
        )
    return DirectoryAnswer(name, to_der(record.certificate), await current_crl_der(tx))

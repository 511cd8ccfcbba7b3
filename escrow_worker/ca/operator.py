"""The operator's actions on an escrow: initialise it, register users (both ways),
revoke, publish the CRL. Each action runs in one database transaction together
with its CRL update, so the directory and the CRL never disagree. This module
must never ask for a passphrase itself (callers hand in an unsealed CA) and never
keep a user's private key after handing it to `save`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiosqlite
from cryptography import x509

from broker.canonical import check_name
from broker.pki.bundle import CertificateBundle
from broker.pki.csr import CertificateRequest
from broker.pki.identity import Identity, generate_keys
from broker.pki.profile import Role
from broker.pki.sealed import DEFAULT_LOG_N
from broker.sqlite import transaction
from escrow_worker.ca import directory
from escrow_worker.ca.authority import (
    CertificateAuthority,
    create_escrow_files,
    load_ca_certificate,
)
from escrow_worker.errors import DirectoryError, EscrowError
from escrow_worker.state.db import get_meta, open_db, set_meta
from escrow_worker.state.paths import EscrowPaths

DEFAULT_CA_DAYS = 3650
DEFAULT_DAYS = 365
DEFAULT_CRL_DAYS = 30


@dataclass(frozen=True)
class Escrow:
    """An open escrow: its data directory, database connection, name and CA
    certificate (the key stays sealed until an action needs it)."""

    paths: EscrowPaths
    conn: aiosqlite.Connection
    name: str
    ca_certificate: x509.Certificate


@asynccontextmanager
async def open_escrow(escrow_dir: Path) -> AsyncIterator[Escrow]:
    paths = EscrowPaths(escrow_dir)
    paths.require_initialised()
    ca_cert = load_ca_certificate(escrow_dir)
    conn = await open_db(paths.db)
    try:
        yield Escrow(paths, conn, await directory.escrow_name(conn), ca_cert)
    finally:
        await conn.close()


@dataclass(frozen=True)
class EscrowCertificates:
    """The escrow's public identity: its name, CA, signing and encryption certs."""

    name: str
    ca: x509.Certificate
    signing: x509.Certificate
    encryption: x509.Certificate


async def _refresh_crl(
    conn: aiosqlite.Connection, ca: CertificateAuthority, now: datetime
) -> x509.CertificateRevocationList:
    days = int(await get_meta(conn, "crl_days") or DEFAULT_CRL_DAYS)
    number = await directory.current_crl_number(conn) + 1
    crl = ca.sign_crl(await directory.revoked_serials(conn), number=number, now=now, days=days)
    await directory.store_crl(conn, crl, number)
    return crl


async def init_escrow(
    escrow_dir: Path,
    name: str,
    passphrase: bytes,
    *,
    now: datetime,
    ca_days: int = DEFAULT_CA_DAYS,
    days: int = DEFAULT_DAYS,
    crl_days: int = DEFAULT_CRL_DAYS,
    log_n: int = DEFAULT_LOG_N,
) -> EscrowCertificates:
    """Create the CA, the escrow's own keys and certificates, the database and the
    first CRL. Open the escrow afterwards with `open_escrow`."""
    check_name(name, "escrow name")
    paths = EscrowPaths(escrow_dir)
    if paths.db.exists():
        raise EscrowError(f"{escrow_dir} already holds an escrow", "choose an empty --escrow-dir")
    keys = create_escrow_files(
        escrow_dir, name, passphrase, now=now, ca_days=ca_days, days=days, log_n=log_n
    )
    conn = await open_db(paths.db)
    try:
        async with transaction(conn):
            await set_meta(conn, "name", name)
            await set_meta(conn, "days", str(days))
            await set_meta(conn, "crl_days", str(crl_days))
            await set_meta(conn, "policy", "open")
            await directory.add_party(conn, name, kind="escrow", groups=(), now=now)
            await directory.store_certificate(conn, name, Role.SIGNING, keys.signing_certificate)
            await directory.store_certificate(
                conn, name, Role.ENCRYPTION, keys.encryption_certificate
            )
            await _refresh_crl(conn, keys.ca, now)
    finally:
        await conn.close()
    return EscrowCertificates(
        name, keys.ca.certificate, keys.signing_certificate, keys.encryption_certificate
    )


async def _days(conn: aiosqlite.Connection, days: int | None) -> int:
    if days is not None:
        if days < 1:
            raise EscrowError("--days must be at least 1", "give a positive number of days")
        return days
    return int(await get_meta(conn, "days") or DEFAULT_DAYS)


async def register_user(
    escrow: Escrow,
    ca: CertificateAuthority,
    name: str,
    *,
    groups: tuple[str, ...],
    now: datetime,
    save: Callable[[Identity], None],
    days: int | None = None,
) -> Identity:
    """Way (a): generate the user's keys, certify them, and `save` the identity
    (e.g. write the identity file) inside the transaction, so a failed save
    registers nothing."""
    keys = generate_keys(name)
    async with transaction(escrow.conn):
        await directory.add_party(escrow.conn, name, kind="user", groups=groups, now=now)
        n = await _days(escrow.conn, days)
        signing = ca.issue(name, Role.SIGNING, keys.signing_key.public_key(), now=now, days=n)
        encryption = ca.issue(
            name, Role.ENCRYPTION, keys.encryption_key.public_key(), now=now, days=n
        )
        await directory.store_certificate(escrow.conn, name, Role.SIGNING, signing)
        await directory.store_certificate(escrow.conn, name, Role.ENCRYPTION, encryption)
        await _refresh_crl(escrow.conn, ca, now)
        identity = Identity(
            name, keys.signing_key, keys.encryption_key, signing, encryption, ca.certificate
        )
        save(identity)
    return identity


async def sign_request(
    escrow: Escrow,
    ca: CertificateAuthority,
    request: CertificateRequest,
    *,
    groups: tuple[str, ...],
    now: datetime,
    days: int | None = None,
    expected_name: str | None = None,
    save: Callable[[CertificateBundle], None] | None = None,
) -> CertificateBundle:
    """Way (b): certify the public keys of a checked request. The bundle for the
    user (certificates, CA, the CRL just published) is handed to `save` inside
    the transaction, so a failed save certifies nothing."""
    if expected_name is not None and request.name != expected_name:
        raise DirectoryError(
            f"the request asks for {request.name!r}, not {expected_name!r}",
            "check with the user which name it asked for",
        )
    async with transaction(escrow.conn):
        await directory.add_party(escrow.conn, request.name, kind="user", groups=groups, now=now)
        n = await _days(escrow.conn, days)
        signing = ca.issue(request.name, Role.SIGNING, request.signing_key, now=now, days=n)
        encryption = ca.issue(
            request.name, Role.ENCRYPTION, request.encryption_key, now=now, days=n
        )
        await directory.store_certificate(escrow.conn, request.name, Role.SIGNING, signing)
        await directory.store_certificate(escrow.conn, request.name, Role.ENCRYPTION, encryption)
        crl = await _refresh_crl(escrow.conn, ca, now)
        bundle = CertificateBundle(ca.certificate, signing, encryption, crl)
        if save is not None:
            save(bundle)
    return bundle


async def revoke_user(
    escrow: Escrow,
    ca: CertificateAuthority,
    name: str,
    *,
    now: datetime,
    reason: str = "unspecified",
) -> list[directory.CertificateRecord]:
    """Revoke every certificate of `name` and publish the new CRL, atomically."""
    async with transaction(escrow.conn):
        revoked = await directory.mark_revoked(escrow.conn, name, now=now, reason=reason)
        await _refresh_crl(escrow.conn, ca, now)
    return revoked


async def publish_crl(
    escrow: Escrow, ca: CertificateAuthority, *, now: datetime
) -> x509.CertificateRevocationList:
    """Sign a fresh CRL (new thisUpdate/nextUpdate) from the directory."""
    async with transaction(escrow.conn):
        return await _refresh_crl(escrow.conn, ca, now)

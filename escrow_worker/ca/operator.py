"""The operator's actions on an escrow: initialise it, register users (both ways),
revoke, publish the CRL. Each action runs in one store transaction together
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

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from broker.canonical import b64, check_name
from broker.pki.bundle import CertificateBundle
from broker.pki.csr import CertificateRequest
from broker.pki.identity import Identity, generate_keys
from broker.pki.profile import Role, fingerprint, to_der
from broker.pki.sealed import DEFAULT_LOG_N
from escrow_worker.ca import directory
from escrow_worker.ca.authority import (
    CertificateAuthority,
    create_escrow_files,
    load_ca_certificate,
)
from escrow_worker.errors import DirectoryError, EscrowError
from escrow_worker.state.base import LogItem, Store, Tx
from escrow_worker.state.location import Keystore, Location
from escrow_worker.state.meta import get_meta, set_meta

DEFAULT_CA_DAYS = 3650
DEFAULT_DAYS = 365
DEFAULT_CRL_DAYS = 30


@dataclass(frozen=True)
class Escrow:
    """An open escrow: where it is, its store and key files, its name and CA
    certificate (the CA key stays sealed until an action needs it)."""

    location: Location
    store: Store
    keystore: Keystore
    name: str
    ca_certificate: x509.Certificate


@asynccontextmanager
async def open_escrow(where: Location | Path | str) -> AsyncIterator[Escrow]:
    """Open the escrow at `where`: a directory (SQLite), a postgresql:// URL, or a
    `Location`. Raises `EscrowError` if there is none."""
    location = Location.of(where)
    location.require_initialised()
    store = await location.open_store()
    try:
        keystore = location.keystore(store)
        ca_cert = await load_ca_certificate(keystore)
        name = await store.run(directory.escrow_name)
        yield Escrow(location, store, keystore, name, ca_cert)
    finally:
        await store.close()


@dataclass(frozen=True)
class EscrowCertificates:
    """The escrow's public identity: its name, CA, signing and encryption certs."""

    name: str
    ca: x509.Certificate
    signing: x509.Certificate
    encryption: x509.Certificate


async def _refresh_crl(
    tx: Tx, ca: CertificateAuthority, now: datetime
) -> x509.CertificateRevocationList:
    days = int(await get_meta(tx, "crl_days") or DEFAULT_CRL_DAYS)
    number = await directory.current_crl_number(tx) + 1
    crl = ca.sign_crl(await directory.revoked_serials(tx), number=number, now=now, days=days)
    await directory.store_crl(tx, crl, number)
    return crl


async def init_escrow(
    where: Location | Path | str,
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
    first CRL at `where` (a directory, a postgresql:// URL or a `Location`).
    Open the escrow afterwards with `open_escrow`."""
    check_name(name, "escrow name")
    location = Location.of(where)
    if location.database is None:
        assert location.directory is not None
        if (location.directory / "escrow.db").exists():
            raise EscrowError(
                f"{location.directory} already holds an escrow", "choose an empty --escrow-dir"
            )
        try:
            location.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise EscrowError(
                f"cannot create {location.directory}: {exc.strerror or exc}",
                "check the path and permissions",
            ) from exc
    store = await location.open_store()
    try:
        if await store.run(directory.has_escrow):
            raise EscrowError(
                f"{location.describe()} already holds an escrow",
                "choose an empty --escrow-dir or another database",
            )
        keys = await create_escrow_files(
            location.keystore(store), name, passphrase, now=now, ca_days=ca_days, days=days,
            log_n=log_n,
        )  # fmt: skip

        async def first(tx: Tx) -> None:
            ca_cert = keys.ca.certificate
            data = {"name": name, "ca_fingerprint": fingerprint(ca_cert)}
            data["ca"] = b64(to_der(ca_cert))
            tx.log(LogItem("init", data, int(now.timestamp())))
            await set_meta(tx, "name", name)
            await set_meta(tx, "days", str(days))
            await set_meta(tx, "crl_days", str(crl_days))
            await set_meta(tx, "policy", "open")
            await directory.add_party(tx, name, kind="escrow", groups=(), now=now)
            await directory.store_certificate(tx, name, Role.SIGNING, keys.signing_certificate)
            await directory.store_certificate(
                tx, name, Role.ENCRYPTION, keys.encryption_certificate
            )
            await _refresh_crl(tx, keys.ca, now)

        await store.run(first)
    finally:
        await store.close()
    return EscrowCertificates(
        name, keys.ca.certificate, keys.signing_certificate, keys.encryption_certificate
    )


async def _days(tx: Tx, days: int | None) -> int:
    if days is not None:
        if days < 1:
            raise EscrowError("--days must be at least 1", "give a positive number of days")
        return days
    return int(await get_meta(tx, "days") or DEFAULT_DAYS)


async def _certify(
    tx: Tx,
    ca: CertificateAuthority,
    name: str,
    signing_key: Ed25519PublicKey,
    encryption_key: X25519PublicKey,
    *,
    groups: tuple[str, ...],
    now: datetime,
    days: int | None,
) -> tuple[x509.Certificate, x509.Certificate, x509.CertificateRevocationList]:
    """Add the user NAME and certify its two public keys, in the caller's
    transaction: the signing and encryption certificates and the fresh CRL."""
    await directory.add_party(tx, name, kind="user", groups=groups, now=now)
    n = await _days(tx, days)
    signing = ca.issue(name, Role.SIGNING, signing_key, now=now, days=n)
    encryption = ca.issue(name, Role.ENCRYPTION, encryption_key, now=now, days=n)
    await directory.store_certificate(tx, name, Role.SIGNING, signing)
    await directory.store_certificate(tx, name, Role.ENCRYPTION, encryption)
    crl = await _refresh_crl(tx, ca, now)
    return signing, encryption, crl


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

    async def job(tx: Tx) -> Identity:
        signing, encryption, _ = await _certify(
            tx,
            ca,
            name,
            keys.signing_key.public_key(),
            keys.encryption_key.public_key(),
            groups=groups,
            now=now,
            days=days,
        )
        identity = Identity(
            name, keys.signing_key, keys.encryption_key, signing, encryption, ca.certificate
        )
        save(identity)
        return identity

    return await escrow.store.run(job)


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

    async def job(tx: Tx) -> CertificateBundle:
        signing, encryption, crl = await _certify(
            tx,
            ca,
            request.name,
            request.signing_key,
            request.encryption_key,
            groups=groups,
            now=now,
            days=days,
        )
        bundle = CertificateBundle(ca.certificate, signing, encryption, crl)
        if save is not None:
            save(bundle)
        return bundle

    return await escrow.store.run(job)


async def revoke_user(
    escrow: Escrow,
    ca: CertificateAuthority,
    name: str,
    *,
    now: datetime,
    reason: str = "unspecified",
) -> list[directory.CertificateRecord]:
    """Revoke every certificate of `name` and publish the new CRL, atomically."""

    async def job(tx: Tx) -> list[directory.CertificateRecord]:
        revoked = await directory.mark_revoked(tx, name, now=now, reason=reason)
        await _refresh_crl(tx, ca, now)
        return revoked

    return await escrow.store.run(job)


async def publish_crl(
    escrow: Escrow, ca: CertificateAuthority, *, now: datetime
) -> x509.CertificateRevocationList:
    """Sign a fresh CRL (new thisUpdate/nextUpdate) from the directory."""

    async def job(tx: Tx) -> x509.CertificateRevocationList:
        return await _refresh_crl(tx, ca, now)

    return await escrow.store.run(job)

"""Shared helpers for the PKI tests: a fixed clock, throwaway CAs and certificates,
and a snapshot of the escrow database to prove a refusal changed nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker.pki.identity import Identity
from broker.pki.profile import Role, build_ca_certificate
from escrow_worker.ca.authority import CertificateAuthority
from escrow_worker.state.base import Tx

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
LOG_N = 14  # the cheapest scrypt cost the reader accepts: keeps tests fast
ESCROW_PASS = b"operator passphrase"
IDENTITY_PASS = b"identity passphrase"


def make_ca(
    name: str = "acme", now: datetime = NOW - timedelta(days=1), days: int = 3650
) -> CertificateAuthority:
    key = Ed25519PrivateKey.generate()
    return CertificateAuthority(key, build_ca_certificate(key, name, now, days))


def make_identity(
    ca: CertificateAuthority, name: str = "alice", now: datetime = NOW, days: int = 365
) -> Identity:
    signing, encryption = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
    return Identity(
        name,
        signing,
        encryption,
        ca.issue(name, Role.SIGNING, signing.public_key(), now=now, days=days),
        ca.issue(name, Role.ENCRYPTION, encryption.public_key(), now=now, days=days),
        ca.certificate,
    )


def empty_crl(ca: CertificateAuthority, now: datetime = NOW) -> x509.CertificateRevocationList:
    return ca.sign_crl([], number=1, now=now, days=30)


def crl_revoking(
    ca: CertificateAuthority, *certs: x509.Certificate, now: datetime = NOW
) -> x509.CertificateRevocationList:
    return ca.sign_crl([(c.serial_number, now) for c in certs], number=2, now=now, days=30)


async def snapshot(tx: Tx) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, to compare before and after a refusal (a store
    job: on SQLite or PostgreSQL alike)."""
    if tx.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    else:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    result: dict[str, list[tuple[object, ...]]] = {}
    for (name,) in await tx.fetchall(sql):
        if name == "worker_heartbeats":
            continue  # a running worker's liveness, written every sweep: not state
        rows = await tx.fetchall(f'SELECT * FROM "{name}" ORDER BY 1')  # noqa: S608
        result[str(name)] = sorted((tuple(r) for r in rows), key=repr)
    return result


def later(days: float) -> datetime:
    return NOW + timedelta(days=days)


def tree(path: Path) -> dict[str, bytes]:
    """File names and contents under `path`, to prove a refusal wrote nothing."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }

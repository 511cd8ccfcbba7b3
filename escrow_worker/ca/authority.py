"""The escrow operator's certificate authority and the escrow data directory.

Layout of the data directory (created by `init_escrow`, mode 0700):
  escrow.db                    the database (`state.db`): directory, CRL, policy, replay
  ca.pem / ca.key              CA certificate / sealed Ed25519 CA key
  signing.pem / signing.key    the escrow's own Ed25519 signing certificate / key
  encryption.pem / encryption.key   the escrow's own X25519 certificate / key
Private keys are sealed (`broker.pki.sealed`, kind "escrow-key") under the escrow passphrase.
This module must never write a private key unsealed, and never take a passphrase
from anywhere but its caller.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from broker.canonical import canonical_json, parse_canonical_json, raw_public_key, unb64
from broker.errors import BrokerError, CertificateRejected, IdentityFileError
from broker.files import read_bytes, write_bytes
from broker.pki import sealed as _sealed
from broker.pki.profile import (
    Role,
    build_ca_certificate,
    build_party_certificate,
    load_certificate,
    to_pem,
)
from escrow_worker.errors import EscrowError
from escrow_worker.state.paths import EscrowPaths

KEY_KIND = "escrow-key"
_RESTORE = "restore the escrow directory from backup"
_RAW = serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()


@dataclass(frozen=True)
class CertificateAuthority:
    """The CA key and certificate: issues certificates and signs CRLs."""

    key: Ed25519PrivateKey
    certificate: x509.Certificate

    def issue(
        self,
        name: str,
        role: Role,
        public_key: Ed25519PublicKey | X25519PublicKey,
        *,
        now: datetime,
        days: int,
        escrow: bool = False,
    ) -> x509.Certificate:
        return build_party_certificate(
            ca_key=self.key,
            ca_cert=self.certificate,
            name=name,
            role=role,
            public_key=public_key,
            now=now,
            days=days,
            escrow=escrow,
        )

    def sign_crl(
        self,
        revoked: list[tuple[int, datetime]],
        *,
        number: int,
        now: datetime,
        days: int,
    ) -> x509.CertificateRevocationList:
        ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now)
            .next_update(now + timedelta(days=days))
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value),
                critical=False,
            )
        )
        for serial, when in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(self.key, None)


def seal_private_key(
    key: Ed25519PrivateKey | X25519PrivateKey,
    passphrase: bytes,
    *,
    log_n: int = _sealed.DEFAULT_LOG_N,
) -> bytes:
    algorithm = "ed25519" if isinstance(key, Ed25519PrivateKey) else "x25519"
    raw = base64.b64encode(key.private_bytes(*_RAW)).decode("ascii")
    return _sealed.seal(
        canonical_json({"algorithm": algorithm, "key": raw}),
        passphrase,
        kind=KEY_KIND,
        log_n=log_n,
    )


def unseal_private_key(data: bytes, passphrase: bytes) -> Ed25519PrivateKey | X25519PrivateKey:
    plaintext = _sealed.unseal(data, passphrase, kind=KEY_KIND)
    try:
        content = parse_canonical_json(plaintext, "the escrow key")
        raw = unb64(content["key"], "key")
        if content["algorithm"] == "ed25519":
            return Ed25519PrivateKey.from_private_bytes(raw)
        if content["algorithm"] == "x25519":
            return X25519PrivateKey.from_private_bytes(raw)
    except (KeyError, TypeError, ValueError, BrokerError) as exc:
        raise IdentityFileError(
            "inconsistent", "escrow key file holds no valid key", _RESTORE
        ) from exc
    raise IdentityFileError(
        "inconsistent", "escrow key file holds an unknown kind of key", _RESTORE
    )


def read_certificate(path: Path) -> x509.Certificate:
    return load_certificate(read_bytes(path, "certificate"))


def load_ca(escrow_dir: Path, passphrase: bytes) -> CertificateAuthority:
    """Unseal the CA key with the escrow passphrase."""
    paths = EscrowPaths(escrow_dir)
    paths.require_initialised()
    cert = read_certificate(paths.cert("ca"))
    key = unseal_private_key(read_bytes(paths.key("ca"), "CA key"), passphrase)
    pub = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ca_pub = cert.public_key()
    if (
        not isinstance(key, Ed25519PrivateKey)
        or not isinstance(ca_pub, Ed25519PublicKey)
        or (key.public_key().public_bytes(*pub) != ca_pub.public_bytes(*pub))
    ):
        raise EscrowError("the CA key does not match ca.pem", "restore the escrow directory")
    return CertificateAuthority(key, cert)


def load_escrow_key(
    escrow_dir: Path, role: Role, passphrase: bytes
) -> Ed25519PrivateKey | X25519PrivateKey:
    """The escrow's own signing or encryption private key (for receipts, releases)."""
    paths = EscrowPaths(escrow_dir)
    paths.require_initialised()
    return unseal_private_key(read_bytes(paths.key(role.value), "escrow key"), passphrase)


@dataclass(frozen=True)
class EscrowKeys:
    ca: CertificateAuthority
    signing_certificate: x509.Certificate
    encryption_certificate: x509.Certificate


def create_escrow_files(
    escrow_dir: Path,
    name: str,
    passphrase: bytes,
    *,
    now: datetime,
    ca_days: int,
    days: int,
    log_n: int = _sealed.DEFAULT_LOG_N,
) -> EscrowKeys:
    """Generate the CA and the escrow's own keys and write them (refusing to
    overwrite anything). The database is the caller's (`ca.operator.init_escrow`)."""
    paths = EscrowPaths(escrow_dir)
    for stem in ("ca", "signing", "encryption"):
        if paths.cert(stem).exists() or paths.key(stem).exists():
            raise EscrowError(
                f"{escrow_dir} already holds an escrow", "choose an empty --escrow-dir"
            )
    try:
        escrow_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise EscrowError(
            f"cannot create {escrow_dir}: {exc.strerror or exc}", "check the path and permissions"
        ) from exc
    ca_key = Ed25519PrivateKey.generate()
    ca = CertificateAuthority(ca_key, build_ca_certificate(ca_key, name, now, ca_days))
    signing_key, encryption_key = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
    signing = ca.issue(
        name, Role.SIGNING, signing_key.public_key(), now=now, days=days, escrow=True
    )
    encryption = ca.issue(
        name, Role.ENCRYPTION, encryption_key.public_key(), now=now, days=days, escrow=True
    )
    for stem, key, cert in (
        ("ca", ca_key, ca.certificate),
        ("signing", signing_key, signing),
        ("encryption", encryption_key, encryption),
    ):
        write_bytes(paths.key(stem), seal_private_key(key, passphrase, log_n=log_n), private=True)
        write_bytes(paths.cert(stem), to_pem(cert).encode("ascii"), private=False)
    return EscrowKeys(ca, signing, encryption)


def load_ca_certificate(escrow_dir: Path) -> x509.Certificate:
    paths = EscrowPaths(escrow_dir)
    paths.require_initialised()
    try:
        return read_certificate(paths.cert("ca"))
    except CertificateRejected as exc:
        raise EscrowError(f"{paths.cert('ca')} is damaged", "restore the escrow directory") from exc


@dataclass(frozen=True)
class ServiceKeys:
    """What a worker signs and opens with: the escrow's own keys and certificates,
    and the CA certificate it checks requesters against."""

    ca_certificate: x509.Certificate
    signing_key: Ed25519PrivateKey
    signing_certificate: x509.Certificate
    encryption_key: X25519PrivateKey
    encryption_certificate: x509.Certificate

    def __repr__(self) -> str:  # never a key
        return "<ServiceKeys>"


async def load_service_keys(escrow_dir: Path, passphrase: bytes) -> ServiceKeys:
    """Unseal the escrow's signing and encryption keys (in parallel: each costs an
    scrypt) and check that they match their certificates."""
    paths = EscrowPaths(escrow_dir)
    paths.require_initialised()
    ca = read_certificate(paths.cert("ca"))
    signing_certificate = read_certificate(paths.cert("signing"))
    encryption_certificate = read_certificate(paths.cert("encryption"))
    signing_key, encryption_key = await asyncio.gather(
        asyncio.to_thread(load_escrow_key, escrow_dir, Role.SIGNING, passphrase),
        asyncio.to_thread(load_escrow_key, escrow_dir, Role.ENCRYPTION, passphrase),
    )
    if not isinstance(signing_key, Ed25519PrivateKey) or not isinstance(
        encryption_key, X25519PrivateKey
    ):
        raise EscrowError("the escrow's key files hold the wrong kinds of key", "restore them")
    if raw_public_key(signing_key.public_key()) != raw_public_key(
        signing_certificate.public_key()
    ) or raw_public_key(encryption_key.public_key()) != raw_public_key(
        encryption_certificate.public_key()
    ):
        raise EscrowError("the escrow's keys do not match its certificates", _RESTORE)
    return ServiceKeys(ca, signing_key, signing_certificate, encryption_key, encryption_certificate)

"""The escrow operator's certificate authority and the escrow's own keys.

`create_escrow_files` makes the CA and the escrow's signing and encryption keys
and certificates and writes them to the escrow's `Keystore` (`state.location`:
the escrow directory, or the store on PostgreSQL): `ca.pem`/`ca.key`,
`signing.pem`/`signing.key`, `encryption.pem`/`encryption.key`. Private keys are
sealed (`broker.pki.sealed`, kind "escrow-key") under the escrow passphrase.
This module must never write a private key unsealed, and never take a passphrase
from anywhere but its caller.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from broker.canonical import b64, canonical_json, parse_canonical_json, raw_public_key, unb64
from broker.errors import BrokerError, CertificateRejected, IdentityFileError
from broker.pki import sealed as _sealed
from broker.pki.profile import (
    Role,
    build_ca_certificate,
    build_party_certificate,
    load_certificate,
    to_pem,
)
from escrow_worker.errors import EscrowError
from escrow_worker.state.location import Keystore

if TYPE_CHECKING:
    from escrow_worker.ca.operator import Escrow

KEY_KIND = "escrow-key"
_RESTORE = "restore the escrow (directory or database) from backup"
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
    raw = b64(key.private_bytes(*_RAW))
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


async def _certificate(keystore: Keystore, stem: str) -> x509.Certificate:
    try:
        return load_certificate(await keystore.require(f"{stem}.pem"))
    except CertificateRejected as exc:
        raise EscrowError(f"the escrow's {stem}.pem is damaged", _RESTORE) from exc


async def _private_key(
    keystore: Keystore, stem: str, passphrase: bytes
) -> Ed25519PrivateKey | X25519PrivateKey:
    data = await keystore.require(f"{stem}.key")
    return await asyncio.to_thread(unseal_private_key, data, passphrase)


async def load_ca(where: Keystore | Escrow, passphrase: bytes) -> CertificateAuthority:
    """Unseal the CA key with the escrow passphrase (an scrypt: about 0.35 s)."""
    keystore = where if isinstance(where, Keystore) else where.keystore
    cert = await _certificate(keystore, "ca")
    key = await _private_key(keystore, "ca", passphrase)
    ca_pub = cert.public_key()
    if (
        not isinstance(key, Ed25519PrivateKey)
        or not isinstance(ca_pub, Ed25519PublicKey)
        or raw_public_key(key.public_key()) != raw_public_key(ca_pub)
    ):
        raise EscrowError("the CA key does not match the CA certificate", _RESTORE)
    return CertificateAuthority(key, cert)


@dataclass(frozen=True)
class EscrowKeys:
    ca: CertificateAuthority
    signing_certificate: x509.Certificate
    encryption_certificate: x509.Certificate


async def create_escrow_files(
    keystore: Keystore,
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
    for stem in ("ca", "signing", "encryption"):
        if await keystore.read(f"{stem}.pem") is not None:
            raise EscrowError(
                f"{keystore.where} already holds an escrow", "choose an empty --escrow-dir"
            )
    ca_key = Ed25519PrivateKey.generate()
    ca = CertificateAuthority(ca_key, build_ca_certificate(ca_key, name, now, ca_days))
    signing_key, encryption_key = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
    signing = ca.issue(
        name, Role.SIGNING, signing_key.public_key(), now=now, days=days, escrow=True
    )
    encryption = ca.issue(
        name, Role.ENCRYPTION, encryption_key.public_key(), now=now, days=days, escrow=True
    )
    sealed = await asyncio.gather(
        *(
            asyncio.to_thread(seal_private_key, key, passphrase, log_n=log_n)
            for key in (ca_key, signing_key, encryption_key)
        )
    )
    for stem, data, cert in zip(
        ("ca", "signing", "encryption"), sealed, (ca.certificate, signing, encryption), strict=True
    ):
        await keystore.write(f"{stem}.key", data)
        await keystore.write(f"{stem}.pem", to_pem(cert).encode("ascii"))
    return EscrowKeys(ca, signing, encryption)


async def load_ca_certificate(keystore: Keystore) -> x509.Certificate:
    return await _certificate(keystore, "ca")


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


async def load_service_keys(keystore: Keystore, passphrase: bytes) -> ServiceKeys:
    """Unseal the escrow's signing and encryption keys (in parallel: each costs an
    scrypt) and check that they match their certificates."""
    ca = await _certificate(keystore, "ca")
    signing_certificate = await _certificate(keystore, "signing")
    encryption_certificate = await _certificate(keystore, "encryption")
    signing_key, encryption_key = await asyncio.gather(
        _private_key(keystore, "signing", passphrase),
        _private_key(keystore, "encryption", passphrase),
    )
    if not isinstance(signing_key, Ed25519PrivateKey) or not isinstance(
        encryption_key, X25519PrivateKey
    ):
        raise EscrowError("the escrow's key files hold the wrong kinds of key", _RESTORE)
    if raw_public_key(signing_key.public_key()) != raw_public_key(
        signing_certificate.public_key()
    ) or raw_public_key(encryption_key.public_key()) != raw_public_key(
        encryption_certificate.public_key()
    ):
        raise EscrowError("the escrow's keys do not match its certificates", _RESTORE)
    return ServiceKeys(ca, signing_key, signing_certificate, encryption_key, encryption_certificate)

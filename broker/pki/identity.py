"""Identity files: a party's private keys, and once issued its certificates and the
CA certificate, in one passphrase-sealed file (see `broker.pki.sealed`).

The operator writes a complete one on `consign escrow register`; a user writes a
pending one (keys only) on `consign id create` and completes it on `consign id
import`. Contents (canonical JSON inside the ciphertext): {"certificates": null
or {"ca","encryption","signing"} as base64 DER, "encryption_key","signing_key" as
base64 raw 32-byte private keys, "name"}. Loading checks that the keys and
certificates belong together and that the certificates come from the CA in the
file; whether they are valid *now* is for the caller (`broker.pki.checks`). This module
must never write a private key anywhere but a sealed file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker.canonical import b64, canonical_json, check_name, parse_canonical_json, unb64
from broker.errors import BrokerError, IdentityFileError
from broker.files import read_bytes, write_bytes
from broker.pki import sealed as _sealed
from broker.pki.profile import common_name, fingerprint, to_der

__all__ = [
    "Identity",
    "IdentityKeys",
    "dump_identity",
    "generate_keys",
    "load_identity_bytes",
    "read_identity_file",
    "write_identity_file",
]

KIND = "identity"
_RAW = serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()


@dataclass(frozen=True)
class IdentityKeys:
    """A party's two private keys, before the operator has certified them."""

    name: str
    signing_key: Ed25519PrivateKey
    encryption_key: X25519PrivateKey


@dataclass(frozen=True)
class Identity:
    """A registered party: keys, its signing and encryption certificates, and the
    certificate of the escrow's CA that issued them (the user's trust anchor)."""

    name: str
    signing_key: Ed25519PrivateKey
    encryption_key: X25519PrivateKey
    signing_certificate: x509.Certificate
    encryption_certificate: x509.Certificate
    ca_certificate: x509.Certificate

    @property
    def signer(self) -> str:
        """The fingerprint that names the signing certificate in envelopes."""
        return fingerprint(self.signing_certificate)


def generate_keys(name: str) -> IdentityKeys:
    return IdentityKeys(check_name(name), Ed25519PrivateKey.generate(), X25519PrivateKey.generate())


def dump_identity(
    identity: Identity | IdentityKeys, passphrase: bytes, *, log_n: int = _sealed.DEFAULT_LOG_N
) -> bytes:
    content: dict[str, Any] = {
        "name": identity.name,
        "signing_key": b64(identity.signing_key.private_bytes(*_RAW)),
        "encryption_key": b64(identity.encryption_key.private_bytes(*_RAW)),
        "certificates": None,
    }
    if isinstance(identity, Identity):
        content["certificates"] = {
            "ca": b64(to_der(identity.ca_certificate)),
            "signing": b64(to_der(identity.signing_certificate)),
            "encryption": b64(to_der(identity.encryption_certificate)),
        }
    return _sealed.seal(canonical_json(content), passphrase, kind=KIND, log_n=log_n)


def _inconsistent(detail: str) -> IdentityFileError:
    return IdentityFileError(
        "inconsistent",
        f"identity file does not hold together: {detail}",
        "ask the operator for a new identity file",
    )


def _field(content: dict[str, Any], key: str) -> bytes:
    try:
        return unb64(content[key], key)
    except (KeyError, TypeError, ValueError) as exc:
        raise _inconsistent(f"field {key!r} is missing or not base64") from exc


def load_identity_bytes(data: bytes, passphrase: bytes) -> Identity | IdentityKeys:
    plaintext = _sealed.unseal(data, passphrase, kind=KIND)
    try:
        content = parse_canonical_json(plaintext, "the identity")
        if not isinstance(content, dict):
            raise ValueError("not an object")
        name = check_name(content["name"])
        keys = IdentityKeys(
            name,
            Ed25519PrivateKey.from_private_bytes(_field(content, "signing_key")),
            X25519PrivateKey.from_private_bytes(_field(content, "encryption_key")),
        )
        certs = content["certificates"]
        if certs is None:
            return keys
        ca, signing, encryption = (
            x509.load_der_x509_certificate(_field(certs, k))
            for k in ("ca", "signing", "encryption")
        )
    except (KeyError, TypeError, ValueError, BrokerError) as exc:
        raise _inconsistent(str(exc)) from exc
    pub = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    if signing.public_key().public_bytes(*pub) != keys.signing_key.public_key().public_bytes(
        *pub
    ) or encryption.public_key().public_bytes(
        *pub
    ) != keys.encryption_key.public_key().public_bytes(*pub):
        raise _inconsistent("a certificate does not match its private key")
    for cert in (signing, encryption):
        try:
            cn = common_name(cert.subject)
        except BrokerError as exc:
            raise _inconsistent(exc.message) from exc
        if cn != name:
            raise _inconsistent("a certificate is for another name")
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
            raise _inconsistent("a certificate is not issued by the CA in the file") from exc
    return Identity(name, keys.signing_key, keys.encryption_key, signing, encryption, ca)


def read_identity_file(path: Path, passphrase: bytes) -> Identity | IdentityKeys:
    """Load an identity file, complete or pending."""
    return load_identity_bytes(read_bytes(path, "identity file"), passphrase)


def write_identity_file(
    path: Path,
    identity: Identity | IdentityKeys,
    passphrase: bytes,
    *,
    overwrite: bool = False,
    log_n: int = _sealed.DEFAULT_LOG_N,
) -> None:
    write_bytes(
        path, dump_identity(identity, passphrase, log_n=log_n), private=True, overwrite=overwrite
    )

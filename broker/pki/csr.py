"""The certificate request a user sends when its private keys must never leave it.

X25519 cannot sign, so one PKCS#10 request covers both keys: it is signed by the
user's Ed25519 key (proof of possession for the signing key), its subject common
name is the requested name, and a non-critical extension in the extensionRequest
attribute (OID `profile.OID_CSR_X25519_KEY`) carries the X25519 public key as a
DER SubjectPublicKeyInfo. The Ed25519 signature binds that key to the request, but
nothing proves the requester holds the X25519 private key (see docs/identity.md
for what that allows). This module must never issue certificates; `ca.authority` does.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.x509.oid import NameOID

from broker.canonical import check_name
from broker.errors import BrokerError, CertificateRejected, CertReason
from broker.pki.identity import IdentityKeys
from broker.pki.profile import OID_CSR_X25519_KEY

__all__ = [
    "CertificateRequest",
    "build_csr",
    "parse_csr",
]


@dataclass(frozen=True)
class CertificateRequest:
    """A checked request: the name asked for and the two public keys."""

    name: str
    signing_key: Ed25519PublicKey
    encryption_key: X25519PublicKey


def build_csr(keys: IdentityKeys) -> bytes:
    """The PEM request for `keys`, signed by the Ed25519 key."""
    spki = keys.encryption_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, keys.name)]))
        .add_extension(x509.UnrecognizedExtension(OID_CSR_X25519_KEY, spki), critical=False)
        .sign(keys.signing_key, None)
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def _bad(detail: str) -> CertificateRejected:
    return CertificateRejected(
        CertReason.MALFORMED,
        f"certificate request refused: {detail}",
        "ask the user to run `consign id create` again and send the new request",
    )


def parse_csr(data: bytes) -> CertificateRequest:
    """Parse and check a request (PEM or DER); refuse anything not made by `build_csr`."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise _bad("not a PEM or DER certificate request") from exc
    signing_key = csr.public_key()
    if not isinstance(signing_key, Ed25519PublicKey):
        raise _bad("the request must be signed by an Ed25519 key")
    if not csr.is_signature_valid:
        raise _bad("its signature does not verify")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or len(csr.subject) != 1 or not isinstance(names[0].value, str):
        raise _bad("the subject must be exactly one common name")
    try:
        name = check_name(names[0].value)
        extension = csr.extensions.get_extension_for_oid(OID_CSR_X25519_KEY).value
        if not isinstance(extension, x509.UnrecognizedExtension):
            raise ValueError("unexpected extension type")
        encryption_key = serialization.load_der_public_key(extension.value)
    except BrokerError as exc:
        raise _bad(exc.message) from exc
    except (x509.ExtensionNotFound, ValueError) as exc:
        raise _bad("it carries no valid X25519 encryption key") from exc
    if not isinstance(encryption_key, X25519PublicKey):
        raise _bad("the encryption key is not X25519")
    return CertificateRequest(name, signing_key, encryption_key)

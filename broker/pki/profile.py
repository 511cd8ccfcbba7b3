"""The certificate profile of the closed PKI: OIDs, names, and how each kind of
certificate is built. docs/identity.md describes the same profile in prose.

Builders here are pure (keys, names and `now` in; certificates out). This module
must never decide whether a certificate is acceptable (that is `broker.pki.checks`) and
must never touch files or the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.x509.oid import NameOID

from broker.errors import BrokerError, CertificateRejected, CertReason

__all__ = [
    "OID_CSR_X25519_KEY",
    "OID_EKU_ENCRYPTION",
    "OID_EKU_ESCROW",
    "OID_EKU_SIGNING",
    "OID_POLICY",
    "Role",
    "build_ca_certificate",
    "build_party_certificate",
    "common_name",
    "fingerprint",
    "load_certificate",
    "load_crl",
    "to_der",
    "to_pem",
]

#: Our OID arc: a UUID OID (ITU-T X.667, 2.25.<uuid>) needs no registration.
ARC = "2.25.258722847341365646158534300426005560170"
#: Certificate policy carried by every certificate this CA issues.
OID_POLICY = x509.ObjectIdentifier(f"{ARC}.1")
#: Extended key usages marking the role of a key.
OID_EKU_SIGNING = x509.ObjectIdentifier(f"{ARC}.2.1")
OID_EKU_ENCRYPTION = x509.ObjectIdentifier(f"{ARC}.2.2")
OID_EKU_ESCROW = x509.ObjectIdentifier(f"{ARC}.2.3")
#: CSR extension carrying the requester's X25519 SubjectPublicKeyInfo (DER).
OID_CSR_X25519_KEY = x509.ObjectIdentifier(f"{ARC}.3.1")


class Role(StrEnum):
    SIGNING = "signing"
    ENCRYPTION = "encryption"


#: Fingerprints of certificate objects already seen, by id (each entry holds its
#: object, so the id cannot be reused while it is here). An agent checks every
#: message against the same few certificates: DER-encoding one each time was
#: most of what filing an escrow event cost.
_FINGERPRINTS: dict[int, tuple[x509.Certificate, str]] = {}


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, lowercase hex: how envelopes name a cert."""
    hit = _FINGERPRINTS.get(id(cert))
    if hit is not None and hit[0] is cert:
        return hit[1]
    value = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    if len(_FINGERPRINTS) >= 256:
        _FINGERPRINTS.clear()
    _FINGERPRINTS[id(cert)] = (cert, value)
    return value


def common_name(subject: x509.Name) -> str:
    attrs = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1 or not isinstance(attrs[0].value, str):
        raise CertificateRejected(CertReason.MALFORMED, "certificate has no single common name")
    return attrs[0].value


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Consignment"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def build_ca_certificate(
    key: Ed25519PrivateKey, escrow_name: str, now: datetime, days: int = 3650
) -> x509.Certificate:
    subject = _name(f"{escrow_name} CA")
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_policies(), critical=False)
        .sign(key, None)
    )


def _key_usage(
    *, signature: bool = False, agreement: bool = False, cert_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=agreement,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _policies() -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(OID_POLICY, None)])


def build_party_certificate(
    *,
    ca_key: Ed25519PrivateKey,
    ca_cert: x509.Certificate,
    name: str,
    role: Role,
    public_key: Ed25519PublicKey | X25519PublicKey,
    now: datetime,
    days: int,
    escrow: bool = False,
) -> x509.Certificate:
    """A user's (or, with `escrow=True`, the escrow's own) signing or encryption
    certificate: Ed25519 with digitalSignature only, or X25519 with keyAgreement
    only, each with our role EKU, so neither can stand in for the other."""
    if role is Role.SIGNING and not isinstance(public_key, Ed25519PublicKey):
        raise BrokerError("a signing certificate needs an Ed25519 public key")
    if role is Role.ENCRYPTION and not isinstance(public_key, X25519PublicKey):
        raise BrokerError("an encryption certificate needs an X25519 public key")
    if role is Role.SIGNING:
        usage, ekus = _key_usage(signature=True), [OID_EKU_SIGNING]
    else:
        usage, ekus = _key_usage(agreement=True), [OID_EKU_ENCRYPTION]
    if escrow:
        ekus.append(OID_EKU_ESCROW)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    not_after = min(now + timedelta(days=days), ca_cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(_policies(), critical=False)
        .sign(ca_key, None)
    )


_T = TypeVar("_T")


def _pem_or_der(data: bytes, pem: Callable[[bytes], _T], der: Callable[[bytes], _T]) -> _T:
    return pem(data) if data.lstrip().startswith(b"-----BEGIN") else der(data)


def load_certificate(data: bytes) -> x509.Certificate:
    """One certificate, PEM or DER; anything else is refused as malformed."""
    try:
        return _pem_or_der(data, x509.load_pem_x509_certificate, x509.load_der_x509_certificate)
    except ValueError as exc:
        raise CertificateRejected(
            CertReason.MALFORMED,
            "not a valid certificate (PEM or DER)",
            "ask the operator for the certificate file again",
        ) from exc


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    try:
        return _pem_or_der(data, x509.load_pem_x509_crl, x509.load_der_x509_crl)
    except ValueError as exc:
        raise CertificateRejected(
            CertReason.CRL_INVALID, "not a valid certificate revocation list (PEM or DER)"
        ) from exc


def to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def to_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)

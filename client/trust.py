"""Client-side checks of certificates the client is about to rely on.

A sender asks the escrow's directory for a receiver's encryption certificate but
never takes the answer on trust: it checks it against its own copy of the CA
certificate (from its identity file) and the CA-signed CRL, at the moment of use,
with the same rules the escrow applies (`broker.pki.checks`). This
module must never fetch anything and never return a key it did not check.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from broker.pki.checks import check_encryption_certificate, check_signing_certificate
from broker.pki.profile import load_certificate, load_crl
from client.errors import _as_client_errors

__all__ = ["verify_encryption_certificate", "verify_signing_certificate"]


def _parse(
    certificate: bytes | x509.Certificate, crl: bytes | x509.CertificateRevocationList
) -> tuple[x509.Certificate, x509.CertificateRevocationList]:
    cert = (
        certificate if isinstance(certificate, x509.Certificate) else load_certificate(certificate)
    )
    revocations = crl if isinstance(crl, x509.CertificateRevocationList) else load_crl(crl)
    return cert, revocations


def verify_encryption_certificate(
    certificate: bytes | x509.Certificate,
    *,
    ca: x509.Certificate,
    crl: bytes | x509.CertificateRevocationList,
    now: datetime,
    name: str | None = None,
) -> X25519PublicKey:
    """The X25519 key of a receiver's encryption certificate (PEM, DER or parsed),
    if it chains to `ca`, is valid at `now`, is not on the (current, CA-signed)
    `crl`, carries the encryption usage and, when given, belongs to `name`.
    Raises UntrustedCertificate naming the reason otherwise."""
    with _as_client_errors():
        cert, revocations = _parse(certificate, crl)
        return check_encryption_certificate(
            cert, ca=ca, crl=revocations, now=now, expected_name=name
        )


def verify_signing_certificate(
    certificate: bytes | x509.Certificate,
    *,
    ca: x509.Certificate,
    crl: bytes | x509.CertificateRevocationList,
    now: datetime,
    name: str | None = None,
    escrow: bool = False,
) -> Ed25519PublicKey:
    """The Ed25519 key of a signing certificate, under the same checks (with
    `escrow=True` it must also be the escrow's own, e.g. for deposit receipts)."""
    with _as_client_errors():
        cert, revocations = _parse(certificate, crl)
        return check_signing_certificate(
            cert, ca=ca, crl=revocations, now=now, expected_name=name, escrow=escrow
        )

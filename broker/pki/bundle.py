"""The certificate bundle `consign escrow sign-csr` hands back to a user: PEM
blocks of the signing certificate, the encryption certificate, the CA certificate
and the current CRL, in any order (roles are told apart by their extensions).
Parsing only sorts the blocks; whether they may be trusted is `broker.pki.checks`'s
call. This module must never accept a bundle with a missing or extra part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.errors import CertificateRejected, CertReason
from broker.pki.profile import OID_EKU_ENCRYPTION, OID_EKU_SIGNING, to_pem

__all__ = [
    "CertificateBundle",
    "parse_bundle",
]

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)


@dataclass(frozen=True)
class CertificateBundle:
    ca: x509.Certificate
    signing: x509.Certificate
    encryption: x509.Certificate
    crl: x509.CertificateRevocationList

    def to_pem(self) -> bytes:
        crl = self.crl.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return "".join(
            (to_pem(self.signing), to_pem(self.encryption), to_pem(self.ca), crl)
        ).encode("ascii")


def _bad(detail: str) -> CertificateRejected:
    return CertificateRejected(
        CertReason.MALFORMED,
        f"not a certificate bundle from `consign escrow sign-csr`: {detail}",
        "ask the operator to send the bundle again",
    )


def _eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    try:
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except (x509.ExtensionNotFound, ValueError):
        return set()


def parse_bundle(data: bytes) -> CertificateBundle:
    blocks = [m.group(0) for m in _BLOCK.finditer(data)]
    certs: list[x509.Certificate] = []
    crls: list[x509.CertificateRevocationList] = []
    try:
        for block in blocks:
            if block.startswith(b"-----BEGIN CERTIFICATE-----"):
                certs.append(x509.load_pem_x509_certificate(block))
            elif block.startswith(b"-----BEGIN X509 CRL-----"):
                crls.append(x509.load_pem_x509_crl(block))
            else:
                raise _bad("it holds a PEM block that is neither certificate nor CRL")
    except ValueError as exc:
        raise _bad("a PEM block does not parse") from exc
    if len(certs) != 3 or len(crls) != 1:
        raise _bad("it must hold exactly three certificates and one CRL")
    signing = [c for c in certs if OID_EKU_SIGNING in _eku(c)]
    encryption = [c for c in certs if OID_EKU_ENCRYPTION in _eku(c)]
    ca = [c for c in certs if not _eku(c)]
    if len(signing) != 1 or len(encryption) != 1 or len(ca) != 1:
        raise _bad("it must hold one CA, one signing and one encryption certificate")
    return CertificateBundle(ca[0], signing[0], encryption[0], crls[0])

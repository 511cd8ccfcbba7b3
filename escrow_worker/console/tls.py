"""The console's TLS certificates, issued by the escrow's own CA: the server's
(serverAuth, for the names it is reached by) and each operator's client
certificate (clientAuth plus the console-operator key usage).

Both are ECDSA P-256, the key type every browser can use for TLS; they carry
neither of the role key usages of users' certificates (`broker.pki.profile`),
so neither can sign a request or receive a key part, and they are not in the
directory. Private keys leave this module only sealed in a PKCS#12 file under a
passphrase, or handed to the caller to load into the TLS server.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.pki.profile import ARC, fingerprint
from escrow_worker.ca.authority import CertificateAuthority

__all__ = [
    "OID_EKU_CONSOLE_OPERATOR",
    "issue_operator_certificate",
    "issue_server_certificate",
    "operator_pkcs12",
    "private_pem",
]

#: Marks a client certificate for the escrow console's operators.
OID_EKU_CONSOLE_OPERATOR = x509.ObjectIdentifier(f"{ARC}.2.4")


def _build(
    ca: CertificateAuthority,
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    ekus: list[x509.ObjectIdentifier],
    *,
    now: datetime,
    days: int,
    names: tuple[str, ...] = (),
) -> x509.Certificate:
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    not_after = min(now + timedelta(days=days), ca.certificate.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )
    if names:
        alt: list[x509.GeneralName] = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(ca.key, None)


def issue_server_certificate(
    ca: CertificateAuthority, names: tuple[str, ...], *, now: datetime, days: int = 30
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh key and serverAuth certificate for the console at `names`."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build(
        ca, names[0], key, [ExtendedKeyUsageOID.SERVER_AUTH], now=now, days=days, names=names
    )
    return key, cert


def issue_operator_certificate(
    ca: CertificateAuthority, name: str, *, now: datetime, days: int
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh key and clientAuth certificate for operator `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    ekus = [ExtendedKeyUsageOID.CLIENT_AUTH, OID_EKU_CONSOLE_OPERATOR]
    return key, _build(ca, name, key, ekus, now=now, days=days)


def operator_pkcs12(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    passphrase: bytes,
) -> bytes:
    """The operator's key and certificate as a PKCS#12 file for a browser,
    encrypted under `passphrase`."""
    return pkcs12.serialize_key_and_certificates(
        name.encode("utf-8"),
        key,
        cert,
        [ca_cert],
        serialization.BestAvailableEncryption(passphrase),
    )


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM, for the TLS server's own key (kept in memory or a
    private temporary file only)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_fingerprint(cert: x509.Certificate) -> str:
    return fingerprint(cert)

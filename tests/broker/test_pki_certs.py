"""Certificate profile and checks: every refusal names its reason, on the escrow's
check and on the client's verify functions alike."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.x509.oid import NameOID

from broker.errors import CertificateRejected, CertReason
from broker.pki.checks import check_certificate
from broker.pki.profile import (
    OID_EKU_ENCRYPTION,
    OID_EKU_SIGNING,
    Role,
    fingerprint,
    load_certificate,
    load_crl,
)
from client import UntrustedCertificate, verify_encryption_certificate, verify_signing_certificate
from escrow_worker.ca.authority import CertificateAuthority
from tests.broker.pki_helpers import NOW, crl_revoking, empty_crl, later, make_ca, make_identity

CA_NAME = "acme"
CA = make_ca(CA_NAME)
ALICE = make_identity(CA)
ESCROW_SIGNING = CA.issue(
    "escrow", Role.SIGNING, Ed25519PrivateKey.generate().public_key(), now=NOW, days=30, escrow=True
)
OTHER_CA = make_ca("other")


@dataclass(frozen=True)
class Case:
    cert: Callable[[], x509.Certificate]
    role: Role
    reason: CertReason | None
    crl: Callable[[], x509.CertificateRevocationList] = lambda: empty_crl(CA)
    now: object = NOW
    name: str | None = None
    escrow: bool = False


def _self_signed() -> x509.Certificate:
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(later(30))
        .add_extension(CA.certificate.extensions.get_extension_for_class(x509.KeyUsage).value, True)
        .sign(key, None)
    )


def _forged_issuer_name() -> x509.Certificate:
    """Claims our CA's name as issuer but is signed by another key."""
    impostor = CertificateAuthority(Ed25519PrivateKey.generate(), CA.certificate)
    return impostor.issue("alice", Role.SIGNING, ALICE.signing_key.public_key(), now=NOW, days=30)


def _ed25519_with_usage(
    usage: x509.KeyUsage, ekus: list[x509.ObjectIdentifier]
) -> x509.Certificate:
    key = Ed25519PrivateKey.generate()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))
        .issuer_name(CA.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(later(30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(usage, True)
        .add_extension(x509.ExtendedKeyUsage(ekus), True)
        .sign(CA.key, None)
    )


SIGN_AND_CERTIFY = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
SIGN_ONLY = x509.KeyUsage(True, False, False, False, False, False, False, False, False)


def _no_extensions() -> x509.Certificate:
    key = Ed25519PrivateKey.generate()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))
        .issuer_name(CA.certificate.subject)
        .public_key(key.public_key())
        .serial_number(9)
        .not_valid_before(NOW)
        .not_valid_after(later(30))
        .sign(CA.key, None)
    )


def _crl_of_another_name() -> x509.CertificateRevocationList:
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-acme")]))
        .last_update(NOW)
        .next_update(NOW + timedelta(days=30))
        .sign(CA.key, None)
    )


def _stale_crl() -> x509.CertificateRevocationList:
    return CA.sign_crl([], number=1, now=NOW - timedelta(days=40), days=30)


CASES = {
    "signing-ok": Case(lambda: ALICE.signing_certificate, Role.SIGNING, None),
    "encryption-ok": Case(lambda: ALICE.encryption_certificate, Role.ENCRYPTION, None),
    "name-ok": Case(lambda: ALICE.signing_certificate, Role.SIGNING, None, name="alice"),
    "last-second": Case(
        lambda: ALICE.signing_certificate,
        Role.SIGNING,
        None,
        now=later(365),
        crl=lambda: CA.sign_crl([], number=3, now=later(364), days=30),
    ),
    "other-ca": Case(
        lambda: make_identity(OTHER_CA).signing_certificate,
        Role.SIGNING,
        CertReason.UNTRUSTED_ISSUER,
    ),
    "forged-issuer": Case(_forged_issuer_name, Role.SIGNING, CertReason.UNTRUSTED_ISSUER),
    "self-signed": Case(_self_signed, Role.SIGNING, CertReason.SELF_SIGNED),
    "ca-as-party": Case(lambda: CA.certificate, Role.SIGNING, CertReason.WRONG_USAGE),
    "expired": Case(
        lambda: ALICE.signing_certificate,
        Role.SIGNING,
        CertReason.EXPIRED,
        now=later(365) + timedelta(seconds=1),
    ),
    "not-yet-valid": Case(
        lambda: ALICE.signing_certificate,
        Role.SIGNING,
        CertReason.NOT_YET_VALID,
        now=NOW - timedelta(seconds=1),
    ),
    "revoked": Case(
        lambda: ALICE.signing_certificate,
        Role.SIGNING,
        CertReason.REVOKED,
        crl=lambda: crl_revoking(CA, ALICE.signing_certificate),
    ),
    "encryption-as-signing": Case(
        lambda: ALICE.encryption_certificate, Role.SIGNING, CertReason.WRONG_USAGE
    ),
    "signing-as-encryption": Case(
        lambda: ALICE.signing_certificate, Role.ENCRYPTION, CertReason.WRONG_USAGE
    ),
    "extra-usage": Case(
        lambda: _ed25519_with_usage(SIGN_AND_CERTIFY, [OID_EKU_SIGNING]),
        Role.SIGNING,
        CertReason.WRONG_USAGE,
    ),
    "both-ekus": Case(
        lambda: _ed25519_with_usage(SIGN_ONLY, [OID_EKU_SIGNING, OID_EKU_ENCRYPTION]),
        Role.SIGNING,
        CertReason.WRONG_USAGE,
    ),
    "no-extensions": Case(_no_extensions, Role.SIGNING, CertReason.WRONG_USAGE),
    "wrong-name": Case(
        lambda: ALICE.encryption_certificate, Role.ENCRYPTION, CertReason.WRONG_NAME, name="bob"
    ),
    "crl-from-other-ca": Case(
        lambda: ALICE.signing_certificate,
        Role.SIGNING,
        CertReason.CRL_INVALID,
        crl=lambda: empty_crl(OTHER_CA),
    ),
    # The issuer name is right, so only the CRL's signature can refuse it.
    "crl-signed-by-another-key-of-the-same-name": Case(
        lambda: ALICE.signing_certificate,
        Role.SIGNING,
        CertReason.CRL_INVALID,
        crl=lambda: empty_crl(make_ca(CA_NAME)),
    ),
    # Signed by the CA's own key, so only the issuer name can refuse it.
    "crl-signed-by-the-ca-under-another-name": Case(
        lambda: ALICE.signing_certificate,
        Role.SIGNING,
        CertReason.CRL_INVALID,
        crl=_crl_of_another_name,
    ),
    "party-as-escrow": Case(
        lambda: ALICE.signing_certificate, Role.SIGNING, CertReason.WRONG_USAGE, escrow=True
    ),
    "party-as-escrow-encryption": Case(
        lambda: ALICE.encryption_certificate, Role.ENCRYPTION, CertReason.WRONG_USAGE, escrow=True
    ),
    "escrow-ok": Case(lambda: ESCROW_SIGNING, Role.SIGNING, None, escrow=True),
    "stale-crl": Case(
        lambda: ALICE.signing_certificate, Role.SIGNING, CertReason.CRL_STALE, crl=_stale_crl
    ),
    "ca-expired": Case(
        lambda: ALICE.signing_certificate,
        Role.SIGNING,
        CertReason.EXPIRED,
        now=later(3650),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_check_certificate(case: Case) -> None:
    def run() -> object:
        return check_certificate(
            case.cert(),
            role=case.role,
            ca=CA.certificate,
            crl=case.crl(),
            now=case.now,  # type: ignore[arg-type]
            expected_name=case.name,
            escrow=case.escrow,
        )

    if case.reason is None:
        assert run() is not None
        return
    with pytest.raises(CertificateRejected) as info:
        run()
    assert info.value.reason is case.reason
    assert info.value.message


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        (later(365) + timedelta(seconds=1), CertReason.EXPIRED),
        (NOW - timedelta(seconds=1), CertReason.NOT_YET_VALID),
        (later(30) + timedelta(seconds=1), CertReason.CRL_STALE),
        (later(3650), CertReason.EXPIRED),  # the CA's
    ],
    ids=["expired", "not-yet-valid", "stale-crl", "ca-expired"],
)
def test_a_certificate_that_passed_is_checked_against_the_clock_again(
    when: object, reason: CertReason
) -> None:
    """What a pass remembers (`checks._PASSED`) never outlives the times: the same
    certificate, CA and CRL objects are refused once the clock leaves them."""
    cert, crl = ALICE.signing_certificate, empty_crl(CA)
    assert check_certificate(cert, role=Role.SIGNING, ca=CA.certificate, crl=crl, now=NOW)
    with pytest.raises(CertificateRejected) as info:
        check_certificate(cert, role=Role.SIGNING, ca=CA.certificate, crl=crl, now=when)  # type: ignore[arg-type]
    assert info.value.reason is reason
    # ... and passes again inside them: a refusal is remembered by nobody.
    assert check_certificate(cert, role=Role.SIGNING, ca=CA.certificate, crl=crl, now=later(1))


# The client's public verify functions take `escrow` for signing certificates only.
CLIENT_CASES = {k: c for k, c in CASES.items() if not (c.escrow and c.role is Role.ENCRYPTION)}


@pytest.mark.parametrize("case", CLIENT_CASES.values(), ids=CLIENT_CASES.keys())
def test_client_verify_refuses_with_the_same_reason(case: Case) -> None:
    verify: Callable[..., object] = (
        functools.partial(verify_signing_certificate, escrow=case.escrow)
        if case.role is Role.SIGNING
        else verify_encryption_certificate
    )
    pem = case.cert().public_bytes(serialization.Encoding.PEM)
    der_crl = case.crl().public_bytes(serialization.Encoding.DER)
    if case.reason is None:
        key = verify(pem, ca=CA.certificate, crl=der_crl, now=case.now, name=case.name)  # type: ignore[arg-type]
        assert key is not None
        return
    with pytest.raises(UntrustedCertificate) as info:
        verify(pem, ca=CA.certificate, crl=der_crl, now=case.now, name=case.name)  # type: ignore[arg-type]
    assert info.value.reason == case.reason.value


def test_verify_encryption_returns_the_receivers_x25519_key() -> None:
    key = verify_encryption_certificate(
        ALICE.encryption_certificate, ca=CA.certificate, crl=empty_crl(CA), now=NOW, name="alice"
    )
    assert isinstance(key, X25519PublicKey)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert key.public_bytes(*raw) == ALICE.encryption_key.public_key().public_bytes(*raw)
    # and it agrees with the private key: same shared secret both ways
    eph = X25519PrivateKey.generate()
    assert eph.exchange(key) == ALICE.encryption_key.exchange(eph.public_key())


GOOD_PEM = ALICE.signing_certificate.public_bytes(serialization.Encoding.PEM)
GOOD_DER = ALICE.signing_certificate.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        GOOD_PEM.replace(b"MII", b"XXX", 1),
        GOOD_PEM[:100] + GOOD_PEM[-30:],
        GOOD_DER[:-5],
        GOOD_DER + b"\x00",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    ],
    ids=[
        "empty",
        "junk",
        "bad-base64",
        "truncated-pem",
        "truncated-der",
        "trailing-der",
        "garbage-pem",
    ],
)
def test_malformed_certificates_are_refused(data: bytes) -> None:
    with pytest.raises(CertificateRejected) as info:
        load_certificate(data)
    assert info.value.reason is CertReason.MALFORMED
    with pytest.raises(UntrustedCertificate) as client_info:
        verify_signing_certificate(data, ca=CA.certificate, crl=empty_crl(CA), now=NOW)
    assert client_info.value.reason == "malformed"


@pytest.mark.parametrize(
    "data", [b"", b"junk", b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"]
)
def test_malformed_crl_is_refused(data: bytes) -> None:
    with pytest.raises(CertificateRejected) as info:
        load_crl(data)
    assert info.value.reason is CertReason.CRL_INVALID


def test_pem_and_der_load_the_same_certificate() -> None:
    assert load_certificate(GOOD_PEM) == load_certificate(GOOD_DER) == ALICE.signing_certificate


def test_profile_extensions() -> None:
    """The profile docs/identity.md writes down."""
    sign, enc = ALICE.signing_certificate, ALICE.encryption_certificate
    ku_s = sign.extensions.get_extension_for_class(x509.KeyUsage)
    ku_e = enc.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku_s.critical
    assert ku_e.critical
    assert ku_s.value.digital_signature
    assert not ku_s.value.key_agreement
    assert ku_e.value.key_agreement
    assert not ku_e.value.digital_signature
    assert list(sign.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        OID_EKU_SIGNING
    ]
    assert list(enc.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        OID_EKU_ENCRYPTION
    ]
    assert not sign.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca_bc = CA.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert ca_bc.ca
    assert ca_bc.path_length == 0


def test_fingerprints_are_of_the_certificate_held_however_many_are_remembered() -> None:
    """`fingerprint` remembers certificates it has seen (by object): the value is
    always the SHA-256 of that certificate's DER, also past what it keeps."""
    certs = [_self_signed() for _ in range(300)]
    for _ in range(2):
        for cert in certs:
            der = cert.public_bytes(serialization.Encoding.DER)
            assert fingerprint(cert) == hashlib.sha256(der).hexdigest()
    assert len({fingerprint(c) for c in certs}) == len(certs)
    same = load_certificate(certs[0].public_bytes(serialization.Encoding.PEM))
    assert fingerprint(same) == fingerprint(certs[0])  # another object, the same DER

"""Whether a party certificate may be used, now: the one place that decides it.

Both the escrow (for request signers) and the client (for a receiver's encryption
key from the directory) call `check_certificate`, so the rules are written once.
Order: the CA itself is valid; the certificate is issued by the CA (signature);
it is within its validity period; the CRL is the CA's, current, and does not list
it; its key usage, extended key usage and key type fit the role; its name is the
one expected. Pure: certificates, CRL and `now` in; a public key or a
`CertificateRejected` out. It must never do I/O, and never accept on a doubt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NotRequired, TypedDict, TypeVar, Unpack

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding

from broker.errors import CertificateRejected, CertReason
from broker.pki.profile import (
    OID_EKU_ENCRYPTION,
    OID_EKU_ESCROW,
    OID_EKU_SIGNING,
    Role,
    common_name,
)

__all__ = [
    "CheckOptions",
    "check_ca",
    "check_certificate",
    "check_crl",
    "check_encryption_certificate",
    "check_signing_certificate",
    "require_aware",
]

_ASK_OPERATOR = "ask the escrow operator for a current certificate"


# Signatures that verified, by the exact DER of what was signed and of the CA.
# A signature check is a pure function of those bytes, so remembering a success
# changes no decision; a failure is never remembered (it is checked every time).
# Everything else (validity times, revocation, usage, names) is checked each time.
_VERIFIED: set[tuple[bytes, bytes]] = set()
_VERIFIED_MAX = 4096


def _verified_once(signed: bytes, ca: x509.Certificate, verify: Callable[[], bool]) -> bool:
    """`verify()` (a CA signature check over `signed`), unless it succeeded before."""
    key = (signed, ca.public_bytes(Encoding.DER))
    if key in _VERIFIED:
        return True
    if not verify():
        return False
    if len(_VERIFIED) >= _VERIFIED_MAX:  # a crude bound: re-verifying is only slower
        _VERIFIED.clear()
    _VERIFIED.add(key)
    return True


def _reject(reason: CertReason, message: str, hint: str | None = _ASK_OPERATOR) -> None:
    raise CertificateRejected(reason, message, hint)


def require_aware(now: datetime) -> None:
    """A naive datetime would be read as local time: refuse it (a bug, not input)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be a timezone-aware datetime")


def check_ca(ca: x509.Certificate, now: datetime) -> None:
    if now < ca.not_valid_before_utc:
        _reject(CertReason.NOT_YET_VALID, "the escrow's CA certificate is not valid yet")
    if now > ca.not_valid_after_utc:
        _reject(CertReason.EXPIRED, "the escrow's CA certificate has expired")


def check_crl(
    crl: x509.CertificateRevocationList,
    ca: x509.Certificate,
    now: datetime,
    *,
    require_current: bool = True,
) -> None:
    """The CRL is signed by the CA and (unless the escrow checks its own freshly
    written CRL) its next update is not past."""
    ca_key = ca.public_key()
    if (
        not isinstance(ca_key, Ed25519PublicKey)
        or crl.issuer != ca.subject
        or not _verified_once(
            crl.public_bytes(Encoding.DER), ca, lambda: crl.is_signature_valid(ca_key)
        )
    ):
        _reject(CertReason.CRL_INVALID, "the revocation list is not signed by the escrow's CA")
    next_update = crl.next_update_utc
    if require_current and (next_update is None or next_update < now):
        _reject(
            CertReason.CRL_STALE,
            "the revocation list is out of date",
            "the escrow operator must publish a new CRL (consign escrow crl)",
        )


def _check_issued_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    if cert == ca:
        _reject(CertReason.WRONG_USAGE, "the CA certificate cannot stand in for a party's")
    if cert.issuer == cert.subject:
        _reject(CertReason.SELF_SIGNED, "certificate is self-signed, not issued by the escrow")

    def verify() -> bool:
        cert.verify_directly_issued_by(ca)  # raises unless issued by `ca`
        return True

    try:
        _verified_once(cert.public_bytes(Encoding.DER), ca, verify)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise CertificateRejected(
            CertReason.UNTRUSTED_ISSUER,
            "certificate is not issued by this escrow's CA",
            "it belongs to another escrow or was forged; use one this escrow issued",
        ) from exc


def _check_usage(cert: x509.Certificate, role: Role, escrow: bool) -> None:
    try:
        ext = cert.extensions
        basic = ext.get_extension_for_class(x509.BasicConstraints).value
        usage = ext.get_extension_for_class(x509.KeyUsage).value
        ekus = set(ext.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except (x509.ExtensionNotFound, ValueError) as exc:
        raise CertificateRejected(
            CertReason.WRONG_USAGE, "certificate lacks the key usage extensions of this PKI"
        ) from exc
    signing = role is Role.SIGNING
    wanted_eku, other_eku = (
        (OID_EKU_SIGNING, OID_EKU_ENCRYPTION) if signing else (OID_EKU_ENCRYPTION, OID_EKU_SIGNING)
    )
    key = cert.public_key()
    key_ok = isinstance(key, Ed25519PublicKey if signing else X25519PublicKey)
    usage_ok = (
        usage.digital_signature == signing
        and usage.key_agreement == (not signing)
        and not usage.content_commitment
        and not usage.key_encipherment
        and not usage.data_encipherment
        and not usage.key_cert_sign
        and not usage.crl_sign
    )
    if basic.ca or not usage_ok or wanted_eku not in ekus or other_eku in ekus or not key_ok:
        _reject(
            CertReason.WRONG_USAGE,
            f"certificate is not a {role.value} certificate",
            "use the signing certificate to sign and the encryption certificate to receive",
        )
    if escrow and OID_EKU_ESCROW not in ekus:
        _reject(CertReason.WRONG_USAGE, "certificate does not belong to the escrow")


# Certificates whose time-independent checks passed (issued by the CA, the CRL
# signed by it and not listing the certificate, usage, name), by the exact
# certificate, CA and CRL and what was asked. Those checks are pure functions of
# these, so remembering a success changes no decision; a new CRL is a new key.
# The times (CA, certificate, CRL freshness) are checked on every call, against
# the bounds remembered with the key; any doubt takes the whole way again.
_PASSED: dict[tuple[object, ...], _Passed] = {}
_PASSED_MAX = 4096


@dataclass(frozen=True, slots=True)
class _Passed:
    key: Ed25519PublicKey | X25519PublicKey
    #: The latest of the CA's and the certificate's not-before ...
    not_before: datetime
    #: ... and the earliest of their not-after.
    not_after: datetime
    crl_next_update: datetime | None

    def current(self, now: datetime, require_current_crl: bool) -> bool:
        if not self.not_before <= now <= self.not_after:
            return False
        if not require_current_crl:
            return True
        return self.crl_next_update is not None and now <= self.crl_next_update


# The DER of a CRL by the object (kept alive here, so its id is not reused):
# the memo's key, without encoding the CRL again at every check.
_DER: dict[int, tuple[x509.CertificateRevocationList, bytes]] = {}


def _crl_der(crl: x509.CertificateRevocationList) -> bytes:
    hit = _DER.get(id(crl))
    if hit is not None and hit[0] is crl:
        return hit[1]
    der = crl.public_bytes(Encoding.DER)
    if len(_DER) >= 64:
        _DER.clear()
    _DER[id(crl)] = (crl, der)
    return der


def check_certificate(
    cert: x509.Certificate,
    *,
    role: Role,
    ca: x509.Certificate,
    crl: x509.CertificateRevocationList,
    now: datetime,
    expected_name: str | None = None,
    escrow: bool = False,
    require_current_crl: bool = True,
) -> Ed25519PublicKey | X25519PublicKey:
    """Refuse (`CertificateRejected`) unless `cert` may be used for `role` at `now`;
    return its public key. `now` must be timezone-aware."""
    require_aware(now)
    memo = (cert, ca, _crl_der(crl), role, escrow, expected_name)
    passed = _PASSED.get(memo)
    if passed is not None and passed.current(now, require_current_crl):
        return passed.key
    check_ca(ca, now)
    _check_issued_by(cert, ca)
    _check_times(cert, crl, ca, now, require_current_crl)
    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        _reject(
            CertReason.REVOKED,
            "certificate has been revoked",
            "the operator revoked it; a new registration is needed",
        )
    _check_usage(cert, role, escrow)
    if expected_name is not None and common_name(cert.subject) != expected_name:
        _reject(
            CertReason.WRONG_NAME,
            f"certificate is not {expected_name!r}'s",
            "the directory answered with someone else's certificate; do not use it",
        )
    public = cert.public_key()
    assert isinstance(public, Ed25519PublicKey | X25519PublicKey)  # _check_usage made sure
    if len(_PASSED) >= _PASSED_MAX:
        _PASSED.clear()
    _PASSED[memo] = _Passed(
        public,
        max(ca.not_valid_before_utc, cert.not_valid_before_utc),
        min(ca.not_valid_after_utc, cert.not_valid_after_utc),
        crl.next_update_utc,
    )
    return public


def _check_times(
    cert: x509.Certificate,
    crl: x509.CertificateRevocationList,
    ca: x509.Certificate,
    now: datetime,
    require_current_crl: bool,
) -> None:
    if now < cert.not_valid_before_utc:
        _reject(CertReason.NOT_YET_VALID, "certificate is not valid yet")
    if now > cert.not_valid_after_utc:
        _reject(CertReason.EXPIRED, "certificate has expired")
    check_crl(crl, ca, now, require_current=require_current_crl)


class CheckOptions(TypedDict):
    """What `check_certificate` takes besides the certificate and its role."""

    ca: x509.Certificate
    crl: x509.CertificateRevocationList
    now: datetime
    expected_name: NotRequired[str | None]
    escrow: NotRequired[bool]
    require_current_crl: NotRequired[bool]


def check_signing_certificate(
    cert: x509.Certificate, **options: Unpack[CheckOptions]
) -> Ed25519PublicKey:
    """`check_certificate` for a signing certificate: its Ed25519 key."""
    key = check_certificate(cert, role=Role.SIGNING, **options)
    return _key_for(Ed25519PublicKey, key)  # type: ignore[type-abstract]


def check_encryption_certificate(
    cert: x509.Certificate, **options: Unpack[CheckOptions]
) -> X25519PublicKey:
    """`check_certificate` for an encryption certificate: its X25519 key."""
    key = check_certificate(cert, role=Role.ENCRYPTION, **options)
    return _key_for(X25519PublicKey, key)  # type: ignore[type-abstract]


_K = TypeVar("_K", Ed25519PublicKey, X25519PublicKey)


def _key_for(kind: type[_K], key: object) -> _K:
    # The profile check fixed the key type for the role; this only narrows it.
    assert isinstance(key, kind)
    return key

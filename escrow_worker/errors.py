"""The one base error of the escrow package, and its typed refusals.

Every failure the escrow reports on purpose is an `EscrowError` (a message plus an
optional hint); the refusals carry a stable `reason` code so a reply or a test
can name why. Messages must never contain secrets (keys, passphrases).
"""

from __future__ import annotations

from enum import StrEnum


class EscrowError(Exception):
    """A failure of the escrow, with a message a user can act on."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class CertReason(StrEnum):
    """Why a certificate (or the CRL it is checked against) was refused."""

    MALFORMED = "malformed"
    SELF_SIGNED = "self_signed"
    UNTRUSTED_ISSUER = "untrusted_issuer"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    WRONG_USAGE = "wrong_usage"
    WRONG_NAME = "wrong_name"
    CRL_INVALID = "crl_invalid"
    CRL_STALE = "crl_stale"


class CertificateRejected(EscrowError):
    """A certificate failed a check; `reason` says which."""

    def __init__(self, reason: CertReason, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.reason = reason


class RequestReason(StrEnum):
    """Why a signed request was refused (certificate problems use CertReason)."""

    MALFORMED = "malformed"
    UNKNOWN_SIGNER = "unknown_signer"
    BAD_SIGNATURE = "bad_signature"
    WRONG_AUDIENCE = "wrong_audience"
    EXPIRED = "expired"
    FROM_FUTURE = "from_future"
    LIFETIME_TOO_LONG = "lifetime_too_long"
    REPLAYED = "replayed"


class RequestRejected(EscrowError):
    """A signed request failed a check; `reason` says which."""

    def __init__(self, reason: RequestReason, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.reason = reason


class IdentityFileError(EscrowError):
    """An identity or key file cannot be read: `reason` is "malformed", "damaged",
    "wrong_passphrase" or "inconsistent"."""

    def __init__(self, reason: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.reason = reason


class DirectoryError(EscrowError):
    """A directory operation cannot be done (unknown name, name taken, ...)."""

"""The one base error of the escrow package, and its typed refusals.

Every failure the escrow reports on purpose is an `EscrowError` (a `broker.Error`:
a message plus an optional hint); the refusals carry a stable `reason` code so a
reply or a test can name why. Certificate and identity-file errors are
`broker`'s (`CertificateRejected`, `IdentityFileError`): both sides raise them.
Messages must never contain secrets (keys, passphrases).
"""

from __future__ import annotations

from enum import StrEnum

from broker.errors import Error

__all__ = ["DirectoryError", "EscrowError", "RequestReason", "RequestRejected"]


class EscrowError(Error):
    """A failure of the escrow, with a message a user can act on."""


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


class DirectoryError(EscrowError):
    """A directory operation cannot be done (unknown name, name taken, ...)."""

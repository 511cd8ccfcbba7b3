"""The one base error of the client package, and its typed refusals.

Everything the client reports on purpose is a `ClientError` (a message plus an
optional hint); the CLI catches exactly that. Messages must never contain
secrets (keys, passphrases, plaintext).
"""

from __future__ import annotations


class ClientError(Exception):
    """A failure of the client, with a message a user can act on."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UntrustedCertificate(ClientError):
    """A certificate from the directory or a bundle must not be used; `reason` is
    an `escrow_worker.CertReason` value such as "revoked" or "untrusted_issuer"."""

    def __init__(self, reason: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.reason = reason


class IdentityError(ClientError):
    """A local identity cannot be created, read or completed; `reason` is a short
    code ("wrong_passphrase", "damaged", "malformed", "inconsistent", "missing",
    "mismatch", "exists")."""

    def __init__(self, reason: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.reason = reason

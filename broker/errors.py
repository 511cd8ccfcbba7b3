"""The one base error of the wire package.

Everything `broker` raises on purpose is a `BrokerError`, so a caller (the CLI,
an escrow worker) can catch exactly the failures this package means to report.
It must never carry secrets (keys, passphrases, plaintext) in its message.
"""

from __future__ import annotations


class BrokerError(Exception):
    """A failure of the wire layer, with a message a user can act on."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class EnvelopeError(BrokerError):
    """An envelope is malformed, not canonical, or its signature does not verify.

    `reason` is a short stable code: "malformed", "not_canonical", "too_large"
    or "bad_signature".
    """

    def __init__(self, reason: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.reason = reason

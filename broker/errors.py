"""The one error base of the project, and the errors the `broker` package raises.

`Error` is the base of every error any of our packages raises on purpose: a
`message` saying what went wrong and, when it helps, a `hint` saying what the
user can do (as age's `errorWithHint` and sigstore-python's `Error`). The CLI
catches `Error` only, prints `error: <message>` and `hint: <hint>` on stderr and
exits 1. `BrokerError` (here), `escrow_worker.EscrowError` and
`client.ClientError` are the three families below it.

Everything `broker` raises on purpose derives from `BrokerError`.
Exceptions of the libraries underneath (aio-pika, aiormq, sockets) are wrapped at
the boundary with `raise ... from exc`; they never leave this package raw.

Each `TransportError` subclass says whether it is `transient`: a transient error
may go away if the same operation is tried again later (the connection comes
back, a full queue drains), so a consumer requeues the message that caused it
instead of dead-lettering it. Retrying a publish is safe because every message
has a stable message id and every handler is idempotent by that id.
"""

from __future__ import annotations

import errno
import signal
from enum import StrEnum
from typing import ClassVar

__all__ = [
    "BrokerError",
    "CertReason",
    "CertificateRejected",
    "ConnectionFailed",
    "DeliveryLost",
    "DiskFull",
    "EnvelopeError",
    "Error",
    "FileError",
    "IdentityFileError",
    "Interrupted",
    "InvalidName",
    "MessageTooLarge",
    "PublishRefused",
    "PublishTimeout",
    "QueueNotFound",
    "SealedMessageError",
    "TopologyError",
    "TransportClosed",
    "TransportError",
    "Unroutable",
    "full_disk",
]


class Error(Exception):
    """Base of every error our packages raise on purpose.

    `message` says what went wrong; `hint`, when given, says what the user can do.
    Neither may ever hold a secret (a key, a passphrase, a message body).
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """What the CLI prints: the message, and the hint on a line of its own."""
        return self.message if self.hint is None else f"{self.message}\nhint: {self.hint}"


class BrokerError(Error):
    """Base of every error the `broker` package raises on purpose."""


class Interrupted(BrokerError):
    """The command was stopped by SIGINT (Ctrl-C) or SIGTERM; exit 128 + the signal."""

    def __init__(self, signum: int) -> None:
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted by {name}; nothing was left half-written",
            "run the command again to carry on",
        )
        self.signum = signum


class DiskFull(BrokerError):
    """A write failed for want of space (ENOSPC, EDQUOT, EFBIG, or SQLite's "disk
    is full"); what was being written was rolled back."""


def full_disk(exc: BaseException) -> bool:
    """Whether `exc` says a write failed for want of space (ENOSPC, EDQUOT,
    EFBIG for a file size limit, or SQLite's "database or disk is full")."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return "disk is full" in str(exc) and type(exc).__name__ == "OperationalError"


class TransportError(BrokerError):
    """Moving a message to or from the broker failed."""

    transient: ClassVar[bool] = False


class ConnectionFailed(TransportError):
    """The broker cannot be reached, refused the login, or the connection dropped."""

    transient = True


class TransportClosed(TransportError):
    """The transport was used before `start()` or after `close()`."""


class Unroutable(TransportError):
    """No queue is bound for the destination; the broker returned the message."""


class PublishRefused(TransportError):
    """The broker refused a message (a negative publisher confirm), e.g. a full queue."""

    transient = True


class PublishTimeout(TransportError):
    """No publisher confirm arrived in time; the message may or may not be queued.

    Publishing it again with the same message id is safe (handlers are idempotent).
    """

    transient = True


class MessageTooLarge(TransportError):
    """The message body is larger than the configured maximum."""


class QueueNotFound(TransportError):
    """Consuming from or fetching a queue that was never declared."""


class TopologyError(TransportError):
    """Declaring a queue or exchange failed, e.g. it exists with other arguments."""


class DeliveryLost(TransportError):
    """A delivery can no longer be acked or rejected: its channel or consumer closed.

    The broker has taken the message back and delivers it again (`redelivered`).
    """

    transient = True


class InvalidName(TransportError):
    """An identity or prefix cannot be used in a queue name or routing key."""


class EnvelopeError(BrokerError):
    """An envelope is malformed, not canonical, or its signature does not verify.

    `reason` is a short stable code: "malformed", "not_canonical", "too_large"
    or "bad_signature".
    """

    def __init__(self, reason: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.reason = reason


class SealedMessageError(BrokerError):
    """An HPKE-sealed deposit or key part cannot be opened, or is not what it claims.

    One message for every cause of a failed opening (wrong key, wrong context,
    altered): no oracle. Once it opened, what is wrong with the plaintext is
    named: the sealer wrote it. `reason` is "cannot_open", "not_json",
    "not_canonical", "invalid" or "wrong_consignment"."""

    def __init__(self, message: str, hint: str | None = None, *, reason: str = "cannot_open"):
        super().__init__(message, hint)
        self.reason = reason


class FileError(BrokerError):
    """A file cannot be read or written (missing, too large, exists, no permission)."""


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


class CertificateRejected(BrokerError):
    """A certificate failed a check of `broker.pki`; `reason` says which."""

    def __init__(self, reason: CertReason, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.reason = reason


class IdentityFileError(BrokerError):
    """An identity or key file cannot be read: `reason` is "malformed", "damaged",
    "wrong_passphrase" or "inconsistent"."""

    def __init__(self, reason: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.reason = reason

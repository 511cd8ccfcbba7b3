"""Errors the client raises: `ClientError` (a `broker.Error`) and its family, and
the one place `broker`'s identity and certificate errors become the client's
(`_as_client_errors`, for the client's own modules).

Every failure to open or authenticate a consignment is the same OpenError with the
same message, whichever check failed: the message must never tell an attacker which
byte, key or MAC was wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from broker.errors import BrokerError, CertificateRejected, Error, IdentityFileError

__all__ = [
    "AgentError",
    "ClientError",
    "EscrowRefused",
    "IdentityError",
    "NoReply",
    "OpenError",
    "SealError",
    "UnsafePathError",
    "UntrustedCertificate",
    "UntrustedMessage",
]


class ClientError(Error):
    """Base of every error the client raises on purpose: a message and a hint."""


class SealError(ClientError):
    """The inputs cannot be sealed (missing file, file changed while read, bad key)."""


class OpenError(ClientError):
    """The consignment cannot be opened. `OpenError()` itself deliberately says
    nothing about why: it is every failure of the checks (docs/format.md,
    "Opening", steps 1 to 7), with one message and one hint."""

    MESSAGE = (
        "cannot open the consignment: it is damaged or altered, it was not sealed for "
        "this identity or at this escrow, or the escrow's key part does not belong to it"
    )
    HINT = (
        "check that you hold the whole file and that it is addressed to you; compare "
        "its digest with the escrow's before asking again, or ask the sender to resend"
    )

    def __init__(self, message: str = MESSAGE, hint: str | None = HINT) -> None:
        super().__init__(message, hint=hint)


class UnsafePathError(OpenError):
    """A consignment that passed every check cannot be written where asked: a
    file name breaks the name rules (an unsafe or colliding name, which the
    sender's signature makes the sender's), or the target is in the way (a file
    exists, a link, a name the file system cannot hold). Raised only after every
    check of the consignment passed, and after everything was put back."""


class UntrustedCertificate(ClientError):
    """A certificate from the directory or a bundle must not be used; `reason` is
    a `broker.CertReason` value such as "revoked" or "untrusted_issuer"."""

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


class AgentError(ClientError):
    """An agent cannot do what was asked: no broker, an unknown consignment, a
    local state it cannot use. `code`, when set, is the precise reason scripts
    see in `--json` failures (docs/cli.md), e.g. "no_worker", "not_arrived"."""

    def __init__(self, message: str, hint: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


class EscrowRefused(ClientError):
    """The escrow answered a request with a typed `error`: `code` is the escrow's
    `broker.messages.ErrorCode` value (e.g. "revoked", "not_a_receiver")."""

    def __init__(
        self,
        code: str,
        message: str,
        hint: str | None = None,
        *,
        request_type: str = "",
        consignment_id: str | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(message, hint)
        self.code = code
        #: The escrow's own words, without our framing.
        self.reason = reason or message
        self.request_type = request_type
        self.consignment_id = consignment_id


class NoReply(ClientError):
    """The escrow did not answer in time. The signed request is kept: asking again
    re-sends the same bytes, so the escrow never decides twice."""

    def __init__(self, message: str, hint: str | None = None, *, request_id: str) -> None:
        super().__init__(message, hint)
        self.request_id = request_id


class UntrustedMessage(ClientError):
    """A message from the wire failed a check and was not used; `reason` says which
    ("malformed", "bad_signature", "not_from_escrow", "unexpected_reply",
    "wrong_consignment", "digest_mismatch", ...)."""

    def __init__(self, reason: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.reason = reason


@contextmanager
def _as_client_errors() -> Iterator[None]:
    """Turn what `broker` raises inside into the client's family: a refused
    certificate into `UntrustedCertificate`, an unreadable identity file into
    `IdentityError`, any other `BrokerError` into a `ClientError`; reason, message
    and hint are kept."""
    try:
        yield
    except IdentityFileError as exc:
        raise IdentityError(exc.reason, exc.message, exc.hint) from exc
    except CertificateRejected as exc:
        raise UntrustedCertificate(exc.reason.value, exc.message, exc.hint) from exc
    except BrokerError as exc:
        raise ClientError(exc.message, exc.hint) from exc

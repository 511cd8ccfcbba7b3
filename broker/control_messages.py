"""The bodies of the control messages: status, receipts, co-signing
(`cosign`, `agreement`) and a consignment's history, with their replies. Part
of `broker.messages`, which exports them; this module holds no logic beyond
validation.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import Field, model_validator

from broker.attest import Statement, StatementKind
from broker.bodies import ConsignmentId, Name, _Body, _Reply
from broker.canonical import B64, HEX_DIGEST
from broker.deposit import Mode, Policy

__all__ = [
    "HISTORY_PAGE",
    "AgreementBody",
    "AgreementReplyBody",
    "CosignBody",
    "CosignReplyBody",
    "CosignerStatus",
    "HistoryBody",
    "HistoryEntry",
    "HistoryReplyBody",
    "ReceiptBody",
    "ReceiptReplyBody",
    "ReceiverStatus",
    "StatusBody",
    "StatusReplyBody",
]


class StatusBody(_Body):
    consignment_id: str = ConsignmentId


class ReceiverStatus(_Body):
    name: str = Name
    notified_at: int | None = None
    releases: int = 0
    revoked_at: int | None = None
    #: The code of the last refused key request, and when.
    last_denied: str | None = None
    last_denied_at: int | None = None
    #: The last key request (released or refused), and the last release.
    requested_at: int | None = None
    released_at: int | None = None
    #: Whether the policy asks this receiver for a receipt, and when it came.
    receipt_required: bool = False
    receipt_at: int | None = None
    #: When this receiver's window closes (not_after, or ask-within from its
    #: notification, whichever is first); null: it never does.
    closes_at: int | None = None
    #: When the escrow reported the window closed unused (an `expired` event).
    expired_at: int | None = None


class CosignerStatus(_Body):
    """A co-signer the policy names, and when its signature came (null: not yet)."""

    name: str = Name
    signed_at: int | None = None


class StatusReplyBody(_Reply):
    consignment_id: str = ConsignmentId
    sender: str = Name
    mode: Mode
    deposited_at: int
    receivers: tuple[ReceiverStatus, ...]
    #: Every co-signer named, in the policy's order: nobody gets the key part
    #: until each has signed.
    cosigners: tuple[CosignerStatus, ...] = ()


class _SignedStatement(_Body):
    """A party's signed statement about a consignment, of the kind its class names."""

    _KIND: ClassVar[StatementKind]
    _WHAT: ClassVar[str]

    consignment_id: str = ConsignmentId
    statement: Statement
    signature: B64 = Field(min_length=64, max_length=64)

    @model_validator(mode="after")
    def _of_its_kind(self) -> Self:
        if self.statement.kind is not self._KIND:
            raise ValueError(f"{self._WHAT}'s statement is of kind '{self._KIND.value}'")
        return self


class ReceiptBody(_SignedStatement):
    """A receiver's signed receipt for a consignment (`broker.attest`)."""

    _KIND = StatementKind.RECEIPT
    _WHAT = "a receipt"


class ReceiptReplyBody(_Reply):
    consignment_id: str = ConsignmentId
    receiver: str = Name
    #: When the escrow stored the receipt (its clock).
    recorded_at: int = Field(ge=0)


class CosignBody(_SignedStatement):
    """A co-signer's signed agreement to a consignment (`broker.attest`)."""

    _KIND = StatementKind.AGREEMENT
    _WHAT = "an agreement"


class CosignReplyBody(_Reply):
    consignment_id: str = ConsignmentId
    cosigner: str = Name
    recorded_at: int = Field(ge=0)
    #: Every co-signer named, with the time of its signature (null: not yet).
    cosigners: tuple[CosignerStatus, ...]


class AgreementBody(_Body):
    """A co-signer asks what it is asked to sign."""

    consignment_id: str = ConsignmentId


class AgreementReplyBody(_Reply):
    """What a co-signer signs, with the whole policy: the agent recomputes the
    policy digest from it and shows the person what it says before signing."""

    consignment_id: str = ConsignmentId
    sender: str = Name
    deposited_at: int = Field(ge=0)
    consignment_digest: str = Field(pattern=HEX_DIGEST.pattern)
    consignment_size: int = Field(ge=0)
    policy: Policy
    policy_digest: B64
    cosigners: tuple[CosignerStatus, ...]


#: Entries in one `history-reply` at most; ask again with `after` for the rest.
HISTORY_PAGE = 100


class HistoryBody(_Body):
    """A party of a consignment asks for the transaction log's entries about it
    (docs/log.md), oldest first, after entry number `after`."""

    consignment_id: str = ConsignmentId
    after: int = Field(default=0, ge=0)


class HistoryEntry(_Body):
    """One log entry as the log holds it (`entry` re-encodes canonically to the
    bytes its `hash` covers)."""

    entry: dict[str, Any]
    hash: str = Field(pattern=HEX_DIGEST.pattern)


class HistoryReplyBody(_Reply):
    consignment_id: str = ConsignmentId
    entries: tuple[HistoryEntry, ...] = Field(max_length=HISTORY_PAGE)
    #: False: more entries follow; ask again with `after` = the last `seq` here.
    complete: bool
    #: The log's size and the hash of its last entry when the escrow answered
    #: (before this request's own entry): a head signed by this reply.
    log_size: int = Field(ge=0)
    log_head: str = Field(pattern=HEX_DIGEST.pattern)

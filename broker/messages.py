"""The body of every message between agents and the escrow, by type and version.

Each message travels as a signed envelope (broker.envelope) whose `type` and
`version` select one model here; `parse_body` refuses unknown types, unknown
versions and bodies that do not fit. Key material never travels in clear: a
deposit is HPKE-sealed to the escrow's encryption key, a released K2 to the
receiver's. This module holds no logic beyond validation.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from broker.attest import Attestation
from broker.batches import (
    BATCH_LIMIT,
    BatchBody,
    BatchItem,
    BatchKind,
    BatchReplyBody,
    BatchResult,
)
from broker.bodies import ConsignmentId, Name, _Body, _Reply
from broker.canonical import B64, HEX_DIGEST
from broker.control_messages import (
    HISTORY_PAGE,
    AgreementBody,
    AgreementReplyBody,
    CosignBody,
    CosignerStatus,
    CosignReplyBody,
    HistoryBody,
    HistoryEntry,
    HistoryReplyBody,
    ReceiptBody,
    ReceiptReplyBody,
    ReceiverStatus,
    StatusBody,
    StatusReplyBody,
)
from broker.deposit import Mode

__all__ = [
    "BATCH_LIMIT",
    "HISTORY_PAGE",
    "MESSAGE_TYPES",
    "AgreementBody",
    "AgreementReplyBody",
    "BatchBody",
    "BatchItem",
    "BatchKind",
    "BatchReplyBody",
    "BatchResult",
    "ChunkBody",
    "CosignBody",
    "CosignReplyBody",
    "CosignerStatus",
    "DepositBody",
    "DepositReceiptBody",
    "ErrorBody",
    "ErrorCode",
    "EventBody",
    "EventKind",
    "HistoryBody",
    "HistoryEntry",
    "HistoryReplyBody",
    "KeyReleaseBody",
    "KeyRequestBody",
    "LookupBody",
    "LookupReplyBody",
    "MessageType",
    "NotifyBody",
    "ReceiptBody",
    "ReceiptReplyBody",
    "ReceiverStatus",
    "RevokeBody",
    "RevokeReplyBody",
    "StatusBody",
    "StatusReplyBody",
    "UnknownMessage",
    "error_reply",
    "parse_body",
]


class MessageType(StrEnum):
    # agent -> escrow
    DEPOSIT = "deposit"
    KEY_REQUEST = "key-request"
    REVOKE = "revoke"
    STATUS = "status"
    LOOKUP = "lookup"
    RECEIPT = "receipt"
    COSIGN = "cosign"
    AGREEMENT = "agreement"
    BATCH = "batch"
    HISTORY = "history"
    # escrow -> agent
    DEPOSIT_RECEIPT = "deposit-receipt"
    KEY_RELEASE = "key-release"
    REVOKE_REPLY = "revoke-reply"
    STATUS_REPLY = "status-reply"
    LOOKUP_REPLY = "lookup-reply"
    RECEIPT_REPLY = "receipt-reply"
    COSIGN_REPLY = "cosign-reply"
    AGREEMENT_REPLY = "agreement-reply"
    BATCH_REPLY = "batch-reply"
    HISTORY_REPLY = "history-reply"
    ERROR = "error"
    EVENT = "event"
    NOTIFY = "notify"
    # agent -> agent
    CHUNK = "consignment-chunk"


class DepositBody(_Body):
    """A Deposit's JSON, HPKE-sealed to the escrow (info binds the consignment id)."""

    consignment_id: str = ConsignmentId
    sealed_deposit: B64 = Field(repr=False, max_length=768 * 1024)


class DepositReceiptBody(_Reply):
    consignment_id: str = ConsignmentId
    sender: str = Name
    deposited_at: int = Field(ge=0)
    consignment_digest: str = Field(pattern=HEX_DIGEST.pattern)
    plaintext_commitment: str = Field(pattern=HEX_DIGEST.pattern)
    policy_digest: B64
    receivers: tuple[str, ...]


class KeyRequestBody(_Body):
    consignment_id: str = ConsignmentId
    #: The digest of the consignment the receiver holds; a mismatch is refused.
    consignment_digest: str = Field(pattern=HEX_DIGEST.pattern)


class KeyReleaseBody(_Reply):
    """Split mode: K2 HPKE-sealed to the receiver; escrowed: the receiver's wrapped K3."""

    consignment_id: str = ConsignmentId
    mode: Mode
    policy_digest: B64
    sealed_key_part: B64 = Field(repr=False)
    sender: str = Name
    consignment_digest: str = Field(pattern=HEX_DIGEST.pattern)
    released_at: int = Field(ge=0)


class RevokeBody(_Body):
    consignment_id: str = ConsignmentId
    #: Empty: every receiver.
    receivers: tuple[str, ...] = ()


class RevokeReplyBody(_Reply):
    consignment_id: str = ConsignmentId
    revoked: tuple[str, ...]


class LookupBody(_Body):
    name: str = Name


class LookupReplyBody(_Reply):
    name: str = Name
    #: PEM; the agent checks both against the CA and the CRL before use.
    signing_certificate: str = Field(max_length=16384)
    encryption_certificate: str = Field(max_length=16384)
    crl: B64 = Field(max_length=1 << 20)


class ErrorCode(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_TYPE = "unknown_type"
    UNAUTHENTICATED = "unauthenticated"
    REPLAYED = "replayed"
    UNKNOWN_CONSIGNMENT = "unknown_consignment"
    ALREADY_DEPOSITED = "already_deposited"
    NOT_SENDER = "not_sender"
    NOT_A_RECEIVER = "not_a_receiver"
    NOT_ALLOWED = "not_allowed"
    REVOKED = "revoked"
    NOT_YET = "not_yet"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"
    DIGEST_MISMATCH = "digest_mismatch"
    UNKNOWN_USER = "unknown_user"
    INTERNAL = "internal"
    #: Issued too long ago, in the future, or living too long (`detail` says which).
    STALE = "stale"
    #: The deposit's policy names another escrow.
    WRONG_ESCROW = "wrong_escrow"
    #: A receiver's key in the policy is not its current registered encryption key.
    WRONG_KEY = "wrong_key"
    #: The receiver did not ask within `ask_within_seconds` of its notification.
    ASK_WINDOW_CLOSED = "ask_window_closed"
    #: A control attribute this escrow does not enforce (none at present; kept
    #: so that an older agent's words for it stay valid).
    UNSUPPORTED = "unsupported"
    #: At release: the requester's current encryption key is not the one the
    #: policy recorded at deposit (it registered again since); the part goes only
    #: to the recorded key.
    KEY_CHANGED = "key_changed"
    #: The policy asks this receiver for a signed receipt before release.
    RECEIPT_REQUIRED = "receipt_required"
    #: Not every co-signer has signed yet.
    COSIGNATURES_PENDING = "cosignatures_pending"
    #: The trust policy no longer lets the sender send to this receiver.
    TRUST_WITHDRAWN = "trust_withdrawn"
    #: A receipt's or agreement's signature does not verify with the signer's
    #: signing certificate (forged, or made with another key).
    INVALID_SIGNATURE = "invalid_signature"
    #: A receipt or agreement is about another consignment, digest or policy, or
    #: names another signer (`detail` says which).
    SUBJECT_MISMATCH = "subject_mismatch"
    #: The requester is not one of the policy's co-signers.
    NOT_A_COSIGNER = "not_a_cosigner"
    #: This party's receipt or agreement for the consignment is in already.
    ALREADY_SIGNED = "already_signed"


class ErrorBody(_Reply):
    code: ErrorCode
    message: str = Field(max_length=1024)
    request_type: str = Field(default="", max_length=64)
    consignment_id: str | None = None
    #: A finer reason where one exists, e.g. the certificate or request check that
    #: failed (``revoked``, ``bad_signature``, ``expired``); for logs and users.
    detail: str | None = Field(default=None, max_length=64)


def error_reply(
    *,
    in_reply_to: str,
    code: ErrorCode,
    message: str,
    request_type: str,
    consignment_id: str | None = None,
    detail: str | None = None,
) -> ErrorBody:
    """The one way to build a refusal: the escrow's words cut to the field's limit."""
    return ErrorBody(
        in_reply_to=in_reply_to,
        code=code,
        message=message[:1024],
        request_type=request_type,
        consignment_id=consignment_id,
        detail=detail,
    )


class EventKind(StrEnum):
    DEPOSITED = "deposited"
    NOTIFIED = "notified"
    RELEASED = "released"
    DENIED = "denied"
    REVOKED = "revoked"
    #: A receiver's receipt came (`attestation` holds it).
    RECEIPT = "receipt"
    #: A co-signer is asked to co-sign (sent to the co-signer at deposit).
    COSIGN_REQUESTED = "cosign_requested"
    #: A co-signature came (`attestation` holds it); sent to the sender and
    #: every co-signer.
    COSIGNED = "cosigned"
    #: Every co-signer has signed; sent to the sender and every co-signer.
    COSIGNED_ALL = "cosigned_all"
    #: A receiver's window closed unused (`reason`: `not_after` or `ask_within`).
    EXPIRED = "expired"


class EventBody(_Body):
    """Sent to the sender's inbox for every action on its consignments, and to a
    co-signer's about the agreements it is asked for."""

    consignment_id: str = ConsignmentId
    kind: EventKind
    #: The receiver (or, for co-signing events, the co-signer) it is about.
    receiver: str | None = None
    reason: str | None = Field(default=None, max_length=1024)
    at: int = Field(ge=0)
    #: For `receipt` and `cosigned`: the signed statement, as the escrow verified it.
    attestation: Attestation | None = None


class NotifyBody(_Body):
    """Sent to a receiver's inbox: a consignment awaits it at the escrow."""

    consignment_id: str = ConsignmentId
    sender: str = Name
    escrow: str = Field(min_length=1, max_length=255)
    deposited_at: int = Field(ge=0)
    consignment_digest: str = Field(pattern=HEX_DIGEST.pattern)
    consignment_size: int = Field(ge=0)


class ChunkBody(_Body):
    """One piece of a consignment sent over RabbitMQ, sender to receiver."""

    consignment_id: str = ConsignmentId
    index: int = Field(ge=0)
    count: int = Field(ge=1)
    total_size: int = Field(ge=0)
    consignment_digest: str = Field(pattern=HEX_DIGEST.pattern)
    data: B64 = Field(repr=False, max_length=768 * 1024)


MESSAGE_TYPES: dict[tuple[str, int], type[BaseModel]] = {
    (MessageType.DEPOSIT, 1): DepositBody,
    (MessageType.KEY_REQUEST, 1): KeyRequestBody,
    (MessageType.REVOKE, 1): RevokeBody,
    (MessageType.STATUS, 1): StatusBody,
    (MessageType.LOOKUP, 1): LookupBody,
    (MessageType.RECEIPT, 1): ReceiptBody,
    (MessageType.COSIGN, 1): CosignBody,
    (MessageType.AGREEMENT, 1): AgreementBody,
    (MessageType.BATCH, 1): BatchBody,
    (MessageType.HISTORY, 1): HistoryBody,
    (MessageType.DEPOSIT_RECEIPT, 1): DepositReceiptBody,
    (MessageType.KEY_RELEASE, 1): KeyReleaseBody,
    (MessageType.REVOKE_REPLY, 1): RevokeReplyBody,
    (MessageType.STATUS_REPLY, 1): StatusReplyBody,
    (MessageType.LOOKUP_REPLY, 1): LookupReplyBody,
    (MessageType.RECEIPT_REPLY, 1): ReceiptReplyBody,
    (MessageType.COSIGN_REPLY, 1): CosignReplyBody,
    (MessageType.AGREEMENT_REPLY, 1): AgreementReplyBody,
    (MessageType.BATCH_REPLY, 1): BatchReplyBody,
    (MessageType.HISTORY_REPLY, 1): HistoryReplyBody,
    (MessageType.ERROR, 1): ErrorBody,
    (MessageType.EVENT, 1): EventBody,
    (MessageType.NOTIFY, 1): NotifyBody,
    (MessageType.CHUNK, 1): ChunkBody,
}


class UnknownMessage(ValueError):
    """The type/version pair is not one this build speaks, or the body does not fit."""

    def __init__(self, code: Literal["unknown_type", "malformed"], message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_body(type_: str, version: int, body: dict[str, Any]) -> BaseModel:
    model = MESSAGE_TYPES.get((type_, version))
    if model is None:
        raise UnknownMessage("unknown_type", f"unknown message type {type_!r} version {version}")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise UnknownMessage("malformed", f"{type_} body field {where}: {first['msg']}") from None

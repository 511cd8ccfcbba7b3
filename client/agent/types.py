"""What the agents hand back: plain, frozen records of verified messages.

This module must never do I/O. Times are whole Unix seconds (UTC), as on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from broker.attest import StatementKind
from broker.deposit import Mode, Policy
from broker.messages import DepositReceiptBody, EventKind
from client.format.manifest import FileEntry

__all__ = [
    "Agreement",
    "Attested",
    "Collected",
    "ConsignmentStatus",
    "Cosigner",
    "Event",
    "InboxContents",
    "Notification",
    "OpenedConsignment",
    "Party",
    "Receipt",
    "Received",
    "ReceiverState",
    "Refusal",
    "Revoked",
    "Sealed",
    "Sent",
    "Signed",
]


@dataclass(frozen=True)
class Party:
    """A registered party as the escrow's directory answered, checked against the
    CA and the CRL: its name and its two public keys."""

    name: str
    signing_key: Ed25519PublicKey
    encryption_key: X25519PublicKey
    signing_fingerprint: str


@dataclass(frozen=True)
class Receipt:
    """The escrow's signed deposit receipt (the signed bytes are kept in `signed`)."""

    consignment_id: str
    sender: str
    deposited_at: int
    consignment_digest: str
    plaintext_commitment: str
    policy_digest: bytes
    receivers: tuple[str, ...]
    request_id: str
    signed: bytes

    @classmethod
    def of(cls, body: DepositReceiptBody, request_id: str, signed: bytes) -> Receipt:
        """The receipt a `deposit-receipt` body states, kept with its request id
        and the signed bytes that carried it."""
        return cls(
            consignment_id=body.consignment_id,
            sender=body.sender,
            deposited_at=body.deposited_at,
            consignment_digest=body.consignment_digest,
            plaintext_commitment=body.plaintext_commitment,
            policy_digest=body.policy_digest,
            receivers=tuple(body.receivers),
            request_id=request_id,
            signed=signed,
        )


@dataclass(frozen=True)
class Sealed:
    """A consignment sealed and deposited: the file, and the escrow's receipt."""

    consignment_id: str
    path: Path
    mode: Mode
    receivers: tuple[str, ...]
    consignment_digest: str
    consignment_size: int
    receipt: Receipt


@dataclass(frozen=True)
class Sent:
    """A consignment sent over the broker to receivers' inboxes."""

    consignment_id: str
    receivers: tuple[str, ...]
    chunks: int
    size: int


@dataclass(frozen=True)
class Revoked:
    """The receivers a revoke covers (all revoked from then on). `already_revoked`
    were revoked before this request; `releases` is how often each of them had
    been given the key part (None: the escrow's status could not be read):
    revoking after a release only stops further releases."""

    consignment_id: str
    revoked: tuple[str, ...]
    already_revoked: tuple[str, ...] = ()
    releases: Mapping[str, int] | None = None


@dataclass(frozen=True)
class ReceiverState:
    """One receiver as the escrow's status says: notified, asked, released,
    receipt, window, expired, denied (the last refusal's code, and when)."""

    name: str
    notified_at: int | None
    releases: int
    revoked_at: int | None
    last_denied: str | None
    last_denied_at: int | None = None
    requested_at: int | None = None
    released_at: int | None = None
    receipt_required: bool = False
    receipt_at: int | None = None
    closes_at: int | None = None
    expired_at: int | None = None


@dataclass(frozen=True)
class Cosigner:
    """A co-signer the policy names, and when the escrow recorded its signature."""

    name: str
    signed_at: int | None


@dataclass(frozen=True)
class ConsignmentStatus:
    consignment_id: str
    sender: str
    mode: Mode
    deposited_at: int
    receivers: tuple[ReceiverState, ...]
    cosigners: tuple[Cosigner, ...] = ()


@dataclass(frozen=True)
class Attested:
    """A receipt (proof of delivery) or a co-signature, as the escrow forwarded it
    and this agent verified it: the signed statement's content, the signer's
    certificate fingerprint, and whether it verifies now (else `problem`)."""

    kind: StatementKind
    consignment_id: str
    signer: str
    signed_at: int
    recorded_at: int
    consignment_digest: str
    policy_digest: bytes
    certificate_fingerprint: str
    verified: bool
    problem: str | None
    #: The escrow's signed event that carried it (the proof, with `signature`).
    event_wire: bytes
    signature: bytes


@dataclass(frozen=True)
class Agreement:
    """What a co-signer is asked to sign, as the escrow holds it; the policy's
    digest was recomputed and matches `policy_digest`."""

    consignment_id: str
    sender: str
    deposited_at: int
    consignment_digest: str
    consignment_size: int
    policy: Policy
    policy_digest: bytes
    cosigners: tuple[Cosigner, ...]


@dataclass(frozen=True)
class Signed:
    """A receipt or agreement the escrow accepted (or had accepted before)."""

    kind: StatementKind
    consignment_id: str
    signer: str
    signed_at: int
    #: When the escrow recorded it (asking again gives the stored answer); None
    #: if the escrow refused it as in already (`already_signed`), e.g. when it
    #: was sent from another agent state.
    recorded_at: int | None
    #: For an agreement: every co-signer and when each signed.
    cosigners: tuple[Cosigner, ...] = ()


@dataclass(frozen=True)
class Event:
    """An escrow event about one of the sender's consignments (verified)."""

    consignment_id: str
    kind: EventKind
    receiver: str | None
    reason: str | None
    at: int
    received_at: int


@dataclass(frozen=True)
class Notification:
    """The escrow's word that a consignment awaits this receiver (verified)."""

    consignment_id: str
    sender: str
    escrow: str
    deposited_at: int
    consignment_digest: str
    consignment_size: int
    received_at: int


@dataclass(frozen=True)
class Received:
    """A consignment arriving in chunks: `state` is "partial", "complete" (then
    `path` is the checked file), "failed" (then `reason` says why), "opened"
    (its file was removed once opened) or "removed" (by `gc`, unopened)."""

    consignment_id: str
    sender: str
    consignment_digest: str
    size: int
    chunks: int
    chunks_received: int
    state: str
    path: Path | None
    reason: str | None


@dataclass(frozen=True)
class Refusal:
    """A message that failed a check and was not used."""

    type: str
    reason: str
    message: str
    received_at: int


@dataclass(frozen=True)
class InboxContents:
    notifications: tuple[Notification, ...]
    received: tuple[Received, ...]
    events: tuple[Event, ...]
    refused: tuple[Refusal, ...]


@dataclass(frozen=True)
class OpenedConsignment:
    """A consignment opened: who sent it, when the escrow released it, the files."""

    consignment_id: str
    sender: str
    mode: Mode
    destination: Path
    files: tuple[FileEntry, ...]
    released_at: int
    #: Set when the sender asked for a receipt and this agent signed and sent it
    #: before the key was released (the time it signed).
    receipt_signed_at: int | None = None


@dataclass(frozen=True)
class Collected:
    """What `gc` reclaimed: files removed and their bytes, and the agent
    database's size before and after compacting."""

    files: int
    file_bytes: int
    database_before: int
    database_after: int

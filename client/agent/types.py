"""What the agents hand back: plain, frozen records of verified messages.

This module must never do I/O. Times are whole Unix seconds (UTC), as on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from broker.deposit import Mode
from broker.messages import EventKind
from client.format.manifest import FileEntry

__all__ = [
    "ConsignmentStatus",
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
    name: str
    notified_at: int | None
    releases: int
    revoked_at: int | None
    last_denied: str | None


@dataclass(frozen=True)
class ConsignmentStatus:
    consignment_id: str
    sender: str
    mode: Mode
    deposited_at: int
    receivers: tuple[ReceiverState, ...]


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
    `path` is the checked file) or "failed" (then `reason` says why)."""

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

"""The client: sealing and opening consignments, agents and the command line.

Public modules: `consignment` (seal, unseal, inspect and their types), `agent`
(SenderAgent, ReceiverAgent and the records they return), `home` (a user's local
identities), `trust` (checks of certificates before they are relied on) and
`errors`. Every public name is exported here, once, and imported on first use.
`cli` is the `consign` command and `demo` the story it shows (`consign demo`).
Internal: `format/` (the consignment file format), the modules inside `agent/`
(its `__init__` says which does what), and modules starting with an underscore.

`client` uses `broker` and must never import `escrow_worker` at import time:
only `demo` uses it, inside the functions that run the demo, and `cli` mounts
`consign escrow` (the operator's commands) on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from client.agent import (
        Agreement,
        Attested,
        ConsignmentStatus,
        Cosigner,
        CosignerAgent,
        Event,
        InboxContents,
        ItemResult,
        Notification,
        OpenedConsignment,
        Party,
        Receipt,
        Received,
        ReceiverAgent,
        ReceiverState,
        Refusal,
        Revoked,
        Sealed,
        SealJob,
        SenderAgent,
        Sent,
        ServeOptions,
        Signed,
    )
    from client.consignment import (
        ConsignmentInfo,
        FileEntry,
        Opened,
        Recipient,
        Sender,
        Source,
        consignment_digest,
        inspect,
        seal,
        seal_async,
        unseal,
        unseal_async,
    )
    from client.errors import (
        AgentError,
        ClientError,
        EscrowRefused,
        IdentityError,
        NoReply,
        OpenError,
        SealError,
        UnsafePathError,
        UntrustedCertificate,
        UntrustedMessage,
    )
    from client.home import DEFAULT_HOME, CreatedRequest, IdentityHome, load_identity
    from client.trust import (
        verify_encryption_certificate,
        verify_signing_certificate,
    )

_EXPORTS = {
    "DEFAULT_HOME": "client.home",
    "AgentError": "client.errors",
    "ClientError": "client.errors",
    "Signed": "client.agent",
    "CosignerAgent": "client.agent",
    "Cosigner": "client.agent",
    "Attested": "client.agent",
    "Agreement": "client.agent",
    "ConsignmentInfo": "client.consignment",
    "ConsignmentStatus": "client.agent",
    "CreatedRequest": "client.home",
    "EscrowRefused": "client.errors",
    "Event": "client.agent",
    "FileEntry": "client.consignment",
    "IdentityError": "client.errors",
    "IdentityHome": "client.home",
    "InboxContents": "client.agent",
    "ItemResult": "client.agent",
    "NoReply": "client.errors",
    "Notification": "client.agent",
    "OpenError": "client.errors",
    "Opened": "client.consignment",
    "OpenedConsignment": "client.agent",
    "Party": "client.agent",
    "Receipt": "client.agent",
    "Received": "client.agent",
    "ReceiverAgent": "client.agent",
    "ReceiverState": "client.agent",
    "Recipient": "client.consignment",
    "Refusal": "client.agent",
    "Revoked": "client.agent",
    "SealError": "client.errors",
    "Sealed": "client.agent",
    "SealJob": "client.agent",
    "ServeOptions": "client.agent",
    "Sender": "client.consignment",
    "SenderAgent": "client.agent",
    "Sent": "client.agent",
    "Source": "client.consignment",
    "UnsafePathError": "client.errors",
    "UntrustedCertificate": "client.errors",
    "UntrustedMessage": "client.errors",
    "consignment_digest": "client.consignment",
    "inspect": "client.consignment",
    "load_identity": "client.home",
    "seal": "client.consignment",
    "seal_async": "client.consignment",
    "unseal": "client.consignment",
    "unseal_async": "client.consignment",
    "verify_encryption_certificate": "client.trust",
    "verify_signing_certificate": "client.trust",
}

__all__ = [
    "DEFAULT_HOME",
    "AgentError",
    "Agreement",
    "Attested",
    "ClientError",
    "ConsignmentInfo",
    "ConsignmentStatus",
    "Cosigner",
    "CosignerAgent",
    "CreatedRequest",
    "EscrowRefused",
    "Event",
    "FileEntry",
    "IdentityError",
    "IdentityHome",
    "InboxContents",
    "ItemResult",
    "NoReply",
    "Notification",
    "OpenError",
    "Opened",
    "OpenedConsignment",
    "Party",
    "Receipt",
    "Received",
    "ReceiverAgent",
    "ReceiverState",
    "Recipient",
    "Refusal",
    "Revoked",
    "SealError",
    "SealJob",
    "Sealed",
    "Sender",
    "SenderAgent",
    "Sent",
    "ServeOptions",
    "Signed",
    "Source",
    "UnsafePathError",
    "UntrustedCertificate",
    "UntrustedMessage",
    "consignment_digest",
    "inspect",
    "load_identity",
    "seal",
    "seal_async",
    "unseal",
    "unseal_async",
    "verify_encryption_certificate",
    "verify_signing_certificate",
]

__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)

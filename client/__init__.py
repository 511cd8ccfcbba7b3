"""The client: sealing and opening consignments, agents and the command line.

Public surface: `client.consignment` (seal, unseal and their types), identities
and certificate checks, and `client.errors`. Modules starting with an underscore
are internal.
"""

from client._home import DEFAULT_HOME, CreatedRequest, IdentityHome, load_identity
from client._trust import receiver_key, verify_encryption_certificate, verify_signing_certificate
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
    ClientError,
    IdentityError,
    OpenError,
    SealError,
    UnsafePathError,
    UntrustedCertificate,
)

__all__ = [
    "DEFAULT_HOME",
    "ClientError",
    "ConsignmentInfo",
    "CreatedRequest",
    "FileEntry",
    "IdentityError",
    "IdentityHome",
    "OpenError",
    "Opened",
    "Recipient",
    "SealError",
    "Sender",
    "Source",
    "UnsafePathError",
    "UntrustedCertificate",
    "consignment_digest",
    "inspect",
    "load_identity",
    "receiver_key",
    "seal",
    "seal_async",
    "unseal",
    "unseal_async",
    "verify_encryption_certificate",
    "verify_signing_certificate",
]

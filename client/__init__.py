"""The client: sealing and opening consignments, agents and the command line.

Public surface: `client.consignment` (seal, unseal and their types) and
`client.errors`. Modules starting with an underscore are internal.
"""

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
from client.errors import ClientError, OpenError, SealError, UnsafePathError

__all__ = [
    "ClientError",
    "ConsignmentInfo",
    "FileEntry",
    "OpenError",
    "Opened",
    "Recipient",
    "SealError",
    "Sender",
    "Source",
    "UnsafePathError",
    "consignment_digest",
    "inspect",
    "seal",
    "seal_async",
    "unseal",
    "unseal_async",
]

"""Sender and receiver agents, the consignment format, and the `consign` CLI.

Everything a caller needs is exported here; modules starting with `_` are
internal and may change.
"""

from client._home import DEFAULT_HOME, CreatedRequest, IdentityHome, load_identity
from client._trust import receiver_key, verify_encryption_certificate, verify_signing_certificate
from client.errors import ClientError, IdentityError, UntrustedCertificate

__all__ = [
    "DEFAULT_HOME",
    "ClientError",
    "CreatedRequest",
    "IdentityError",
    "IdentityHome",
    "UntrustedCertificate",
    "load_identity",
    "receiver_key",
    "verify_encryption_certificate",
    "verify_signing_certificate",
]

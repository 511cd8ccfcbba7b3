"""The wire: message models, signed envelopes, topology and transports.

This package is shared by the client and the escrow worker and imports neither.
"""

from broker.deposit import (
    ControlAttributes,
    Deposit,
    KeyRelease,
    Mode,
    Policy,
    ReceiverSpec,
    key_id,
)

__all__ = [
    "ControlAttributes",
    "Deposit",
    "KeyRelease",
    "Mode",
    "Policy",
    "ReceiverSpec",
    "key_id",
]

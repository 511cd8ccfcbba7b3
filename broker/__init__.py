"""The wire between agents and the escrow: messages, signed envelopes, topology,
transports.

`broker` must never import `client` or `escrow_worker`; they depend on it.
"""

from __future__ import annotations

from broker._amqp import AmqpTransport
from broker._hpke import (
    DEPOSIT_INFO,
    RELEASE_INFO,
    open_deposit,
    open_key_part,
    seal_deposit,
    seal_key_part,
)
from broker._inprocess import InProcessBroker, InProcessTransport
from broker.deposit import (
    ControlAttributes,
    Deposit,
    KeyRelease,
    Mode,
    Policy,
    ReceiverSpec,
    key_id,
)
from broker.envelope import (
    MAX_ENVELOPE_BYTES,
    SIGNATURE_CONTEXT,
    Envelope,
    SignedEnvelope,
    canonical_json,
    new_envelope,
    parse_canonical_json,
    sign_envelope,
    verify_envelope_signature,
)
from broker.errors import BrokerError, EnvelopeError, SealedMessageError, TransportError
from broker.settings import BrokerSettings
from broker.transport import (
    DEFAULT_PREFETCH,
    ESCROW,
    DeadLetter,
    Deliveries,
    Delivery,
    Destination,
    EscrowQueue,
    Inbox,
    Message,
    Requeue,
    Transport,
    TransportConfig,
)

__all__ = [
    "DEFAULT_PREFETCH",
    "DEPOSIT_INFO",
    "ESCROW",
    "MAX_ENVELOPE_BYTES",
    "RELEASE_INFO",
    "SIGNATURE_CONTEXT",
    "AmqpTransport",
    "BrokerError",
    "BrokerSettings",
    "ControlAttributes",
    "DeadLetter",
    "Deliveries",
    "Delivery",
    "Deposit",
    "Destination",
    "Envelope",
    "EnvelopeError",
    "EscrowQueue",
    "InProcessBroker",
    "InProcessTransport",
    "Inbox",
    "KeyRelease",
    "Message",
    "Mode",
    "Policy",
    "ReceiverSpec",
    "Requeue",
    "SealedMessageError",
    "SignedEnvelope",
    "Transport",
    "TransportConfig",
    "TransportError",
    "canonical_json",
    "connect_transport",
    "key_id",
    "new_envelope",
    "open_deposit",
    "open_key_part",
    "parse_canonical_json",
    "seal_deposit",
    "seal_key_part",
    "sign_envelope",
    "verify_envelope_signature",
]

_MEMORY_URL = "memory://"


def connect_transport(url: str | None, config: TransportConfig | None = None) -> Transport:
    """A transport for `url`, not yet started: use ``async with connect_transport(url) as t``.

    ``None`` or ``memory://`` gives a fresh `InProcessTransport` (the embedded
    default; share it, or its `broker`, between the parts of one process);
    ``amqp://`` or ``amqps://`` an `AmqpTransport`.
    """
    if url is None or url == _MEMORY_URL:
        return InProcessTransport(config)
    scheme = url.partition("://")[0].lower()
    if scheme in ("amqp", "amqps"):
        return AmqpTransport(url, config)
    raise BrokerError(
        f"unsupported transport URL scheme {scheme!r}",
        hint="use memory:// (in-process) or amqp://user:password@host:5672/",
    )

"""The wire between agents and the escrow: messages, signed envelopes, topology,
transports.

`broker` must never import `client` or `escrow_worker`; they depend on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from broker._amqp import AmqpTransport
    from broker._connect import connect_transport
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

_EXPORTS = {
    "DEFAULT_PREFETCH": "broker.transport",
    "DEPOSIT_INFO": "broker._hpke",
    "ESCROW": "broker.transport",
    "MAX_ENVELOPE_BYTES": "broker.envelope",
    "RELEASE_INFO": "broker._hpke",
    "SIGNATURE_CONTEXT": "broker.envelope",
    "AmqpTransport": "broker._amqp",
    "BrokerError": "broker.errors",
    "BrokerSettings": "broker.settings",
    "ControlAttributes": "broker.deposit",
    "DeadLetter": "broker.transport",
    "Deliveries": "broker.transport",
    "Delivery": "broker.transport",
    "Deposit": "broker.deposit",
    "Destination": "broker.transport",
    "Envelope": "broker.envelope",
    "EnvelopeError": "broker.errors",
    "EscrowQueue": "broker.transport",
    "InProcessBroker": "broker._inprocess",
    "InProcessTransport": "broker._inprocess",
    "Inbox": "broker.transport",
    "KeyRelease": "broker.deposit",
    "Message": "broker.transport",
    "Mode": "broker.deposit",
    "Policy": "broker.deposit",
    "ReceiverSpec": "broker.deposit",
    "Requeue": "broker.transport",
    "SealedMessageError": "broker.errors",
    "SignedEnvelope": "broker.envelope",
    "Transport": "broker.transport",
    "TransportConfig": "broker.transport",
    "TransportError": "broker.errors",
    "canonical_json": "broker.envelope",
    "connect_transport": "broker._connect",
    "key_id": "broker.deposit",
    "new_envelope": "broker.envelope",
    "open_deposit": "broker._hpke",
    "open_key_part": "broker._hpke",
    "parse_canonical_json": "broker.envelope",
    "seal_deposit": "broker._hpke",
    "seal_key_part": "broker._hpke",
    "sign_envelope": "broker.envelope",
    "verify_envelope_signature": "broker.envelope",
}

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

__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)

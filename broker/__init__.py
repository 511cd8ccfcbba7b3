"""The wire: message models, signed envelopes, transports.

`broker` uses neither `client` nor `escrow_worker`; both use it.
"""

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
from broker.errors import BrokerError, EnvelopeError

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "SIGNATURE_CONTEXT",
    "BrokerError",
    "Envelope",
    "EnvelopeError",
    "SignedEnvelope",
    "canonical_json",
    "new_envelope",
    "parse_canonical_json",
    "sign_envelope",
    "verify_envelope_signature",
]

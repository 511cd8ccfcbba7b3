"""Signed statements a party makes about a deposited consignment: a receiver's
receipt (proof of delivery, which the escrow may require before it releases)
and a co-signer's agreement (every co-signer's, before anyone gets the key).

A `Statement` names its kind, the consignment, its digest, the policy digest,
the signer and when it signed. Its signature is Ed25519 with the signer's
signing key over a context of its own kind, then the statement's canonical JSON:

    receipt:   "consignment/v1 receipt signature"   || 0x00 || canonical(statement)
    agreement: "consignment/v1 agreement signature" || 0x00 || canonical(statement)

so neither can stand in for the other, for a signed envelope
(`broker.envelope.SIGNATURE_CONTEXT`) or for a consignment's header or trailer.
An `Attestation` is what the escrow forwards and an agent keeps: the statement,
its signature and the signer's signing certificate (PEM), which a verifier
checks against its own CA. Pure: this module must never do I/O, and never
verify a signature without its kind's context.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker.canonical import B64, HEX_DIGEST, HEX_ID, NAME, canonical_json

__all__ = [
    "AGREEMENT_CONTEXT",
    "RECEIPT_CONTEXT",
    "Attestation",
    "Statement",
    "StatementKind",
    "sign_statement",
    "statement_signature_valid",
]

RECEIPT_CONTEXT: Final = b"consignment/v1 receipt signature\x00"
AGREEMENT_CONTEXT: Final = b"consignment/v1 agreement signature\x00"


class StatementKind(StrEnum):
    #: A receiver received the consignment (this digest, under this policy).
    RECEIPT = "receipt"
    #: A co-signer agrees to the consignment (this digest, under this policy).
    AGREEMENT = "agreement"


_CONTEXTS: Final = {
    StatementKind.RECEIPT: RECEIPT_CONTEXT,
    StatementKind.AGREEMENT: AGREEMENT_CONTEXT,
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Statement(_Frozen):
    """What a receipt or an agreement says; signed as `signed_bytes()`."""

    kind: StatementKind
    consignment_id: str = Field(pattern=HEX_ID.pattern)
    consignment_digest: str = Field(pattern=HEX_DIGEST.pattern)
    policy_digest: B64
    #: The signer's registered name; its signing certificate verifies the signature.
    signer: str = Field(pattern=NAME.pattern)
    #: When the signer signed, Unix seconds (its own clock).
    signed_at: int = Field(ge=0)

    @model_validator(mode="after")
    def _digest_length(self) -> Statement:
        if len(self.policy_digest) != 32:
            raise ValueError("policy_digest must be 32 bytes")
        return self

    def signed_bytes(self) -> bytes:
        """The exact bytes the signature covers: the kind's context, then the
        statement's canonical JSON."""
        return _CONTEXTS[self.kind] + canonical_json(self.model_dump(mode="json"))


def sign_statement(statement: Statement, key: Ed25519PrivateKey) -> bytes:
    """The 64-byte Ed25519 signature of `statement` with the signer's key."""
    return key.sign(statement.signed_bytes())


def statement_signature_valid(
    statement: Statement, signature: bytes, key: Ed25519PublicKey
) -> bool:
    """Whether `signature` is `key`'s over `statement` (in its kind's context)."""
    try:
        key.verify(signature, statement.signed_bytes())
    except InvalidSignature:
        return False
    return True


class Attestation(_Frozen):
    """A signed statement as the escrow forwards it and an agent keeps it: proof
    on its own, given the CA certificate."""

    statement: Statement
    signature: B64 = Field(min_length=64, max_length=64)
    #: The signer's signing certificate (PEM) that the escrow verified it with.
    certificate: str = Field(max_length=16384)

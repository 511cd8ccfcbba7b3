"""HPKE (RFC 9180) sealing of what travels between agents and the escrow.

Two things are sealed with the suite of docs/format.md (DHKEM(X25519,
HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, base mode):

- a `Deposit`, by the sender to the escrow's encryption certificate, with
  ``info = "consignment/v1 deposit" || 0x00 || consignment id (16 bytes)``;
- a released key part (K2), by the escrow to the receiver's encryption
  certificate, with ``info = "consignment/v1 release" || 0x00 || consignment id
  || policy digest``.

Both the client and the escrow worker use these functions, so the info strings
exist once. This module never sees a certificate (callers check them) and must
never log or put key material in an error message.
"""

from __future__ import annotations

import json

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from pydantic import ValidationError

from broker.canonical import HEX_ID, canonical_json
from broker.deposit import Deposit
from broker.errors import SealedMessageError

__all__ = [
    "DEPOSIT_INFO",
    "RELEASE_INFO",
    "open_deposit",
    "open_key_part",
    "seal_deposit",
    "seal_key_part",
]

_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
DEPOSIT_INFO = b"consignment/v1 deposit\x00"
RELEASE_INFO = b"consignment/v1 release\x00"
_KEY_PART_LEN = 32


def _id_bytes(consignment_id: str) -> bytes:
    if not HEX_ID.match(consignment_id):
        raise ValueError("consignment id must be 32 lowercase hex digits")
    return bytes.fromhex(consignment_id)


def _deposit_info(consignment_id: str) -> bytes:
    return DEPOSIT_INFO + _id_bytes(consignment_id)


def _release_info(consignment_id: str, policy_digest: bytes) -> bytes:
    if len(policy_digest) != 32:
        raise ValueError("policy digest must be 32 bytes")
    return RELEASE_INFO + _id_bytes(consignment_id) + policy_digest


def seal_deposit(deposit: Deposit, escrow_key: X25519PublicKey) -> bytes:
    """The deposit's canonical JSON sealed to the escrow (`DepositBody.sealed_deposit`).

    `escrow_key` must come from the escrow's encryption certificate, checked by
    the caller (CA, escrow EKU, name, CRL)."""
    plaintext = canonical_json(deposit.model_dump(mode="json"))
    return _SUITE.encrypt(plaintext, escrow_key, info=_deposit_info(deposit.consignment_id))


def open_deposit(sealed: bytes, consignment_id: str, escrow_key: X25519PrivateKey) -> Deposit:
    """Open and validate a sealed deposit for `consignment_id`.

    Raises `SealedMessageError` alike for every failure (wrong key, another
    consignment's deposit, altered, not a valid Deposit, or for another id)."""
    try:
        plaintext = _SUITE.decrypt(sealed, escrow_key, info=_deposit_info(consignment_id))
        deposit = Deposit.model_validate(json.loads(plaintext))
    except (InvalidTag, ValueError, ValidationError, RecursionError) as exc:
        raise SealedMessageError(
            "the sealed deposit cannot be opened or is not a valid deposit",
            "seal the deposit to this escrow's current encryption certificate",
        ) from exc
    if deposit.consignment_id != consignment_id:
        raise SealedMessageError(
            "the sealed deposit is for another consignment",
            "send the deposit with the consignment id it was sealed for",
        )
    return deposit


def seal_key_part(
    part: bytes, receiver_key: X25519PublicKey, consignment_id: str, policy_digest: bytes
) -> bytes:
    """K2 sealed to one receiver (`KeyReleaseBody.sealed_key_part`, split mode)."""
    if len(part) != _KEY_PART_LEN:
        raise ValueError("a key part is 32 bytes")
    return _SUITE.encrypt(part, receiver_key, info=_release_info(consignment_id, policy_digest))


def open_key_part(
    sealed: bytes, receiver_key: X25519PrivateKey, consignment_id: str, policy_digest: bytes
) -> bytes:
    """Open a released K2 with the receiver's private key. Raises `SealedMessageError`."""
    try:
        info = _release_info(consignment_id, policy_digest)
        part = _SUITE.decrypt(sealed, receiver_key, info=info)
    except (InvalidTag, ValueError) as exc:
        raise SealedMessageError(
            "the released key part cannot be opened",
            "it was sealed to another key or for another consignment or policy",
        ) from exc
    if len(part) != _KEY_PART_LEN:
        raise SealedMessageError("the released key part has the wrong length")
    return part

"""HPKE (RFC 9180) for key material on the wire: the deposit an agent seals to the
escrow, and the K2 the escrow seals to one receiver (docs/protocol.md).

One suite, the one of docs/format.md: base mode, DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, ChaCha20-Poly1305. The `info` binds each ciphertext to its purpose
and consignment, so a sealed deposit can never be taken for a sealed key part,
or for another consignment's. Both sides (client and escrow_worker) use these
functions, so the labels are written once. This module must never log or keep a
key or a plaintext.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from pydantic import ValidationError

from broker.deposit import HEX_ID, Deposit
from broker.envelope import canonical_json
from broker.errors import BrokerError

__all__ = [
    "DEPOSIT_LABEL",
    "RELEASE_LABEL",
    "SealedDataError",
    "open_deposit",
    "open_key_part",
    "seal_deposit",
    "seal_key_part",
]

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
DEPOSIT_LABEL = b"consignment/v1 deposit\x00"
RELEASE_LABEL = b"consignment/v1 release\x00"
_KEY_PART_LEN = 32


class SealedDataError(BrokerError):
    """Sealed key material cannot be opened: wrong key, another consignment, altered.

    Deliberately says nothing about which: it must be no oracle."""


def _id_bytes(consignment_id: str) -> bytes:
    if not HEX_ID.match(consignment_id):
        raise ValueError("consignment_id must be 32 lowercase hex digits")
    return bytes.fromhex(consignment_id)


def _deposit_info(consignment_id: str) -> bytes:
    return DEPOSIT_LABEL + _id_bytes(consignment_id)


def _release_info(consignment_id: str, policy_digest: bytes) -> bytes:
    if len(policy_digest) != 32:
        raise ValueError("policy_digest must be 32 bytes")
    return RELEASE_LABEL + _id_bytes(consignment_id) + policy_digest


def seal_deposit(deposit: Deposit, escrow_key: X25519PublicKey) -> bytes:
    """The deposit's canonical JSON, sealed to the escrow's encryption key."""
    plaintext = canonical_json(deposit.model_dump(mode="json"))
    return SUITE.encrypt(plaintext, escrow_key, info=_deposit_info(deposit.consignment_id))


def open_deposit(sealed: bytes, consignment_id: str, escrow_key: X25519PrivateKey) -> Deposit:
    """Open a sealed deposit for `consignment_id`; it must be that consignment's."""
    try:
        plaintext = SUITE.decrypt(sealed, escrow_key, info=_deposit_info(consignment_id))
    except (InvalidTag, ValueError) as exc:
        raise SealedDataError(
            "the sealed deposit cannot be opened",
            "it was sealed for another escrow key or consignment, or altered on the way",
        ) from exc
    try:
        deposit = Deposit.model_validate_json(plaintext)
    except ValidationError as exc:
        raise SealedDataError(
            "the sealed deposit does not hold a valid deposit", "the sender must seal again"
        ) from exc
    if deposit.consignment_id != consignment_id:
        raise SealedDataError(
            "the sealed deposit is for another consignment", "the sender must seal again"
        )
    return deposit


def seal_key_part(
    key_part: bytes, receiver_key: X25519PublicKey, consignment_id: str, policy_digest: bytes
) -> bytes:
    """K2 sealed to one receiver's encryption key (a split-mode key release)."""
    return SUITE.encrypt(key_part, receiver_key, info=_release_info(consignment_id, policy_digest))


def open_key_part(
    sealed: bytes, receiver_key: X25519PrivateKey, consignment_id: str, policy_digest: bytes
) -> bytes:
    """The receiver's side of `seal_key_part`: K2 (32 bytes)."""
    try:
        key_part = SUITE.decrypt(
            sealed, receiver_key, info=_release_info(consignment_id, policy_digest)
        )
    except (InvalidTag, ValueError) as exc:
        raise SealedDataError(
            "the released key part cannot be opened with this identity",
            "it was released to another receiver or for another consignment",
        ) from exc
    if len(key_part) != _KEY_PART_LEN:
        raise SealedDataError("the released key part has the wrong length")
    return key_part

"""HPKE (RFC 9180) sealing of what travels between agents and the escrow.

Two things are sealed with the suite of docs/format.md (DHKEM(X25519,
HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, base mode):

- a `Deposit`, by the sender to the escrow's encryption certificate, with
  ``info = "consignment/v1 deposit" || 0x00 || consignment id (16 bytes)``;
- a released key part (K2), by the escrow to the receiver's encryption
  certificate, with ``info = "consignment/v1 release" || 0x00 || consignment id
  || policy digest``.

"Sealed" is HPKE single-shot encryption: ``enc`` (the 32-byte X25519 encapsulated
key) followed by the AEAD ciphertext with its 16-byte tag, with empty associated
data. Both the client and the escrow worker use these functions, so the info
strings exist once. This module never sees a certificate (callers check them) and must
never log or put key material in an error message.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from pydantic import ValidationError

from broker.canonical import HEX_ID, canonical_json, parse_canonical_json
from broker.deposit import Deposit
from broker.errors import EnvelopeError, SealedMessageError

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

    Raises `SealedMessageError`: one message for every failure to open (wrong
    key, another consignment's info, altered); once opened, a plaintext that is
    not canonical JSON, not exactly the canonical encoding of a valid `Deposit`
    (every field present, as `seal_deposit` writes it), or for another id, is
    refused naming what is wrong (`reason`)."""
    try:
        plaintext = _SUITE.decrypt(sealed, escrow_key, info=_deposit_info(consignment_id))
    except (InvalidTag, ValueError) as exc:
        raise SealedMessageError(
            "the sealed deposit cannot be opened: it is not sealed to this escrow's encryption"
            " key with this consignment id, or it was altered",
            "seal the deposit to this escrow's current encryption certificate",
        ) from exc
    deposit = _deposit(plaintext)
    if deposit.consignment_id != consignment_id:
        raise SealedMessageError(
            "the sealed deposit is for another consignment",
            "send the deposit with the consignment id it was sealed for",
            reason="wrong_consignment",
        )
    return deposit


_DEPOSIT_HINT = "the deposit is canonical JSON with every field (docs/protocol.md, The deposit)"


def _deposit(plaintext: bytes) -> Deposit:
    try:
        value = parse_canonical_json(plaintext, "the deposit JSON")
    except EnvelopeError as exc:
        reason = "not_canonical" if exc.reason == "not_canonical" else "not_json"
        raise SealedMessageError(exc.message, _DEPOSIT_HINT, reason=reason) from exc
    try:
        deposit = Deposit.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "deposit"
        raise SealedMessageError(
            f"the deposit is not valid: field {where}: {first['msg']}",
            _DEPOSIT_HINT,
            reason="invalid",
        ) from None
    again = deposit.model_dump(mode="json")
    if canonical_json(again) != plaintext:
        where = _difference(value, again) or "deposit"
        raise SealedMessageError(
            f"the deposit JSON is not the canonical encoding of a deposit: field {where}"
            " is missing, extra or of another form",
            _DEPOSIT_HINT,
            reason="not_canonical",
        )
    return deposit


def _difference(given: Any, encoded: Any, path: str = "") -> str | None:
    """The first path where `given` and the model's own encoding differ."""
    if isinstance(given, dict) and isinstance(encoded, dict):
        for key in sorted(set(given) | set(encoded)):
            if key not in given or key not in encoded:
                return f"{path}{key}"
            found = _difference(given[key], encoded[key], f"{path}{key}.")
            if found is not None:
                return found
        return None
    if isinstance(given, list) and isinstance(encoded, list) and len(given) == len(encoded):
        for index, (a, b) in enumerate(zip(given, encoded, strict=True)):
            found = _difference(a, b, f"{path}{index}.")
            if found is not None:
                return found
        return None
    return None if given == encoded and type(given) is type(encoded) else path.rstrip(".")


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

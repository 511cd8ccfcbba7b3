"""The key schedule: how content, payload, MAC and commitment keys are derived,
and how key parts are wrapped to receivers with HPKE (RFC 9180).

Pure functions over bytes, no I/O. This module must never use a key for two
purposes: every derivation has its own HKDF info label.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.deposit import Mode

KEY_LEN = 32
WRAP_LEN = 80  # HPKE enc (32) || AEAD(32-byte key) (32 + 16)
_LABEL = b"consignment/v1 "
_HPKE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_MODE_BYTE = {Mode.SPLIT: b"\x01", Mode.ESCROWED: b"\x02"}


class UnwrapError(Exception):
    """HPKE could not open a wrapped key part (wrong key, wrong context, altered)."""


def _hkdf(ikm: bytes, *, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=salt, info=info).derive(ikm)


def content_key(mode: Mode, parts: bytes, consignment_id: bytes, policy_digest: bytes) -> bytes:
    """K = HKDF(K1 || K2, or K3; salt = id; info = label || mode || policy digest)."""
    expected = 2 * KEY_LEN if mode is Mode.SPLIT else KEY_LEN
    if len(parts) != expected or len(consignment_id) != 16 or len(policy_digest) != 32:
        raise ValueError("key parts, consignment id or policy digest has the wrong length")
    return _hkdf(
        parts,
        salt=consignment_id,
        info=_LABEL + b"content key" + _MODE_BYTE[mode] + policy_digest,
    )


def payload_key(key: bytes, payload_salt: bytes) -> bytes:
    return _hkdf(key, salt=payload_salt, info=_LABEL + b"payload")


def header_mac_key(key: bytes) -> bytes:
    return _hkdf(key, salt=None, info=_LABEL + b"header mac")


def commitment_key(key: bytes) -> bytes:
    return _hkdf(key, salt=None, info=_LABEL + b"plaintext commitment")


def header_mac(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 keyed from the content key: commits the header to exactly one K."""
    mac = hmac.HMAC(header_mac_key(key), hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def verify_header_mac(key: bytes, data: bytes, tag: bytes) -> bool:
    mac = hmac.HMAC(header_mac_key(key), hashes.SHA256())
    mac.update(data)
    try:
        mac.verify(tag)
    except Exception:  # InvalidSignature; constant-time compare inside
        return False
    return True


def _wrap_info(mode: Mode, consignment_id: bytes, policy_digest: bytes) -> bytes:
    what = b"K1" if mode is Mode.SPLIT else b"K3"
    return _LABEL + what + b"\x00" + consignment_id + policy_digest


def wrap(
    mode: Mode,
    secret: bytes,
    receiver: X25519PublicKey,
    consignment_id: bytes,
    policy_digest: bytes,
) -> bytes:
    """HPKE base mode to one receiver, bound to the consignment id and policy."""
    wrapped = _HPKE.encrypt(secret, receiver, info=_wrap_info(mode, consignment_id, policy_digest))
    assert len(wrapped) == WRAP_LEN
    return wrapped


def unwrap(
    mode: Mode,
    wrapped: bytes,
    identity: X25519PrivateKey,
    consignment_id: bytes,
    policy_digest: bytes,
) -> bytes:
    if len(wrapped) != WRAP_LEN:
        raise UnwrapError("wrapped key has the wrong length")
    try:
        secret = _HPKE.decrypt(
            wrapped, identity, info=_wrap_info(mode, consignment_id, policy_digest)
        )
    except (InvalidTag, ValueError) as exc:
        raise UnwrapError("cannot unwrap") from exc
    if len(secret) != KEY_LEN:
        raise UnwrapError("unwrapped key has the wrong length")
    return secret

"""The key schedule: how content, payload, MAC and commitment keys are derived,
how key parts are made and wrapped to receivers with HPKE (RFC 9180) when
sealing, and how a receiver recovers the content key from a header and the
escrow's release when opening.

Pure functions over bytes, no I/O. This module must never use a key for two
purposes: every derivation has its own HKDF info label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.canonical import raw_public_key
from broker.deposit import KeyRelease, Mode, key_id
from client.format.header import Header, Stanza

KEY_LEN = 32
WRAP_LEN = 80  # HPKE enc (32) || AEAD(32-byte key) (32 + 16)
_LABEL = b"consignment/v1 "
_HPKE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_MODE_BYTE = {Mode.SPLIT: b"\x01", Mode.ESCROWED: b"\x02"}


class UnwrapError(Exception):
    """The content key cannot be recovered: a wrapped key part does not open (wrong
    key, wrong context, altered), or the release or the header MAC does not fit."""


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


@dataclass(frozen=True)
class NewContentKey:
    """A content key just made, and what opens it: in split mode K1 wrapped to each
    receiver (the file's stanzas) and K2 (for the escrow); in escrowed mode K3
    wrapped to each receiver (for the escrow only)."""

    key: bytes = field(repr=False)
    stanzas: tuple[Stanza, ...]
    wrapped_keys: dict[str, bytes]
    escrow_key: bytes | None = field(repr=False)


def new_content_key(
    mode: Mode,
    receivers: Sequence[tuple[bytes, X25519PublicKey]],
    consignment_id: bytes,
    policy_digest: bytes,
    rng: Callable[[int], bytes],
) -> NewContentKey:
    """Make the key parts with `rng` and wrap them to the receivers, given as
    (key id, encryption key) in the policy's order."""
    if mode is Mode.SPLIT:
        k1, k2 = rng(KEY_LEN), rng(KEY_LEN)
        key = content_key(mode, k1 + k2, consignment_id, policy_digest)
        stanzas = tuple(
            Stanza(kid, wrap(mode, k1, public, consignment_id, policy_digest))
            for kid, public in receivers
        )
        return NewContentKey(key, stanzas, {}, k2)
    k3 = rng(KEY_LEN)
    key = content_key(mode, k3, consignment_id, policy_digest)
    wrapped = {
        kid.hex(): wrap(mode, k3, public, consignment_id, policy_digest)
        for kid, public in receivers
    }
    return NewContentKey(key, (), wrapped, None)


def recover_content_key(header: Header, identity: X25519PrivateKey, release: KeyRelease) -> bytes:
    """The content key of `header`, from the receiver's key and the escrow's
    release, checked against the header MAC; `UnwrapError` if anything does not
    fit (the caller must say no more than that)."""
    if (
        release.consignment_id != header.consignment_id.hex()
        or release.mode is not header.mode
        or release.escrow != header.escrow
        or release.policy_digest != header.policy_digest
    ):
        # The header's policy and escrow lines are bound to the escrow's release.
        raise UnwrapError("the release is not for this consignment")
    digest = release.policy_digest  # as the escrow holds it: a swapped policy opens nothing
    if header.mode is Mode.SPLIT:
        mine = key_id(raw_public_key(identity.public_key()))
        stanza = next((s for s in header.stanzas if s.key_id == mine), None)
        if stanza is None or len(release.key_part) != KEY_LEN:
            raise UnwrapError("no key part for this receiver")
        k1 = unwrap(header.mode, stanza.wrapped, identity, header.consignment_id, digest)
        parts = k1 + release.key_part
    else:
        parts = unwrap(header.mode, release.key_part, identity, header.consignment_id, digest)
    key = content_key(header.mode, parts, header.consignment_id, digest)
    if not verify_header_mac(key, header.mac_input(), header.mac):
        raise UnwrapError("the header MAC does not match")
    return key

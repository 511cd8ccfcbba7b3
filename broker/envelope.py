"""The signed request envelope that every message to the escrow travels in.

An `Envelope` holds what the escrow acts on (type and version, request id, times,
nonce, audience, reply address, signer's certificate reference, body); its
canonical encoding is what the sender's Ed25519 key signs. `SignedEnvelope` is
those exact bytes plus the signature, and its own canonical wire form. The
encoding is written down in docs/identity.md ("Envelope encoding").

This module only knows signatures over bytes with a public key handed to it. It
must never look at certificates, clocks, audiences or replay state: those checks
belong to the escrow (`escrow_worker`), which decides which key to hand in.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from broker.errors import EnvelopeError

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "SIGNATURE_CONTEXT",
    "Envelope",
    "SignedEnvelope",
    "canonical_json",
    "new_envelope",
    "parse_canonical_json",
    "sign_envelope",
    "verify_envelope_signature",
]

#: Prefix of the signed bytes, so an envelope signature can never be taken for a
#: signature over anything else the same key signs (consignments, receipts).
SIGNATURE_CONTEXT = b"consignment/envelope/v1\x00"
#: Refused before parsing: no request needs more.
MAX_ENVELOPE_BYTES = 1 << 20
#: Integers stay exact in every JSON implementation (IEEE-754 doubles).
_MAX_SAFE_INT = 2**53 - 1
_MAX_DEPTH = 32
_WIRE_VERSION = 1


def _check_json(value: object, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            raise ValueError("integer outside the safe range +-(2**53-1)")
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("string is not valid Unicode") from exc
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("object keys must be strings")
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
        return
    raise ValueError(f"{type(value).__name__} is not allowed (no floats, no bytes)")


def canonical_json(value: object) -> bytes:
    """The canonical bytes of a JSON value: UTF-8, keys sorted by code point, no
    whitespace, no floats, integers within +-(2**53-1). Raises ValueError otherwise."""
    _check_json(value)
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = item
    return result


def _no_float(text: str) -> Any:
    raise ValueError("floats are not allowed")


def parse_canonical_json(data: bytes) -> Any:
    """Parse bytes that must be exactly `canonical_json` of what they hold."""
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_float,
        )
        again = canonical_json(value)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeError too
        raise EnvelopeError("malformed", f"envelope is not valid JSON: {exc}") from exc
    if again != data:
        raise EnvelopeError("not_canonical", "envelope is not in canonical encoding")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not base64") from exc
    if _b64(data) != text:
        raise ValueError(f"{what} is not canonical base64")
    return data


class Envelope(BaseModel):
    """What a request says. Times are whole seconds since the Unix epoch, UTC."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    type: str = Field(pattern=r"^[a-z][a-z0-9]*(?:[._-][a-z0-9]+)*$", max_length=64)
    version: int = Field(ge=1, le=65535)
    request_id: str = Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")
    issued_at: int = Field(ge=0, le=_MAX_SAFE_INT)
    expires_at: int = Field(ge=0, le=_MAX_SAFE_INT)
    #: 16 to 64 random bytes, standard base64 with padding.
    nonce: str = Field(min_length=24, max_length=88)
    #: Name of the escrow this request is for.
    audience: str = Field(min_length=1, max_length=128)
    #: Where the reply goes (an inbox name); only meaningful because it is signed.
    reply_to: str = Field(max_length=256)
    #: SHA-256 fingerprint (lowercase hex) of the signer's signing certificate.
    signer: str = Field(pattern=r"^[0-9a-f]{64}$")
    body: dict[str, Any]

    @field_validator("nonce")
    @classmethod
    def _nonce_is_base64(cls, value: str) -> str:
        raw = _unb64(value, "nonce")
        if not 16 <= len(raw) <= 64:
            raise ValueError("nonce must be 16 to 64 bytes")
        return value

    @field_validator("body")
    @classmethod
    def _body_is_plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_json(value)
        return value

    def canonical_bytes(self) -> bytes:
        """The bytes that are signed."""
        return canonical_json(self.model_dump(mode="json"))

    @classmethod
    def from_canonical_bytes(cls, data: bytes) -> Envelope:
        """Parse signed bytes; anything but the canonical encoding is refused."""
        value = parse_canonical_json(data)
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "envelope"
            raise EnvelopeError("malformed", f"envelope field {where}: {first['msg']}") from exc


class SignedEnvelope(BaseModel):
    """The exact signed bytes and the Ed25519 signature over them."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    payload: bytes
    signature: bytes

    def to_wire(self) -> bytes:
        """Canonical JSON: {"payload": base64, "signature": base64, "v": 1}."""
        return canonical_json(
            {"payload": _b64(self.payload), "signature": _b64(self.signature), "v": _WIRE_VERSION}
        )

    @classmethod
    def from_wire(cls, data: bytes) -> SignedEnvelope:
        if len(data) > MAX_ENVELOPE_BYTES:
            raise EnvelopeError("too_large", f"envelope is larger than {MAX_ENVELOPE_BYTES} bytes")
        value = parse_canonical_json(data)
        if not isinstance(value, dict) or set(value) != {"payload", "signature", "v"}:
            raise EnvelopeError("malformed", "envelope must have exactly payload, signature, v")
        if value["v"] != _WIRE_VERSION:
            raise EnvelopeError("malformed", f"unknown envelope version {value['v']!r}")
        try:
            if not isinstance(value["payload"], str) or not isinstance(value["signature"], str):
                raise ValueError("payload and signature must be base64 strings")
            payload = _unb64(value["payload"], "payload")
            signature = _unb64(value["signature"], "signature")
        except ValueError as exc:
            raise EnvelopeError("malformed", f"envelope {exc}") from exc
        return cls(payload=payload, signature=signature)

    def unverified(self) -> Envelope:
        """The envelope, parsed but NOT authenticated: use it only to find the key."""
        return Envelope.from_canonical_bytes(self.payload)


def new_envelope(
    *,
    type: str,
    body: dict[str, Any],
    audience: str,
    signer: str,
    now: datetime,
    version: int = 1,
    reply_to: str = "",
    lifetime: timedelta = timedelta(minutes=5),
    request_id: str | None = None,
    nonce: bytes | None = None,
) -> Envelope:
    """A fresh envelope issued at `now` (timezone-aware); id and nonce are random
    unless given (tests pass them to get deterministic bytes)."""
    issued = int(now.timestamp())
    try:
        return Envelope(
            type=type,
            version=version,
            request_id=request_id if request_id is not None else uuid.uuid4().hex,
            issued_at=issued,
            expires_at=issued + int(lifetime.total_seconds()),
            nonce=_b64(nonce if nonce is not None else os.urandom(16)),
            audience=audience,
            reply_to=reply_to,
            signer=signer,
            body=body,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "envelope"
        raise EnvelopeError("malformed", f"envelope field {where}: {first['msg']}") from exc


def sign_envelope(envelope: Envelope, key: Ed25519PrivateKey) -> SignedEnvelope:
    payload = envelope.canonical_bytes()
    return SignedEnvelope(payload=payload, signature=key.sign(SIGNATURE_CONTEXT + payload))


def verify_envelope_signature(signed: SignedEnvelope, key: Ed25519PublicKey) -> Envelope:
    """Check the signature with the key handed in and return the parsed envelope.

    This is the only check `broker` makes; the caller must still check the key's
    certificate, the audience, the times and replay (see escrow_worker)."""
    try:
        key.verify(signed.signature, SIGNATURE_CONTEXT + signed.payload)
    except InvalidSignature as exc:
        raise EnvelopeError(
            "bad_signature",
            "envelope signature does not verify",
            "the request was altered or signed with another key; send it again",
        ) from exc
    return signed.unverified()

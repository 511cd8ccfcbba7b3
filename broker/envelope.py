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
import os
import re
import uuid
from datetime import datetime, timedelta
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from broker.canonical import (
    MAX_SAFE_INT,
    b64,
    canonical_json,
    check_json,
    parse_canonical_json,
    unb64,
)
from broker.errors import EnvelopeError

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "SIGNATURE_CONTEXT",
    "Envelope",
    "SignedEnvelope",
    "check_envelope_signature",
    "new_envelope",
    "sign_envelope",
    "sign_new_envelope",
    "verify_envelope_signature",
]

#: Prefix of the signed bytes, so an envelope signature can never be taken for a
#: signature over anything else the same key signs (consignments, receipts).
SIGNATURE_CONTEXT: Final = b"consignment/envelope/v1\x00"
#: Refused before parsing: no request needs more.
MAX_ENVELOPE_BYTES: Final = 1 << 20
_WIRE_VERSION = 1


class Envelope(BaseModel):
    """What a request says. Times are whole seconds since the Unix epoch, UTC."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    type: str = Field(pattern=r"^[a-z][a-z0-9]*(?:[._-][a-z0-9]+)*$", max_length=64)
    version: int = Field(ge=1, le=65535)
    request_id: str = Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")
    issued_at: int = Field(ge=0, le=MAX_SAFE_INT)
    expires_at: int = Field(ge=0, le=MAX_SAFE_INT)
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
        raw = unb64(value, "nonce")
        if not 16 <= len(raw) <= 64:
            raise ValueError("nonce must be 16 to 64 bytes")
        return value

    @field_validator("body")
    @classmethod
    def _body_is_plain_json(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.context is not _PARSED:  # else parse_canonical_json checked it
            check_json(value)
        return value

    def canonical_bytes(self) -> bytes:
        """The bytes that are signed."""
        return canonical_json(_fields(self))

    @classmethod
    def from_canonical_bytes(cls, data: bytes) -> Envelope:
        """Parse signed bytes; anything but the canonical encoding is refused."""
        value = parse_canonical_json(data)
        try:
            return cls.model_validate(value, context=_PARSED)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "envelope"
            raise EnvelopeError("malformed", f"envelope field {where}: {first['msg']}") from exc


#: Validation context of an envelope parsed by `parse_canonical_json`, which
#: checked its body already.
_PARSED: Final[dict[str, bool]] = {"parsed": True}


def _fields(envelope: Envelope) -> dict[str, Any]:
    """`envelope.model_dump(mode="json")`, without pydantic's walk: every field
    is plain JSON already."""
    return {
        "type": envelope.type,
        "version": envelope.version,
        "request_id": envelope.request_id,
        "issued_at": envelope.issued_at,
        "expires_at": envelope.expires_at,
        "nonce": envelope.nonce,
        "audience": envelope.audience,
        "reply_to": envelope.reply_to,
        "signer": envelope.signer,
        "body": envelope.body,
    }


#: The canonical wire form, whose two values are base64 (nothing to escape).
#: Whatever does not match it is parsed the long way, for the exact error.
_WIRE: Final = re.compile(
    rb'\{"payload":"([A-Za-z0-9+/]*={0,2})","signature":"([A-Za-z0-9+/]*={0,2})","v":1\}'
)


def _wire(payload: bytes, signature: bytes) -> bytes:
    """`canonical_json` of the wire form: base64 needs no escaping."""
    return b'{"payload":"%s","signature":"%s","v":1}' % (
        base64.b64encode(payload),
        base64.b64encode(signature),
    )


class SignedEnvelope(BaseModel):
    """The exact signed bytes and the Ed25519 signature over them."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    payload: bytes
    signature: bytes

    def to_wire(self) -> bytes:
        """Canonical JSON: {"payload": base64, "signature": base64, "v": 1}."""
        return _wire(self.payload, self.signature)

    @classmethod
    def from_wire(cls, data: bytes) -> SignedEnvelope:
        if len(data) > MAX_ENVELOPE_BYTES:
            raise EnvelopeError("too_large", f"envelope is larger than {MAX_ENVELOPE_BYTES} bytes")
        if (match := _WIRE.fullmatch(data)) is not None:
            try:  # the canonical form; its base64 must be canonical too
                payload = unb64(match[1].decode("ascii"), "payload")
                signature = unb64(match[2].decode("ascii"), "signature")
            except ValueError as exc:
                raise EnvelopeError("malformed", f"envelope {exc}") from exc
            return cls.model_construct(payload=payload, signature=signature)
        value = parse_canonical_json(data)
        if not isinstance(value, dict) or set(value) != {"payload", "signature", "v"}:
            raise EnvelopeError("malformed", "envelope must have exactly payload, signature, v")
        if type(value["v"]) is not int or value["v"] != _WIRE_VERSION:  # true == 1 in Python
            raise EnvelopeError("malformed", f"unknown envelope version {value['v']!r}")
        try:
            if not isinstance(value["payload"], str) or not isinstance(value["signature"], str):
                raise ValueError("payload and signature must be base64 strings")
            payload = unb64(value["payload"], "payload")
            signature = unb64(value["signature"], "signature")
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
            nonce=b64(nonce if nonce is not None else os.urandom(16)),
            audience=audience,
            reply_to=reply_to,
            signer=signer,
            body=body,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "envelope"
        raise EnvelopeError("malformed", f"envelope field {where}: {first['msg']}") from exc


def sign_new_envelope(
    key: Ed25519PrivateKey,
    *,
    type: str,
    body: dict[str, Any],
    audience: str,
    signer: str,
    now: datetime,
    lifetime: timedelta,
    version: int = 1,
    reply_to: str = "",
) -> tuple[str, bytes]:
    """`sign_envelope(new_envelope(...), key).to_wire()` and the new request id,
    for a signer whose fields are its own and known good (the escrow's replies):
    the same bytes, without validating and dumping a model on the way. `body`
    is still checked (`canonical_json`)."""
    issued = int(now.timestamp())
    request_id = uuid.uuid4().hex
    payload = canonical_json(
        {
            "type": type,
            "version": version,
            "request_id": request_id,
            "issued_at": issued,
            "expires_at": issued + int(lifetime.total_seconds()),
            "nonce": b64(os.urandom(16)),
            "audience": audience,
            "reply_to": reply_to,
            "signer": signer,
            "body": body,
        }
    )
    return request_id, _wire(payload, key.sign(SIGNATURE_CONTEXT + payload))


def sign_envelope(envelope: Envelope, key: Ed25519PrivateKey) -> SignedEnvelope:
    payload = envelope.canonical_bytes()
    return SignedEnvelope(payload=payload, signature=key.sign(SIGNATURE_CONTEXT + payload))


def check_envelope_signature(signed: SignedEnvelope, key: Ed25519PublicKey) -> None:
    """Raise `EnvelopeError("bad_signature")` unless `key` signed these bytes.

    For a caller that parsed the envelope already (`unverified`) to find the key:
    the parsed envelope is the signed bytes', so it need not be parsed again."""
    try:
        key.verify(signed.signature, SIGNATURE_CONTEXT + signed.payload)
    except InvalidSignature as exc:
        raise EnvelopeError(
            "bad_signature",
            "envelope signature does not verify",
            "the request was altered or signed with another key; send it again",
        ) from exc


def verify_envelope_signature(signed: SignedEnvelope, key: Ed25519PublicKey) -> Envelope:
    """Check the signature with the key handed in and return the parsed envelope.

    This is the only check `broker` makes; the caller must still check the key's
    certificate, the audience, the times and replay (see escrow_worker)."""
    check_envelope_signature(signed, key)
    return signed.unverified()

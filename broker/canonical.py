"""Canonical encodings both sides share: JSON, base64, names, ids and times.

- `canonical_json` / `parse_canonical_json`: the one JSON form everything signed
  or sealed uses (docs/identity.md, "Canonical JSON"): UTF-8, keys sorted by code
  point, no whitespace, no floats, integers within +-(2**53-1), nesting at most
  `MAX_JSON_DEPTH`; parsing refuses anything that does not re-encode to the same
  bytes.
- `b64` / `unb64`: standard base64 with padding, and a strict decoder that
  refuses non-canonical input (stray bits in the last character, missing padding).
- `NAME`, `check_name`: the one rule for the names of users, groups and escrows.
- `HEX_ID`, `HEX_DIGEST`: consignment and request ids, SHA-256/BLAKE3 digests.
- `iso_utc`, `duration`: how times and durations are shown to people.
- `raw_public_key`: the 32 raw bytes of an Ed25519 or X25519 public key.

Pure functions only: this module must never do I/O or hold state.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BeforeValidator, PlainSerializer

from broker.errors import BrokerError, EnvelopeError

__all__ = [
    "B64",
    "HEX_DIGEST",
    "HEX_ID",
    "MAX_JSON_DEPTH",
    "MAX_SAFE_INT",
    "NAME",
    "NAME_RULE",
    "b64",
    "canonical_json",
    "check_json",
    "check_name",
    "duration",
    "iso_utc",
    "parse_canonical_json",
    "raw_public_key",
    "unb64",
]

#: Integers stay exact in every JSON implementation (IEEE-754 doubles).
MAX_SAFE_INT: Final = 2**53 - 1
#: Arrays and objects nest at most this deep (the top-level value is depth 0).
MAX_JSON_DEPTH: Final = 32

#: Names of users (people and applications), groups and escrows: lowercase
#: letters, digits and . _ @ + -, 1 to 64 characters, starting and ending with a
#: letter or digit. They appear in certificates, policies, queue names and file
#: names, so one rule keeps them printable, unambiguous and case-safe.
NAME: Final = re.compile(r"^[a-z0-9](?:[a-z0-9._@+-]{0,62}[a-z0-9])?$")
NAME_RULE: Final = (
    "1-64 lowercase letters, digits or . _ @ + - (starting and ending with a letter or digit)"
)
#: A consignment id: 16 random bytes, lowercase hex.
HEX_ID: Final = re.compile(r"^[0-9a-f]{32}$")
#: A 32-byte digest, lowercase hex.
HEX_DIGEST: Final = re.compile(r"^[0-9a-f]{64}$")


def check_name(name: object, what: str = "name") -> str:
    """`name` if it follows the name rule, else a `BrokerError` saying the rule."""
    if isinstance(name, str) and NAME.fullmatch(name):
        return name
    hint = f"use {NAME_RULE}"
    if isinstance(name, str) and NAME.fullmatch(name.lower()):
        hint = f"names are lowercase: {name.lower()}"
    raise BrokerError(f"invalid {what} {name!r}", hint)


# -- JSON ---------------------------------------------------------------------------


def _check_json(value: object, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH}")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
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


def check_json(value: object) -> None:
    """Raise ValueError unless `value` can be encoded canonically."""
    _check_json(value)


#: The one encoder of the canonical form (`json.dumps` would build one per call).
_ENCODER: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: object) -> bytes:
    """The canonical bytes of a JSON value: UTF-8, keys sorted by code point, no
    whitespace, no floats, integers within +-(2**53-1), nesting within
    `MAX_JSON_DEPTH`. Raises ValueError otherwise."""
    _check_json(value)
    return _ENCODER.encode(value).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = item
    return result


def _no_float(text: str) -> Any:
    raise ValueError("floats are not allowed")


def _safe_int(text: str) -> int:
    value = int(text)
    if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        raise ValueError("integer outside the safe range +-(2**53-1)")
    return value


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_no_duplicates,
    parse_float=_no_float,
    parse_int=_safe_int,
    parse_constant=_no_float,
)


def parse_canonical_json(data: bytes, what: str = "envelope") -> Any:
    """Parse bytes that must be exactly `canonical_json` of what they hold.

    Raises `EnvelopeError` ("malformed" or "not_canonical") naming `what`."""
    try:
        value = _DECODER.decode(data.decode("utf-8"))
        # The decoder refused floats and unsafe integers already; what it cannot
        # see is the depth, bounded by the number of brackets: walk the value
        # only when there are enough of them to go too deep.
        if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH:
            _check_json(value)
        # Keys are strings and values plain JSON: encoding fails only on a lone
        # surrogate (UnicodeEncodeError, a ValueError).
        try:
            again = _ENCODER.encode(value).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("string is not valid Unicode") from exc
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeError too
        raise EnvelopeError("malformed", f"{what} is not valid JSON: {exc}") from exc
    if again != data:
        raise EnvelopeError("not_canonical", f"{what} is not in canonical encoding")
    return value


# -- base64 -------------------------------------------------------------------------


def b64(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 section 4)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: object, what: str = "value") -> bytes:
    """Decode standard padded base64; ValueError unless `text` is exactly `b64`
    of what it decodes to (no whitespace, padding, canonical last character)."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not base64") from exc
    if b64(data) != text:
        raise ValueError(f"{what} is not canonical base64")
    return data


def _b64_field(value: Any) -> Any:
    return unb64(value, "value") if isinstance(value, str) else value


#: A pydantic field of bytes that travels as `b64` in JSON; non-canonical base64
#: is refused.
B64 = Annotated[
    bytes,
    BeforeValidator(_b64_field),
    PlainSerializer(b64, return_type=str, when_used="json"),
]


# -- times and keys -----------------------------------------------------------------


def iso_utc(when: int | datetime) -> str:
    """Unix seconds or an aware datetime as ISO 8601 UTC: 2030-01-31T12:00:00Z."""
    if isinstance(when, int):
        when = datetime.fromtimestamp(when, UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def duration(seconds: int) -> str:
    """A human duration, the two largest units: "3 s", "2 h 5 min", "1131 d 21 h"."""
    if seconds <= 0:
        return "0 s"
    parts: list[str] = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count or parts:
            parts.append(f"{count} {unit}")
    shown = [p for p in parts[:2] if not p.startswith("0 ")]
    return " ".join(shown)


def raw_public_key(key: object) -> bytes:
    """The 32 raw bytes of an Ed25519 or X25519 public key; empty for anything else
    (so comparing a key of the wrong kind is simply unequal)."""
    if isinstance(key, Ed25519PublicKey | X25519PublicKey):
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return b""

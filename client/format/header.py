"""The consignment header, version 1: parsing and serialising in one place.

docs/format.md is the specification; this module is the only implementation of
its parsing and serialising rules (the key schedule is `keys.py`'s, the payload
`stream.py`'s).
Parsing is strict and canonical (serialise(parse(x)) == x): anything a writer
following the spec would not produce is rejected. This module only moves bytes;
it never decides whether a MAC or signature is good.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import BinaryIO

from broker.deposit import ESCROW_ADDRESS, Mode

MAGIC = b"consignment/v1"
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
MAX_STANZAS = 1024
MAX_PAYLOAD = 1 << 60
MAX_LINE = 256  # the longest valid line is a stanza of 133 bytes
COMMITMENT_SIZE = 32
SIGNATURE_SIZE = 64
TRAILER_SIZE = COMMITMENT_SIZE + SIGNATURE_SIZE
HEADER_SIGNATURE_LABEL = b"consignment/v1 header signature\x00"
TRAILER_SIGNATURE_LABEL = b"consignment/v1 trailer signature\x00"

_B64 = re.compile(rb"^[A-Za-z0-9+/]+$")
_DECIMAL = re.compile(rb"^(0|[1-9][0-9]{0,18})$")
_HEX_ID = re.compile(rb"^[0-9a-f]{32}$")


class FormatError(Exception):
    """The bytes are not a well-formed version 1 consignment."""


def b64(data: bytes) -> bytes:
    """Standard base64 without padding (as in age)."""
    return base64.b64encode(data).rstrip(b"=")


def unb64(text: bytes, length: int) -> bytes:
    """Strict, canonical inverse of b64, for a value of exactly `length` bytes."""
    if not _B64.match(text):
        raise FormatError("not base64")
    try:
        raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise FormatError("not base64") from exc
    if len(raw) != length or b64(raw) != text:
        raise FormatError("base64 value is not canonical or has the wrong length")
    return raw


@dataclass(frozen=True)
class Stanza:
    """One receiver's wrapped K1 (split mode only)."""

    key_id: bytes  # 8 bytes, broker.deposit.key_id of the receiver's X25519 key
    wrapped: bytes  # 80 bytes of HPKE output

    def line(self) -> bytes:
        return b"-> x25519 " + b64(self.key_id) + b" " + b64(self.wrapped) + b"\n"


@dataclass(frozen=True)
class Header:
    consignment_id: bytes  # 16 bytes
    escrow: str
    mode: Mode
    policy_digest: bytes  # 32 bytes
    sender_key: bytes  # 32-byte Ed25519 public key
    payload_salt: bytes  # 16 bytes
    payload_size: int  # plaintext bytes in the payload stream
    stanzas: tuple[Stanza, ...]
    mac: bytes  # 32 bytes
    signature: bytes  # 64 bytes

    def __post_init__(self) -> None:
        _check_fields(self)

    def mac_input(self) -> bytes:
        """Every header byte up to and including the '---' that starts the MAC line."""
        lines = [
            MAGIC + b"\n",
            b"id " + self.consignment_id.hex().encode() + b"\n",
            b"escrow " + self.escrow.encode("ascii") + b"\n",
            b"mode " + self.mode.value.encode() + b"\n",
            b"policy " + b64(self.policy_digest) + b"\n",
            b"sender " + b64(self.sender_key) + b"\n",
            b"payload " + b64(self.payload_salt) + b" " + str(self.payload_size).encode() + b"\n",
            *(s.line() for s in self.stanzas),
            b"---",
        ]
        return b"".join(lines)

    def signed_input(self) -> bytes:
        """What the sender's header signature covers: everything before 'sig'."""
        return HEADER_SIGNATURE_LABEL + self.mac_input() + b" " + b64(self.mac) + b"\n"

    def serialize(self) -> bytes:
        return (
            self.mac_input() + b" " + b64(self.mac) + b"\n" + b"sig " + b64(self.signature) + b"\n"
        )

    @property
    def chunk_count(self) -> int:
        return max(1, -(-self.payload_size // CHUNK_SIZE))

    @property
    def payload_ciphertext_size(self) -> int:
        return self.payload_size + TAG_SIZE * self.chunk_count


def _check_fields(h: Header) -> None:
    if len(h.consignment_id) != 16:
        raise FormatError("consignment id must be 16 bytes")
    if not ESCROW_ADDRESS.match(h.escrow):
        raise FormatError("escrow name must be 1-248 printable ASCII characters")
    for value, size in (
        (h.policy_digest, 32),
        (h.sender_key, 32),
        (h.payload_salt, 16),
        (h.mac, 32),
        (h.signature, 64),
    ):
        if len(value) != size:
            raise FormatError("header field has the wrong length")
    if not 0 < h.payload_size <= MAX_PAYLOAD:
        raise FormatError("payload size out of range")
    if h.mode is Mode.SPLIT and not 1 <= len(h.stanzas) <= MAX_STANZAS:
        raise FormatError("a split-mode consignment has 1 to 1024 receiver stanzas")
    if h.mode is Mode.ESCROWED and h.stanzas:
        raise FormatError("an escrowed-mode consignment carries no key material")
    for s in h.stanzas:
        if len(s.key_id) != 8 or len(s.wrapped) != 80:
            raise FormatError("receiver stanza has the wrong length")
    if len({s.key_id for s in h.stanzas}) != len(h.stanzas):
        raise FormatError("two stanzas name the same receiver key")


def _read_line(src: BinaryIO) -> bytes:
    line = src.readline(MAX_LINE + 1)
    if not line.endswith(b"\n") or len(line) > MAX_LINE:
        raise FormatError("header line missing, unterminated or too long")
    return line[:-1]


def _field(line: bytes, name: bytes) -> list[bytes]:
    parts = line.split(b" ")
    if parts[0] != name or len(parts) < 2:
        raise FormatError(f"expected the {name.decode()} line")
    return parts[1:]


def _one(line: bytes, name: bytes) -> bytes:
    values = _field(line, name)
    if len(values) != 1:
        raise FormatError(f"the {name.decode()} line takes one value")
    return values[0]


def parse_header(src: BinaryIO) -> Header:
    """Read exactly one header from `src`, leaving it positioned at the payload."""
    if _read_line(src) != MAGIC:
        raise FormatError("not a version 1 consignment")
    raw_id = _one(_read_line(src), b"id")
    if not _HEX_ID.match(raw_id):
        raise FormatError("consignment id must be 32 lowercase hex digits")
    escrow = _one(_read_line(src), b"escrow")
    mode_text = _one(_read_line(src), b"mode")
    try:
        mode = Mode(mode_text.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError("unknown mode") from exc
    policy = unb64(_one(_read_line(src), b"policy"), 32)
    sender = unb64(_one(_read_line(src), b"sender"), 32)
    payload = _field(_read_line(src), b"payload")
    if len(payload) != 2 or not _DECIMAL.match(payload[1]):
        raise FormatError("the payload line takes a salt and a decimal size")
    salt, size = unb64(payload[0], 16), int(payload[1])
    stanzas: list[Stanza] = []
    while True:
        line = _read_line(src)
        if not line.startswith(b"-> "):
            break
        if len(stanzas) == MAX_STANZAS:
            raise FormatError("too many receiver stanzas")
        parts = line.split(b" ")
        if len(parts) != 4 or parts[1] != b"x25519":
            raise FormatError("unknown receiver stanza")
        stanzas.append(Stanza(unb64(parts[2], 8), unb64(parts[3], 80)))
    mac = unb64(_one(line, b"---"), 32)
    signature = unb64(_one(_read_line(src), b"sig"), 64)
    try:
        escrow_text = escrow.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FormatError("escrow address must be ASCII") from exc
    return Header(
        consignment_id=bytes.fromhex(raw_id.decode()),
        escrow=escrow_text,
        mode=mode,
        policy_digest=policy,
        sender_key=sender,
        payload_salt=salt,
        payload_size=size,
        stanzas=tuple(stanzas),
        mac=mac,
        signature=signature,
    )


def chunk_nonce(index: int, last: bool) -> bytes:
    """STREAM nonce: 11-byte big-endian chunk counter, then 0x01 on the last chunk."""
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")

"""The escrow's transaction log as data: entries, their hash chain, signed
heads, and the verification anyone can run (docs/log.md is the spec).

- An `Entry` is canonical JSON `{"at", "consignment", "data", "kind",
  "parties", "prev", "seq", "v"}`; its hash is
  SHA-256("consignment/v1 log entry" || 0x00 || canonical(entry)), and `prev` is
  the hash of the entry before it (entry 1: the escrow's `genesis` value).
- A `Head` says "the log of escrow E has `size` entries and the last one hashes
  to `hash`", signed with the escrow's Ed25519 signing key over
  "consignment/v1 log head signature" || 0x00 || canonical(head).
- `verify_chain` checks a run of entries and the heads that cover it and names
  the first bad entry (`LogBroken`).

Pure functions over plain data: this module must never do I/O, read a clock, or
look at certificates (the caller hands in the escrow's public key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.canonical import (
    MAX_SAFE_INT,
    b64,
    canonical_json,
    check_json,
    check_name,
    parse_canonical_json,
    unb64,
)
from broker.errors import BrokerError

__all__ = [
    "ENTRY_CONTEXT",
    "GENESIS_CONTEXT",
    "HEAD_CONTEXT",
    "Entry",
    "Head",
    "LogBroken",
    "SignedHead",
    "Verified",
    "entry_hash",
    "genesis",
    "new_entry",
    "sign_head",
    "summary",
    "verify_chain",
]

ENTRY_CONTEXT: Final = b"consignment/v1 log entry\x00"
HEAD_CONTEXT: Final = b"consignment/v1 log head signature\x00"
GENESIS_CONTEXT: Final = b"consignment/v1 log genesis\x00"
VERSION: Final = 1
_HEX64 = frozenset("0123456789abcdef")
_ENTRY_KEYS: Final = frozenset({"at", "consignment", "data", "kind", "parties", "prev", "seq", "v"})
_HEAD_KEYS: Final = frozenset({"escrow", "hash", "signed_at", "size", "v"})


class LogBroken(BrokerError):
    """The log (or an archive of it) is not what the escrow wrote. `seq` is the
    first entry found bad (None: the log as a whole, e.g. no entries)."""

    def __init__(self, seq: int | None, message: str, hint: str | None = None) -> None:
        where = f"entry {seq}: " if seq is not None else ""
        super().__init__(
            where + message,
            hint
            or "the log was altered after it was written; keep this copy and compare "
            "it with an archive or a signed head you hold",
        )
        self.seq = seq


def _is_hex64(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64


def _int(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_SAFE_INT


def genesis(escrow: str) -> str:
    """The `prev` of entry 1: SHA-256(GENESIS_CONTEXT || escrow name), hex."""
    return hashlib.sha256(GENESIS_CONTEXT + escrow.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One log entry. `data` is kind-specific canonical JSON (docs/log.md)."""

    seq: int
    at: int
    kind: str
    prev: str
    data: Mapping[str, Any] = field(default_factory=dict)
    consignment: str | None = None
    parties: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "consignment": self.consignment,
            "data": dict(self.data),
            "kind": self.kind,
            "parties": list(self.parties),
            "prev": self.prev,
            "seq": self.seq,
            "v": VERSION,
        }

    def encode(self) -> bytes:
        """The canonical JSON the hash covers (and the store keeps)."""
        return canonical_json(self.to_json())

    @property
    def hash(self) -> str:
        return entry_hash(self.encode())

    @classmethod
    def from_json(cls, value: object) -> Entry:
        """Strict: exactly the documented fields and types, else `ValueError`."""
        if not isinstance(value, dict) or set(value) != _ENTRY_KEYS:
            raise ValueError(f"an entry has exactly the fields {sorted(_ENTRY_KEYS)}")
        if type(value["v"]) is not int or value["v"] != VERSION:
            raise ValueError(f"unknown entry version {value['v']!r}")
        if not _int(value["seq"]) or value["seq"] < 1 or not _int(value["at"]):
            raise ValueError("seq must be a positive integer and at a non-negative one")
        if not isinstance(value["kind"], str) or not 0 < len(value["kind"]) <= 64:
            raise ValueError("kind must be a short string")
        if not _is_hex64(value["prev"]):
            raise ValueError("prev must be 64 lowercase hex digits")
        if not isinstance(value["data"], dict):
            raise ValueError("data must be an object")
        cid = value["consignment"]
        if cid is not None and not isinstance(cid, str):
            raise ValueError("consignment must be a string or null")
        parties = value["parties"]
        if not isinstance(parties, list) or not all(isinstance(p, str) for p in parties):
            raise ValueError("parties must be a list of names")
        return cls(
            seq=value["seq"],
            at=value["at"],
            kind=value["kind"],
            prev=value["prev"],
            data=value["data"],
            consignment=cid,
            parties=tuple(parties),
        )

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        """Parse stored bytes; they must be the canonical encoding (else `ValueError`)."""
        try:
            value = parse_canonical_json(data, "log entry")
        except BrokerError as exc:
            raise ValueError(exc.message) from exc
        entry = cls.from_json(value)
        if entry.encode() != data:
            raise ValueError("not the canonical encoding of the entry")
        return entry


def entry_hash(encoded: bytes) -> str:
    """SHA-256(ENTRY_CONTEXT || canonical entry), lowercase hex."""
    return hashlib.sha256(ENTRY_CONTEXT + encoded).hexdigest()


def new_entry(
    previous: Entry | None,
    escrow: str,
    kind: str,
    data: Mapping[str, Any],
    *,
    at: int,
    consignment: str | None = None,
    parties: Iterable[str] = (),
) -> Entry:
    """The entry after `previous` (None: the first of `escrow`'s log)."""
    check_json(dict(data))
    seq, prev = (1, genesis(escrow)) if previous is None else (previous.seq + 1, previous.hash)
    return Entry(seq, at, kind, prev, dict(data), consignment, tuple(sorted(set(parties))))


@dataclass(frozen=True)
class Head:
    """A tree head: the log of `escrow` had `size` entries, the last hashing to `hash`."""

    escrow: str
    size: int
    hash: str
    signed_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "escrow": self.escrow,
            "hash": self.hash,
            "signed_at": self.signed_at,
            "size": self.size,
            "v": VERSION,
        }

    def signed_bytes(self) -> bytes:
        return HEAD_CONTEXT + canonical_json(self.to_json())


@dataclass(frozen=True)
class SignedHead:
    head: Head
    signature: bytes
    #: The SHA-256 fingerprint of the escrow signing certificate that signed it.
    signer: str

    def to_json(self) -> dict[str, Any]:
        signature = b64(self.signature)
        return {"head": self.head.to_json(), "signature": signature, "signer": self.signer}

    @classmethod
    def from_json(cls, value: object) -> SignedHead:
        if not isinstance(value, dict) or set(value) != {"head", "signature", "signer"}:
            raise ValueError("a signed head has exactly head, signature, signer")
        head = value["head"]
        if not isinstance(head, dict) or set(head) != _HEAD_KEYS or head["v"] != VERSION:
            raise ValueError(f"a head has exactly the fields {sorted(_HEAD_KEYS)}, v = 1")
        if not _int(head["size"]) or not _int(head["signed_at"]) or not _is_hex64(head["hash"]):
            raise ValueError("a head's size and signed_at are integers, its hash 64 hex digits")
        if not isinstance(head["escrow"], str) or not isinstance(value["signer"], str):
            raise ValueError("a head's escrow and signer are strings")
        check_name(head["escrow"], "escrow name")
        signature = unb64(value["signature"], "head signature")
        return cls(
            Head(head["escrow"], head["size"], head["hash"], head["signed_at"]),
            signature,
            value["signer"],
        )

    def valid(self, key: Ed25519PublicKey) -> bool:
        try:
            key.verify(self.signature, self.head.signed_bytes())
        except InvalidSignature:
            return False
        return True


def sign_head(head: Head, key: Ed25519PrivateKey, signer: str) -> SignedHead:
    return SignedHead(head, key.sign(head.signed_bytes()), signer)


@dataclass(frozen=True)
class Verified:
    """What `verify_chain` established."""

    first: int
    last: int
    head: str
    #: The largest signed head checked (None: no head covered the run).
    signed_size: int | None


def verify_chain(
    encoded: Sequence[bytes],
    *,
    escrow: str,
    heads: Sequence[SignedHead] = (),
    keys: Mapping[str, Ed25519PublicKey] | None = None,
    anchor: str | None = None,
    claimed: Sequence[str] | None = None,
    require_head: bool = False,
) -> Verified:
    """Check a contiguous run of stored entries (canonical bytes, in order).

    The first entry's `prev` must be `anchor` (default: `genesis(escrow)` when
    the run starts at entry 1; taken as given otherwise). Every later entry must
    number one more than the one before and name its hash; where `claimed`
    gives the hash recorded beside each entry, it must be the entry's. Each
    head must be the escrow's, signed by the key `keys` holds for its `signer`
    (a certificate fingerprint), and, where it falls inside the run, match the
    hash there; a head beyond the run's end means the tail was cut. With
    `require_head`, the run's last entry must be covered by a head. Raises
    `LogBroken` naming the first bad entry."""
    if not encoded:
        raise LogBroken(None, "the log holds no entries")
    hashes: dict[int, str] = {}
    previous: Entry | None = None
    first = 0
    for index, data in enumerate(encoded):
        expected_seq = previous.seq + 1 if previous is not None else None
        try:
            entry = Entry.decode(data)
        except ValueError as exc:
            raise LogBroken(expected_seq, f"not a valid entry ({exc})") from None
        digest = entry_hash(data)
        if previous is None:
            first = entry.seq
            expected = anchor if anchor is not None else (genesis(escrow) if first == 1 else None)
            if expected is not None and entry.prev != expected:
                why = "another escrow's log?" if first == 1 else "it does not follow the anchor"
                raise LogBroken(entry.seq, f"prev is not what the log starts from ({why})")
        elif entry.seq != expected_seq:
            raise LogBroken(
                expected_seq,
                f"expected entry {expected_seq}, found entry {entry.seq} in its place "
                "(removed, inserted or reordered)",
            )
        elif entry.prev != hashes[previous.seq]:
            raise LogBroken(
                entry.seq,
                f"prev is not the hash of entry {previous.seq}: entry {previous.seq} or "
                "this one was altered, or an entry was inserted",
            )
        if claimed is not None and claimed[index] != digest:
            raise LogBroken(entry.seq, "altered: it no longer has the hash recorded for it")
        hashes[entry.seq] = digest
        previous = entry
    assert previous is not None
    last = previous.seq
    signed: int | None = None
    for signed_head in sorted(heads, key=lambda h: h.head.size):
        head = signed_head.head
        if head.escrow != escrow:
            raise LogBroken(None, f"a head of another escrow ({head.escrow!r}, not {escrow!r})")
        key = (keys or {}).get(signed_head.signer)
        if key is None or not signed_head.valid(key):
            raise LogBroken(
                head.size, "the signed head for it is not signed by the escrow (forged head)"
            )
        if head.size > last:
            raise LogBroken(
                last + 1,
                f"missing: a signed head covers {head.size} entries but the log ends at "
                f"{last} (truncated)",
            )
        if head.size >= first:
            if hashes[head.size] != head.hash:
                raise LogBroken(
                    head.size,
                    "does not match the signed head for it (altered, or the log rewritten)",
                )
            signed = head.size
    if require_head and signed != last:
        raise LogBroken(
            last if signed is None else signed + 1,
            "no signed head covers the end of the log (a head is missing, or entries "
            "were added after the last head)",
        )
    return Verified(first, last, hashes[last], signed)


def summary(entry: Entry) -> str:
    """One line of what an entry says, for people."""
    d = entry.data
    if entry.kind == "request":
        text = f"{d.get('signer')} {d.get('type')}: {d.get('decision')}"
        reply = d.get("reply")
        if d.get("decision") != "ok" and isinstance(reply, dict) and "message" in reply:
            text += f" ({reply['message']})"
        batch = d.get("batch")
        if isinstance(batch, dict):
            text += f" [item {d.get('request_id')} of batch {batch.get('request_id')}]"
        return text
    if entry.kind in ("event", "notify"):
        body = d.get("body") if isinstance(d.get("body"), dict) else {}
        assert isinstance(body, dict)
        what = body.get("kind", entry.kind)
        about = f" about {body['receiver']}" if body.get("receiver") else ""
        return f"to {d.get('to')}: {what}{about}"
    shown = {k: v for k, v in d.items() if k not in ("der", "ca")}
    return " ".join(f"{k}={v}" for k, v in sorted(shown.items()))

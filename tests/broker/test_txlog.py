"""The transaction log's pure format and check (`broker.txlog`, docs/log.md):
canonical entries, the hash and genesis values written in the spec, and each
kind of tampering named at its entry."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.canonical import canonical_json
from broker.txlog import (
    Entry,
    Head,
    LogBroken,
    SignedHead,
    entry_hash,
    genesis,
    new_entry,
    sign_head,
    verify_chain,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYS = {"escrow-signer": KEY.public_key()}


def _log(n: int = 6, escrow: str = "acme") -> list[bytes]:
    out: list[bytes] = []
    previous = None
    for i in range(n):
        previous = new_entry(
            previous, escrow, "test", {"i": i}, at=1_800_000_000 + i, parties=("bob", "alice")
        )
        out.append(previous.encode())
    return out


def _head(encoded: list[bytes], size: int, escrow: str = "acme") -> SignedHead:
    hash_ = Entry.decode(encoded[size - 1]).hash
    return sign_head(Head(escrow, size, hash_, 1_800_000_100), KEY, "escrow-signer")


def _edit(data: bytes, **change: object) -> bytes:
    value = json.loads(data)
    value.update(change)
    return canonical_json(value)


def test_the_spec_values() -> None:
    """docs/log.md states these; an implementation from the spec agrees."""
    assert genesis("acme") == hashlib.sha256(b"consignment/v1 log genesis\x00acme").hexdigest()
    first = Entry(1, 1_800_000_000, "test", genesis("acme"), {"i": 0}, None, ("alice",))
    encoded = first.encode()
    assert encoded == (
        b'{"at":1800000000,"consignment":null,"data":{"i":0},"kind":"test",'
        b'"parties":["alice"],"prev":"' + genesis("acme").encode() + b'","seq":1,"v":1}'
    )
    assert first.hash == hashlib.sha256(b"consignment/v1 log entry\x00" + encoded).hexdigest()
    head = Head("acme", 1, first.hash, 1_800_000_100)
    assert head.signed_bytes() == (
        b"consignment/v1 log head signature\x00"
        b'{"escrow":"acme","hash":"' + first.hash.encode() + b'","signed_at":1800000100,'
        b'"size":1,"v":1}'
    )


def test_an_intact_log_verifies_with_its_heads() -> None:
    log = _log()
    result = verify_chain(log, escrow="acme", heads=[_head(log, 3), _head(log, 6)], keys=KEYS)
    assert (result.first, result.last, result.signed_size) == (1, 6, 6)
    assert result.head == entry_hash(log[-1])
    assert Entry.decode(log[0]).parties == ("alice", "bob")  # sorted, once each


def test_a_run_from_the_middle_verifies_from_its_anchor() -> None:
    log = _log()
    anchor = Entry.decode(log[2]).prev
    assert verify_chain(log[2:], escrow="acme", anchor=anchor).first == 3
    with pytest.raises(LogBroken, match="entry 3: prev is not what the log starts from"):
        verify_chain(log[2:], escrow="acme", anchor="0" * 64)


@pytest.mark.parametrize(
    ("tamper", "seq", "message"),
    [
        (lambda log: log.__setitem__(3, _edit(log[3], at=1)), 5, "prev is not the hash of entry 4"),
        (lambda log: log.pop(3), 4, "expected entry 4, found entry 5"),
        (lambda log: log.insert(3, log[3]), 5, "expected entry 5, found entry 4"),
        (lambda log: log.__setitem__(slice(2, 4), [log[3], log[2]]), 3, "found entry 4"),
        (lambda log: log.__setitem__(0, _edit(log[0], seq=0)), None, "not a valid entry"),
        (lambda log: log.__setitem__(2, log[2] + b" "), 3, "not a valid entry"),
    ],
    ids=["edited", "removed", "inserted", "reordered", "invalid", "not-canonical"],
)
def test_tampering_is_named_at_its_entry(tamper: object, seq: int | None, message: str) -> None:
    log = _log()
    assert callable(tamper)
    tamper(log)
    with pytest.raises(LogBroken, match=message) as info:
        verify_chain(log, escrow="acme")
    assert info.value.seq == seq


def test_an_edit_the_recorded_hash_contradicts_is_named_at_the_entry_itself() -> None:
    log = _log()
    claimed = [entry_hash(e) for e in log]
    log[3] = _edit(log[3], at=1)
    with pytest.raises(LogBroken, match="entry 4: altered"):
        verify_chain(log, escrow="acme", claimed=claimed)


def test_another_escrows_log_fails_at_entry_1() -> None:
    with pytest.raises(LogBroken, match=r"entry 1: .*another escrow"):
        verify_chain(_log(escrow="other"), escrow="acme")


def test_heads_catch_truncation_forgery_and_rewrites() -> None:
    log = _log()
    head = _head(log, 6)
    with pytest.raises(LogBroken, match=r"entry 5: missing: .*truncated") as info:
        verify_chain(log[:4], escrow="acme", heads=[head], keys=KEYS)
    forged = SignedHead(head.head, b"\0" * 64, head.signer)
    with pytest.raises(LogBroken, match=r"entry 6: .*forged head"):
        verify_chain(log, escrow="acme", heads=[forged], keys=KEYS)
    other = sign_head(
        Head("acme", 6, head.head.hash, 1), Ed25519PrivateKey.generate(), "escrow-signer"
    )
    with pytest.raises(LogBroken, match="forged head"):
        verify_chain(log, escrow="acme", heads=[other], keys=KEYS)
    # The whole log rewritten from entry 4 on: consistent, but not what was signed.
    rewritten = log[:3]
    previous = Entry.decode(log[2])
    for i in range(3, 6):
        previous = new_entry(previous, "acme", "test", {"i": -i}, at=1, parties=())
        rewritten.append(previous.encode())
    with pytest.raises(LogBroken, match="entry 6: does not match the signed head"):
        verify_chain(rewritten, escrow="acme", heads=[head], keys=KEYS)
    assert info.value.seq == 5


def test_a_missing_head_fails_when_one_is_required() -> None:
    log = _log()
    with pytest.raises(LogBroken, match="entry 5: no signed head covers the end"):
        verify_chain(log, escrow="acme", heads=[_head(log, 4)], keys=KEYS, require_head=True)
    with pytest.raises(LogBroken, match="entry 6: no signed head"):
        verify_chain(log, escrow="acme", require_head=True)


def test_signed_heads_round_trip_and_parse_strictly() -> None:
    head = _head(_log(), 2)
    assert SignedHead.from_json(head.to_json()) == head
    broken = head.to_json()
    broken["head"] = {**broken["head"], "size": "2"}
    with pytest.raises(ValueError, match="integers"):
        SignedHead.from_json(broken)
    with pytest.raises(ValueError, match="exactly"):
        SignedHead.from_json({**head.to_json(), "extra": 1})

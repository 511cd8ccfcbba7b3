"""Notary archives exported from an escrow's log, on both store backends, and
checked offline (`broker.notary`): an intact archive verifies alone and against
the escrow's CA; each kind of tampering, a missing or forged head, and another
escrow's archive are refused, named at the entry where there is one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.notary import Archive, ArchiveError, verify_archive
from broker.pki.profile import build_ca_certificate
from broker.txlog import Entry, LogBroken
from escrow_worker.ca.authority import load_service_keys
from escrow_worker.ca.notary import HeadSigner, export_archive
from escrow_worker.ca.operator import open_escrow
from escrow_worker.state.location import Location
from tests.broker.pki_helpers import ESCROW_PASS, NOW
from tests.escrow_worker.control_helpers import Direct
from tests.escrow_worker.helpers import make_escrow, seal_for

Tamper = Callable[[dict[str, Any]], None]


def _swap(entries: list[Any], i: int, j: int) -> None:
    entries[i], entries[j] = entries[j], entries[i]


def _edit(value: dict[str, Any]) -> None:
    value["entries"][4]["data"]["tampered"] = True


#: (what, how, the entry named (-1: the last one), the message)
CASES: list[tuple[str, Tamper, int | None, str]] = [
    ("edited", _edit, 6, "prev is not the hash of entry 5"),
    ("removed", lambda v: v["entries"].pop(3), 4, "expected entry 4"),
    ("inserted", lambda v: v["entries"].insert(3, v["entries"][2]), 4, "expected entry 4"),
    ("reordered", lambda v: _swap(v["entries"], 3, 4), 4, "expected entry 4"),
    ("truncated", lambda v: v["entries"].pop(), -1, "truncated"),
    ("head missing", lambda v: v.__setitem__("heads", []), -1, "no signed head"),
    (
        "head forged",
        lambda v: v["heads"][-1].__setitem__("signature", "A" * 86 + "=="),
        -1,
        "forged head",
    ),
    (
        "another escrow's head",
        lambda v: v["heads"][-1]["head"].__setitem__("escrow", "other"),
        None,
        "another escrow",
    ),
]


async def test_archives_verify_offline_and_tampering_is_named(escrow_location: Location) -> None:
    setup = await make_escrow(escrow_location, ("alice", "bob"))
    async with await setup.open_service() as service:
        direct = Direct(setup, service)
        _, deposit = seal_for(setup["alice"], [setup["bob"]])
        await direct.deposit(deposit)
        assert (await direct.key("bob", deposit)).code is None
    async with open_escrow(escrow_location) as esc:
        keys = await load_service_keys(esc.keystore, ESCROW_PASS)
        signer = HeadSigner(esc.name, keys.signing_key, keys.signing_certificate)
        whole = await export_archive(
            esc.store, signer, esc.ca_certificate, first=1, last=None, now=NOW
        )
        part = await export_archive(esc.store, signer, esc.ca_certificate, first=5, last=9, now=NOW)
        ca = esc.ca_certificate

    # Intact: alone, against the escrow's CA and name; a range from the middle too.
    data = whole.dumps()
    result = verify_archive(Archive.loads(data), ca=ca, escrow="acme")
    last = result.last
    assert result.first == 1
    assert last == Entry.decode(whole.entries[-1]).seq
    assert {c.subject for c in Archive.loads(data).certificates}  # the requesters' certs
    assert (verify_archive(Archive.loads(part.dumps())).first, part.heads[-1].head.size) == (5, 9)

    for name, tamper, seq, message in CASES:
        value = json.loads(data)
        tamper(value)
        with pytest.raises(LogBroken, match=message) as info:
            verify_archive(Archive.loads(json.dumps(value).encode()))
        assert info.value.seq == (last if seq == -1 else seq), name

    other_ca = build_ca_certificate(Ed25519PrivateKey.generate(), "other", NOW)
    with pytest.raises(LogBroken, match="another escrow"):
        verify_archive(Archive.loads(data), ca=other_ca)
    with pytest.raises(LogBroken, match="from escrow 'acme', not 'other'"):
        verify_archive(Archive.loads(data), escrow="other")
    with pytest.raises(ArchiveError, match="not a notary archive"):
        Archive.loads(b'{"format": "something else"}')

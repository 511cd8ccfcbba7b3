"""Batches in the transaction log, on SQLite and PostgreSQL: every item a batch
decides is a `request` entry of its own, after the batch's entry and naming it
(docs/log.md, "Batch items"), with the item's outcome; nothing secret goes in;
a redelivered batch adds nothing; a batched consignment's history shows its
deposit and release; the invoice counts batched items as what they are; and an
edited item entry is named at that entry."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker import Deposit, SignedEnvelope
from broker.canonical import canonical_json
from broker.messages import HistoryBody, MessageType
from broker.txlog import Entry, LogBroken
from escrow_worker.ca.notary import verify_log
from escrow_worker.invoice import Period, count
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location
from tests.escrow_worker.control_helpers import Direct
from tests.escrow_worker.helpers import (
    deposit_body,
    escrow_keyring,
    make_escrow,
    request,
    seal_for,
)

#: docs/log.md, "Batch items": exactly these.
ITEM_MEMBERS = frozenset(
    {
        "request_id", "type", "version", "signer", "certificate", "decision",
        "request_sha256", "batch", "reply_id", "reply_type", "reply_sha256", "reply",
    }
)  # fmt: skip


@pytest.fixture
async def direct(escrow_location: Location) -> AsyncIterator[Direct]:
    setup = await make_escrow(escrow_location)
    async with await setup.open_service() as service:
        yield Direct(setup, service)


async def _entries(direct: Direct) -> list[Entry]:
    rows = await direct.setup.run(
        lambda tx: tx.fetchall("SELECT entry FROM log_entries ORDER BY seq")
    )
    return [Entry.decode(bytes(r[0])) for r in rows]


def _item(body: Any, item_id: str | None = None) -> dict[str, Any]:
    if hasattr(body, "model_dump"):
        body = body.model_dump(mode="json")
    return {"id": item_id or uuid.uuid4().hex, "body": body}


def _key(deposit: Deposit, **change: str) -> dict[str, Any]:
    body = {
        "consignment_id": deposit.consignment_id,
        "consignment_digest": deposit.consignment_digest,
    }
    return _item(body | change)


async def _batch(direct: Direct, name: str, kind: str, items: list[dict[str, Any]]) -> bytes:
    """Send a batch; return its wire bytes (to send again)."""
    wire = request(direct.setup[name], "batch", {"kind": kind, "items": items})
    outcome = await direct.service.handle(wire)
    assert outcome.reply is not None
    assert direct.outgoing(outcome.reply)[1].type == MessageType.BATCH_REPLY
    return wire


def _batch_of(entry: Entry) -> str | None:
    batch = entry.data.get("batch")
    return batch["request_id"] if isinstance(batch, dict) else None


def _of_batch(entries: list[Entry], wire: bytes) -> tuple[Entry, list[Entry]]:
    """The batch's own entry and the item entries that name it."""
    envelope = SignedEnvelope.from_wire(wire)
    rid = envelope.unverified().request_id
    (own,) = [e for e in entries if e.kind == "request" and e.data["request_id"] == rid]
    items = [e for e in entries if e.kind == "request" and _batch_of(e) == rid]
    return own, items


async def test_each_item_is_a_decision_in_the_log(direct: Direct) -> None:
    setup = direct.setup
    deposits = [seal_for(setup["alice"], [setup["bob"]])[1] for _ in range(3)]
    for_carol = seal_for(setup["alice"], [setup["carol"]])[1]
    items = [_item(deposit_body(setup, d)) for d in deposits]
    items.insert(1, _item({"consignment_id": "zz"}))  # malformed
    dep_wire = await _batch(direct, "alice", "deposit", items)
    await direct.deposit(for_carol)
    keys = [_key(d) for d in deposits] + [
        _key(for_carol),  # bob is not one of its receivers
        _key(deposits[0], consignment_digest="0" * 64),  # not the digest deposited
    ]
    key_wire = await _batch(direct, "bob", "key-request", keys)

    entries = await _entries(direct)
    own, logged = _of_batch(entries, dep_wire)
    assert own.data["type"] == "batch"
    assert "request" not in own.data  # a batch of deposits: sealed key parts, by digest only
    assert [(e.data["request_id"], e.data["type"], e.data["decision"]) for e in logged] == [
        (items[0]["id"], "deposit", "ok"),
        (items[1]["id"], "deposit", "malformed"),
        (items[2]["id"], "deposit", "ok"),
        (items[3]["id"], "deposit", "ok"),
    ]
    assert all(e.seq > own.seq for e in logged)
    assert all(set(e.data) == ITEM_MEMBERS for e in logged)
    payload = SignedEnvelope.from_wire(dep_wire).payload
    assert {json.dumps(e.data["batch"], sort_keys=True) for e in logged} == {
        json.dumps(
            {"request_id": own.data["request_id"], "request_sha256": own.data["request_sha256"]},
            sort_keys=True,
        )
    }
    assert own.data["request_sha256"] == hashlib.sha256(payload).hexdigest()
    for entry, sent in zip(logged, items, strict=True):
        digest = canonical_json({"kind": "deposit", "body": sent["body"]})
        assert entry.data["request_sha256"] == hashlib.sha256(digest).hexdigest()
        assert entry.data["reply_id"] == own.data["reply_id"]
        assert "request" not in entry.data
    assert [e.consignment for e in logged] == [
        deposits[0].consignment_id,
        None,
        deposits[1].consignment_id,
        deposits[2].consignment_id,
    ]
    assert logged[0].data["reply"]["receivers"] == ["bob"]
    assert set(logged[0].parties) == {"alice", "bob"}
    assert "consignment_id" in logged[1].data["reply"]["message"]

    own, logged = _of_batch(entries, key_wire)
    assert SignedEnvelope.from_wire(base64.b64decode(own.data["request"])).payload == (
        SignedEnvelope.from_wire(key_wire).payload
    )  # key requests: the signed batch as received
    assert [(e.data["type"], e.data["decision"], e.data["reply_type"]) for e in logged] == [
        ("key-request", "ok", "key-release"),
        ("key-request", "ok", "key-release"),
        ("key-request", "ok", "key-release"),
        ("key-request", "not_a_receiver", "error"),
        ("key-request", "digest_mismatch", "error"),
    ]
    assert "not" in logged[3].data["reply"]["message"]  # the reason of the denial
    assert all("sealed_key_part" not in e.data["reply"] for e in logged)

    # Nothing secret: no released key part, no sealed deposit, no master key.
    rows = await setup.run(lambda tx: tx.fetchall("SELECT entry FROM log_entries"))
    everything = b"".join(bytes(r[0]) for r in rows)
    answer = await direct.ask("bob", "batch", {"kind": "key-request", "items": keys[:1]})
    part = answer.reply.body.results[0].body["sealed_key_part"]
    assert part.encode() not in everything
    for sent in items:
        if "sealed_deposit" in sent["body"]:
            assert sent["body"]["sealed_deposit"].encode() not in everything
    for key in (await escrow_keyring(setup)).keys.values():
        assert base64.b64encode(key) not in everything

    # Redelivered: the stored reply, and no second set of item entries.
    size = len(await _entries(direct))
    again = await direct.service.handle(key_wire)
    assert again.decision == "resent:ok"
    assert len(await _entries(direct)) == size
    # An item sent again in a new batch: only the new item is decided and logged.
    fresh = seal_for(setup["alice"], [setup["bob"]])[1]
    await direct.deposit(fresh)
    size = len(await _entries(direct))
    wire = await _batch(direct, "bob", "key-request", [keys[1], _key(fresh)])
    own, logged = _of_batch(await _entries(direct), wire)
    assert [e.consignment for e in logged] == [fresh.consignment_id]
    # Replayed (same id, another body) is that item's logged decision.
    other = {"id": keys[2]["id"], "body": _key(fresh)["body"]}
    wire = await _batch(direct, "bob", "key-request", [other])
    assert [e.data["decision"] for e in _of_batch(await _entries(direct), wire)[1]] == ["replayed"]
    assert size < len(await _entries(direct))
    await verify_log(direct.service.store, setup.name, direct.service.ca_certificate)


async def test_history_and_invoice_of_batched_consignments(direct: Direct) -> None:
    setup = direct.setup
    deposits = [seal_for(setup["alice"], [setup["bob"]])[1] for _ in range(3)]
    await _batch(direct, "alice", "deposit", [_item(deposit_body(setup, d)) for d in deposits])
    await direct.deposit(seal_for(setup["alice"], [setup["bob"]])[1])  # one alone
    keys = [_key(d) for d in deposits[:2]] + [_key(deposits[2], consignment_digest="0" * 64)]
    await _batch(direct, "bob", "key-request", keys)
    await _batch(direct, "alice", "revoke", [_item({"consignment_id": deposits[2].consignment_id})])

    cid = deposits[0].consignment_id
    alices = await direct.ask("alice", "history", HistoryBody(consignment_id=cid))
    summary = [
        (e["kind"], e["data"].get("type") or e["data"]["body"].get("kind"), e["data"].get("to"))
        for e in (item.entry for item in alices.reply.body.entries)
    ]
    assert summary == [
        ("request", "deposit", None),
        ("event", "deposited", "alice"),
        ("notify", None, "bob"),
        ("event", "notified", "alice"),
        ("request", "key-request", None),
        ("event", "released", "alice"),
    ]
    bobs = await direct.ask("bob", "history", HistoryBody(consignment_id=cid))
    entries = [item.entry for item in bobs.reply.body.entries]
    (release,) = [e for e in entries if e["data"].get("type") == "key-request"]
    assert (release["data"]["signer"], release["data"]["decision"]) == ("bob", "ok")
    assert "batch" in release["data"]
    denied = await direct.ask(
        "alice", "history", HistoryBody(consignment_id=deposits[2].consignment_id)
    )
    decisions = [
        (item.entry["data"]["type"], item.entry["data"]["decision"])
        for item in denied.reply.body.entries
        if item.entry["kind"] == "request"
    ]
    assert decisions == [("deposit", "ok"), ("key-request", "digest_mismatch"), ("revoke", "ok")]

    period = Period.parse(setup.clock.now.strftime("%Y-%m"))
    days = (period.end - 1) // 86400 - setup.clock.t // 86400 + 1
    assert count(await _entries(direct), period) == {
        "alice": Counter(deposit=4, batch_item=4, storage_day=4 * days),
        "bob": Counter(release=2, batch_item=2),
    }


async def test_an_edited_item_entry_is_named_at_that_entry(direct: Direct) -> None:
    setup = direct.setup
    deposit = seal_for(setup["alice"], [setup["bob"]])[1]
    wire = await _batch(direct, "alice", "deposit", [_item(deposit_body(setup, deposit))])
    await direct.deposit(seal_for(setup["alice"], [setup["bob"]])[1])  # entries after it
    (item,) = _of_batch(await _entries(direct), wire)[1]
    value = item.to_json()
    value["data"]["decision"] = "not_allowed"

    async def edit(tx: Tx) -> None:
        await tx.execute(
            "UPDATE log_entries SET entry = ? WHERE seq = ?", (canonical_json(value), item.seq)
        )

    await setup.run(edit)
    with pytest.raises(LogBroken, match=f"entry {item.seq}: altered") as info:
        await verify_log(direct.service.store, setup.name, direct.service.ca_certificate)
    assert info.value.seq == item.seq

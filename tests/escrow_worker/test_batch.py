"""`batch` at the escrow, on SQLite and PostgreSQL: many deposits, key requests
or revocations in one signed request, one result per item; a refused or
malformed item never fails the others; a redelivered batch, and an item sent
again in another batch, release nothing twice and get the same answer; an
oversize batch is refused with its limit and changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker import Deposit
from broker.messages import BATCH_LIMIT, MessageType
from escrow_worker.state.location import Location
from tests.escrow_worker.control_helpers import Direct
from tests.escrow_worker.helpers import (
    deposit_body,
    make_escrow,
    releases,
    request,
    seal_for,
    state,
)


@pytest.fixture
async def direct(escrow_location: Location) -> AsyncIterator[Direct]:
    setup = await make_escrow(escrow_location)
    async with await setup.open_service() as service:
        yield Direct(setup, service)


def item(body: Any, item_id: str | None = None) -> dict[str, Any]:
    if hasattr(body, "model_dump"):
        body = body.model_dump(mode="json")
    return {"id": item_id or uuid.uuid4().hex, "body": body}


def key_item(deposit: Deposit, item_id: str | None = None, **change: str) -> dict[str, Any]:
    body = {
        "consignment_id": deposit.consignment_id,
        "consignment_digest": deposit.consignment_digest,
    }
    return item(body | change, item_id)


def codes(results: Any) -> list[str]:
    return [r.body.get("code", r.type) if r.type == "error" else r.type for r in results]


async def test_deposits_and_key_requests_in_batches_mixed_with_bad_items(direct: Direct) -> None:
    setup = direct.setup
    deposits = [seal_for(setup["alice"], [setup["bob"]])[1] for _ in range(3)]
    for_mallory = seal_for(setup["alice"], [setup["carol"]])[1]
    items = [item(deposit_body(setup, d)) for d in deposits]
    items.insert(1, {"id": uuid.uuid4().hex, "body": {"consignment_id": "zz"}})  # malformed
    answer = await direct.ask("alice", "batch", {"kind": "deposit", "items": items})
    assert answer.reply.type == MessageType.BATCH_REPLY
    results = answer.reply.body.results
    assert [r.id for r in results] == [i["id"] for i in items]
    assert codes(results) == ["deposit-receipt", "malformed", "deposit-receipt", "deposit-receipt"]
    assert "consignment_id" in results[1].body["message"]
    notified = sorted(r.body.consignment_id for to, r in answer.events if r.type == "notify")
    assert notified == sorted(d.consignment_id for d in deposits)
    await direct.deposit(for_mallory)

    good = [key_item(d) for d in deposits]
    bad = [
        key_item(for_mallory),  # bob is not one of its receivers
        key_item(deposits[0], consignment_digest="0" * 64),  # not the digest deposited
        key_item(seal_for(setup["alice"], [setup["bob"]])[1]),  # never deposited
    ]
    answer = await direct.ask("bob", "batch", {"kind": "key-request", "items": good + bad})
    results = answer.reply.body.results
    assert codes(results) == ["key-release"] * 3 + [
        "not_a_receiver",
        "digest_mismatch",
        "unknown_consignment",
    ]
    assert [r.body["in_reply_to"] for r in results] == [i["id"] for i in good + bad]
    assert await releases(setup) == (3, 3)
    kinds = sorted(r.body.kind.value for to, r in answer.events if r.type == "event")
    assert kinds == ["denied", "denied", "released", "released", "released"]


async def test_a_redelivered_batch_and_items_sent_again_release_once(direct: Direct) -> None:
    setup = direct.setup
    deposits = [seal_for(setup["alice"], [setup["bob"]])[1] for _ in range(2)]
    for d in deposits:
        await direct.deposit(d)
    items = [key_item(d) for d in deposits]
    wire = request(setup["bob"], "batch", {"kind": "key-request", "items": items})
    first = await direct.service.handle(wire)
    again = await direct.service.handle(wire)  # redelivered: the stored reply, byte for byte
    assert first.reply is not None
    assert again.reply is not None
    assert again.reply.message.body == first.reply.message.body
    assert again.decision == "resent:ok"
    # The second item again, inside another batch with a new one: its answer is
    # the recorded one, and only the new item is decided.
    before = await releases(setup)
    third = seal_for(setup["alice"], [setup["bob"]])[1]
    await direct.deposit(third)
    answer = await direct.ask(
        "bob", "batch", {"kind": "key-request", "items": [items[1], key_item(third)]}
    )
    results = answer.reply.body.results
    original = direct.outgoing(first.reply)[1].body.results[1]
    assert results[0] == original
    assert codes(results) == ["key-release", "key-release"]
    assert await releases(setup) == (before[0] + 1, before[1] + 1)
    # The same item id with another body, or from another signer, is replayed.
    other = key_item(third, items[0]["id"])
    answer = await direct.ask("bob", "batch", {"kind": "key-request", "items": [other]})
    assert codes(answer.reply.body.results) == ["replayed"]
    answer = await direct.ask("carol", "batch", {"kind": "key-request", "items": [items[0]]})
    assert codes(answer.reply.body.results) == ["replayed"]
    # ... and so is a request sent alone under an item's id.
    alone = await direct.ask("bob", "key-request", items[0]["body"], request_id=items[0]["id"])
    assert alone.code == "replayed"
    assert await releases(setup) == (before[0] + 1, before[1] + 1)


async def test_revocations_in_a_batch(direct: Direct) -> None:
    setup = direct.setup
    deposits = [seal_for(setup["alice"], [setup["bob"], setup["carol"]])[1] for _ in range(2)]
    for d in deposits:
        await direct.deposit(d)
    items = [
        item({"consignment_id": deposits[0].consignment_id}),
        item({"consignment_id": deposits[1].consignment_id, "receivers": ["carol"]}),
        item({"consignment_id": deposits[1].consignment_id, "receivers": ["mallory"]}),
    ]
    answer = await direct.ask("alice", "batch", {"kind": "revoke", "items": items})
    results = answer.reply.body.results
    assert codes(results) == ["revoke-reply", "revoke-reply", "not_a_receiver"]
    assert results[0].body["revoked"] == ["bob", "carol"]
    bob = await direct.ask("bob", "batch", {"kind": "key-request", "items": [
        key_item(deposits[0]), key_item(deposits[1]),
    ]})  # fmt: skip
    assert codes(bob.reply.body.results) == ["revoked", "key-release"]
    # Revoking someone else's consignment is refused item by item.
    mine = item({"consignment_id": deposits[0].consignment_id})
    answer = await direct.ask("mallory", "batch", {"kind": "revoke", "items": [mine]})
    assert codes(answer.reply.body.results) == ["not_sender"]


async def test_an_oversize_or_malformed_batch_is_refused_whole_and_changes_nothing(
    direct: Direct,
) -> None:
    setup = direct.setup
    deposit = seal_for(setup["alice"], [setup["bob"]])[1]
    await direct.deposit(deposit)
    before = await state(setup)
    items = [key_item(deposit) for _ in range(BATCH_LIMIT + 1)]
    answer = await direct.ask("bob", "batch", {"kind": "key-request", "items": items})
    assert answer.code == "malformed"
    assert f"at most {BATCH_LIMIT} items" in answer.reply.body.message
    same = [key_item(deposit, "a" * 32), key_item(deposit, "a" * 32)]
    answer = await direct.ask("bob", "batch", {"kind": "key-request", "items": same})
    assert answer.code == "malformed"
    answer = await direct.ask("bob", "batch", {"kind": "status", "items": items[:1]})
    assert answer.code == "malformed"
    assert await state(setup) == before
    # An item that reuses its batch's own id fails alone.
    rid = uuid.uuid4().hex
    answer = await direct.ask(
        "bob",
        "batch",
        {"kind": "key-request", "items": [key_item(deposit, rid), key_item(deposit)]},
        request_id=rid,
    )
    assert codes(answer.reply.body.results) == ["malformed", "key-release"]


async def test_the_same_item_in_two_batches_at_once_releases_once(direct: Direct) -> None:
    """Two workers (two services on one store) decide two batches that share an
    item at the same time: one release, the same answer in both."""
    setup = direct.setup
    deposit = seal_for(setup["alice"], [setup["bob"]])[1]
    await direct.deposit(deposit)
    shared = key_item(deposit)
    first = request(setup["bob"], "batch", {"kind": "key-request", "items": [shared]})
    second = request(
        setup["bob"], "batch", {"kind": "key-request", "items": [key_item(deposit), shared]}
    )
    async with await setup.open_service() as other:
        one, two = await asyncio.gather(direct.service.handle(first), other.handle(second))
    assert one.reply is not None
    assert two.reply is not None
    a = direct.outgoing(one.reply)[1].body.results
    b = direct.outgoing(two.reply)[1].body.results
    assert a[0] == b[1]
    assert codes(b) == ["key-release", "key-release"]
    assert await releases(setup) == (2, 2)  # the shared item once, the other once

"""`history` on both store backends: a consignment's parties get the log's
entries about it in a signed reply (the sender all, a receiver its own), each
entry with its hash and the log's head; anyone else is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from broker.messages import HistoryBody
from broker.txlog import Entry
from escrow_worker.state import txlog
from escrow_worker.state.location import Location
from tests.escrow_worker.control_helpers import Direct
from tests.escrow_worker.helpers import make_escrow, seal_for


@pytest.fixture
async def direct(escrow_location: Location) -> AsyncIterator[Direct]:
    setup = await make_escrow(escrow_location)
    async with await setup.open_service() as service:
        yield Direct(setup, service)


def _entries(answer: object) -> list[Entry]:
    body = answer.reply.body  # type: ignore[attr-defined]
    out = [Entry.from_json(item.entry) for item in body.entries]
    assert [e.hash for e in out] == [item.hash for item in body.entries]
    return out


async def test_parties_get_their_history_signed(direct: Direct) -> None:
    setup = direct.setup
    _, deposit = seal_for(setup["alice"], [setup["bob"], setup["carol"]])
    cid = deposit.consignment_id
    await direct.deposit(deposit)
    assert (await direct.key("bob", deposit)).code is None
    head = await setup.run(txlog.head)
    assert head is not None

    mine = await direct.ask("alice", "history", HistoryBody(consignment_id=cid))
    assert mine.code is None
    assert (mine.reply.body.log_size, mine.reply.body.log_head) == head
    assert mine.reply.body.complete
    everything = _entries(mine)
    assert all(e.consignment == cid for e in everything)
    summary = [
        (e.kind, e.data.get("type") or e.data["body"].get("kind"), e.data.get("to"))
        for e in everything
    ]
    assert summary == [
        ("request", "deposit", None),
        ("event", "deposited", "alice"),
        ("notify", None, "bob"),
        ("event", "notified", "alice"),
        ("notify", None, "carol"),
        ("event", "notified", "alice"),
        ("request", "key-request", None),
        ("event", "released", "alice"),
    ]

    bobs = _entries(await direct.ask("bob", "history", HistoryBody(consignment_id=cid)))
    assert all("bob" in e.parties for e in bobs)
    assert not any(e.data.get("to") == "carol" for e in bobs)
    assert {e.seq for e in bobs} < {e.seq for e in everything}
    assert any(e.data.get("type") == "key-request" for e in bobs)

    # Paging: after an entry, only what follows it.
    after = everything[2].seq
    rest = _entries(
        await direct.ask("alice", "history", HistoryBody(consignment_id=cid, after=after))
    )
    assert [e.seq for e in rest] == [e.seq for e in everything if e.seq > after] + [
        e.seq for e in rest if e.seq > everything[-1].seq
    ]


async def test_outsiders_and_unknown_ids_are_refused(direct: Direct) -> None:
    setup = direct.setup
    _, deposit = seal_for(setup["alice"], [setup["bob"]])
    await direct.deposit(deposit)
    refused = await direct.ask(
        "mallory", "history", HistoryBody(consignment_id=deposit.consignment_id)
    )
    assert refused.code == "not_allowed"
    unknown = await direct.ask("alice", "history", HistoryBody(consignment_id="ab" * 16))
    assert unknown.code == "unknown_consignment"

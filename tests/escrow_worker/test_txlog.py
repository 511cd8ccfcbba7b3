"""The transaction log at the escrow, on both store backends: every decision and
operator action is appended in its own transaction, nothing secret goes in, a
rolled-back job leaves no entry, the chain verifies and carries signed heads,
and each kind of tampering with the stored rows is named at its entry."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from broker import ControlAttributes, SignedEnvelope
from broker.canonical import canonical_json
from broker.txlog import Entry, LogBroken
from escrow_worker.ca.notary import verify_log
from escrow_worker.ca.policy import set_restricted
from escrow_worker.state.base import LogItem, Tx
from escrow_worker.state.location import Location
from tests.escrow_worker.control_helpers import Direct
from tests.escrow_worker.helpers import EscrowSetup, escrow_keyring, make_escrow, seal_for


async def _entries(setup: EscrowSetup) -> list[Entry]:
    rows = await setup.run(lambda tx: tx.fetchall("SELECT entry FROM log_entries ORDER BY seq"))
    return [Entry.decode(bytes(r[0])) for r in rows]


async def _verify(direct: Direct) -> Any:
    return await verify_log(direct.service.store, direct.setup.name, direct.service.ca_certificate)


@pytest.fixture
async def direct(escrow_location: Location) -> AsyncIterator[Direct]:
    setup = await make_escrow(escrow_location)
    async with await setup.open_service() as service:
        yield Direct(setup, service)


async def test_every_action_is_logged_and_the_chain_verifies(direct: Direct) -> None:
    setup = direct.setup
    attributes = ControlAttributes(not_after=setup.clock.t + 3600)
    _data, deposit = seal_for(setup["alice"], [setup["bob"], setup["carol"]], attributes=attributes)
    await direct.deposit(deposit)
    assert (await direct.key("bob", deposit)).code is None
    assert (await direct.key("mallory", deposit)).code == "not_a_receiver"
    setup.clock.advance(7200)
    assert [e.body.kind.value for _, e in await direct.expire()] == ["expired"]

    entries = await _entries(direct.setup)
    kinds = [e.kind for e in entries]
    # Setup: the escrow, its certificates and CRL, then each user registered.
    assert kinds[0] == "init"
    assert {"register", "certificate", "crl"} <= set(kinds)
    requests = [e for e in entries if e.kind == "request"]
    assert [(e.data["type"], e.data["signer"], e.data["decision"]) for e in requests] == [
        ("deposit", "alice", "ok"),
        ("key-request", "bob", "ok"),
        ("key-request", "mallory", "not_a_receiver"),
    ]
    assert all(e.consignment == deposit.consignment_id for e in requests)
    # A key request is kept as the signed bytes received: they verify as bob's.
    bob_request = SignedEnvelope.from_wire(base64.b64decode(requests[1].data["request"]))
    assert bob_request.unverified().signer == setup["bob"].signer
    # The refusal's reason is in the log.
    assert "not" in requests[2].data["reply"]["message"]
    messages = [e for e in entries if e.kind in ("notify", "event")]
    events = [(e.kind, e.data["body"].get("kind"), e.data["to"]) for e in messages]
    assert ("notify", None, "bob") in events
    assert ("event", "released", "alice") in events
    assert ("event", "denied", "alice") in events
    assert entries[-1].kind == "event"
    assert entries[-1].data["body"]["kind"] == "expired"
    assert set(entries[-1].parties) == {"alice", "carol"}

    result = await _verify(direct)
    assert result.last == len(entries) == entries[-1].seq


async def test_nothing_secret_goes_in(direct: Direct) -> None:
    setup = direct.setup
    _, deposit = seal_for(setup["alice"], [setup["bob"]])
    await direct.deposit(deposit)
    released = await direct.key("bob", deposit)
    assert released.code is None
    part = released.reply.body.sealed_key_part
    rows = await setup.run(lambda tx: tx.fetchall("SELECT entry FROM log_entries"))
    everything = b"".join(bytes(r[0]) for r in rows)
    assert base64.b64encode(part) not in everything
    for key in (await escrow_keyring(setup)).keys.values():
        assert base64.b64encode(key) not in everything
        assert key.hex().encode() not in everything
    deposit_entry = next(e for e in await _entries(setup) if e.data.get("type") == "deposit")
    assert "request" not in deposit_entry.data  # the sealed deposit: by digest only
    assert deposit_entry.data["reply"]["receivers"] == ["bob"]


async def test_a_failed_job_leaves_no_entry(direct: Direct) -> None:
    before = await _entries(direct.setup)

    async def failing(tx: Tx) -> None:
        tx.log(LogItem("test", {"n": 1}, 0))
        raise RuntimeError("the job fails after asking for an entry")

    with pytest.raises(RuntimeError):
        await direct.service.store.run(failing)
    await direct.service.store.run(lambda tx: set_restricted(tx, True, now=5))
    after = await _entries(direct.setup)
    assert after[: len(before)] == before
    assert [(e.kind, e.data) for e in after[len(before) :]] == [("policy", {"mode": "restricted"})]
    await _verify(direct)


async def test_signed_heads(direct: Direct) -> None:
    head = await direct.service.sign_log_head()
    assert head is not None
    assert await direct.service.sign_log_head(only_if_grown=True) is None
    await direct.service.store.run(lambda tx: set_restricted(tx, False, now=6))
    grown = await direct.service.sign_log_head(only_if_grown=True)
    assert grown is not None
    assert grown.head.size == head.head.size + 1
    result = await _verify(direct)
    assert result.signed_size == result.last == grown.head.size


# -- tampering -------------------------------------------------------------------------


async def _rewrite(direct: Direct, seq: int, change: dict[str, Any], *, rehash: bool) -> None:
    rows = await direct.setup.run(
        lambda tx: tx.fetchall("SELECT entry FROM log_entries WHERE seq = ?", (seq,))
    )
    value = json.loads(bytes(rows[0][0]))
    value.update(change)
    encoded = canonical_json(value)
    new_hash = Entry.decode(encoded).hash

    async def job(tx: Tx) -> None:
        await tx.execute("UPDATE log_entries SET entry = ? WHERE seq = ?", (encoded, seq))
        if rehash:
            await tx.execute("UPDATE log_entries SET hash = ? WHERE seq = ?", (new_hash, seq))

    await direct.setup.run(job)


_TABLES = ("log_parties", "log_heads", "log_entries")


async def _snapshot(tx: Tx) -> dict[str, list[tuple[Any, ...]]]:
    return {
        t: [tuple(r) for r in await tx.fetchall(f"SELECT * FROM {t}")]  # noqa: S608
        for t in _TABLES
    }


async def _restore(tx: Tx, saved: dict[str, list[tuple[Any, ...]]]) -> None:
    for table in _TABLES:
        await tx.execute(f"DELETE FROM {table}")  # noqa: S608
    for table in reversed(_TABLES):
        if saved[table]:
            marks = ", ".join("?" * len(saved[table][0]))
            await tx.executemany(f"INSERT INTO {table} VALUES ({marks})", saved[table])  # noqa: S608


async def _delete(direct: Direct, seq: int) -> None:
    await direct.setup.run(lambda tx: tx.execute("DELETE FROM log_parties WHERE seq = ?", (seq,)))
    await direct.setup.run(lambda tx: tx.execute("DELETE FROM log_entries WHERE seq = ?", (seq,)))


async def _swap(direct: Direct, a: int, b: int) -> None:
    rows = await direct.setup.run(
        lambda tx: tx.fetchall(
            "SELECT seq, entry, hash FROM log_entries WHERE seq IN (?, ?)", (a, b)
        )
    )
    (_, ea, ha), (_, eb, hb) = sorted(rows)

    async def swap(tx: Tx) -> None:
        await tx.execute("UPDATE log_entries SET hash = 'x' || seq WHERE seq IN (?, ?)", (a, b))
        await tx.execute("UPDATE log_entries SET entry = ?, hash = ? WHERE seq = ?", (eb, hb, a))
        await tx.execute("UPDATE log_entries SET entry = ?, hash = ? WHERE seq = ?", (ea, ha, b))

    await direct.setup.run(swap)


async def _forge_heads(direct: Direct) -> None:
    forged = b"\0" * 64
    await direct.setup.run(lambda tx: tx.execute("UPDATE log_heads SET signature = ?", (forged,)))


async def test_each_kind_of_tampering_is_named_at_its_entry(direct: Direct) -> None:
    head = await direct.service.sign_log_head()
    assert head is not None
    last = head.head.size
    cases: list[tuple[str, Callable[[], Awaitable[None]], int | None, str]] = [
        ("edited", lambda: _rewrite(direct, 3, {"at": 1}, rehash=False), 3, "entry 3: altered"),
        (
            "edited and rehashed",
            lambda: _rewrite(direct, 3, {"at": 1}, rehash=True),
            4,
            "entry 4: prev is not the hash of entry 3",
        ),
        ("removed", lambda: _delete(direct, 5), 5, "entry 5: expected entry 5, found entry 6"),
        ("reordered", lambda: _swap(direct, 4, 5), 4, "expected entry 4, found entry 5"),
        ("truncated", lambda: _delete(direct, last), last, "truncated"),
        ("head forged", lambda: _forge_heads(direct), last, "forged head"),
        (
            "signed entry rewritten",
            lambda: _rewrite(direct, last, {"at": 1}, rehash=True),
            last,
            "does not match the signed head",
        ),
    ]
    saved = await direct.setup.run(_snapshot)
    for name, damage, seq, message in cases:
        await damage()
        with pytest.raises(LogBroken, match=message) as info:
            await _verify(direct)
        assert info.value.seq == seq, name
        await direct.setup.run(lambda tx: _restore(tx, saved))
        assert (await _verify(direct)).last == last, name


async def test_time_moves_on_in_the_entries(direct: Direct) -> None:
    direct.setup.clock.advance(timedelta(days=1).total_seconds())
    _, deposit = seal_for(direct.setup["alice"], [direct.setup["bob"]])
    await direct.deposit(deposit)
    last = (await _entries(direct.setup))[-1]
    assert last.at == direct.setup.clock.t

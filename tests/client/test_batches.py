"""Batch operations of the agents and the unattended receiver, against the real
escrow worker on both transports: many consignments sealed, deposited, sent and
opened with `batch` requests, a result per item; a missing input refuses the run
before anything is sealed; a run resumed after the escrow went silent deposits
nothing twice; `serve` hands each consignment over once, retries a failing
handler, parks a poison one, and survives one that hangs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from broker import ControlAttributes, Transport
from client import AgentError, NoReply, ReceiverAgent, SenderAgent
from client.agent import batch
from client.agent.bulk import SealJob
from client.agent.types import OpenedConsignment
from client.agent.unattended import ServeOptions
from escrow_worker.state.location import Location
from tests.client.agent_helpers import ESCROW_NAME, WorkerRunner, World, make_world
from tests.support import TransportFactory

WAIT = 20.0


@pytest.fixture
async def world(tmp_path: Path) -> World:
    return await make_world(tmp_path)


@pytest.fixture
async def escrow(world: World, transport_factory: TransportFactory) -> WorkerRunner:
    async with WorkerRunner(world, await transport_factory()) as runner:
        yield runner  # type: ignore[misc]


def agent(
    kind: type[SenderAgent] | type[ReceiverAgent], world: World, transport: Transport,
    root: Path, name: str, **kw: float,
) -> SenderAgent | ReceiverAgent:  # fmt: skip
    return kind(world.identities[name], transport, ESCROW_NAME, root / "state" / name, **kw)


def jobs(root: Path, count: int, to: tuple[str, ...] = ("bob",)) -> list[SealJob]:
    (root / "in").mkdir(exist_ok=True)
    out: list[SealJob] = []
    for i in range(count):
        source = root / "in" / f"n{i}.txt"
        source.write_bytes(f"payload {i}\n".encode() * 50)
        out.append(SealJob((source,), to, root / "out" / f"n{i}.consignment"))
    return out


async def count(world: World, table: str) -> int:
    store = await Location(directory=world.escrow_dir).open_store()
    try:
        sql = f"SELECT COUNT(*) FROM {table}"  # noqa: S608
        return int(await store.run(lambda tx: tx.fetchval(sql)))
    finally:
        await store.close()


async def releases(world: World) -> int:
    return await count(world, "releases")


async def deposits(world: World) -> int:
    return await count(world, "deposits")


async def arrived(bob: ReceiverAgent, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while True:
            inbox = await bob.fetch(idle=0.2)
            if sum(r.state == "complete" for r in inbox.received) >= count:
                return


async def test_seal_deposit_send_and_open_many(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    work = jobs(tmp_path, 6)
    work[2] = SealJob(work[2].inputs, ("bob", "nobody"), work[2].output)  # not registered
    seen: list[tuple[str, int, int]] = []
    async with (
        agent(SenderAgent, world, transport, tmp_path, "alice") as alice,
        agent(ReceiverAgent, world, transport, tmp_path, "bob") as bob,
    ):
        assert isinstance(alice, SenderAgent)
        assert isinstance(bob, ReceiverAgent)
        results = await alice.seal_many(work, progress=lambda *p: seen.append(p))
        assert [r.ok for r in results] == [True, True, False, True, True, True], results
        assert results[2].code == "unknown_user"
        assert not work[2].output.exists()
        assert ("deposit", 5, 5) in seen
        # The same run again: the recorded results, nothing sealed or deposited again.
        again = await alice.seal_many(work)
        assert [(r.ok, r.consignment_id) for r in again] == [
            (r.ok, r.consignment_id) for r in results
        ]
        for result in results:
            if result.ok:
                assert result.consignment_id is not None
                await alice.send(result.consignment_id)
        await arrived(bob, 5)
        files = [Path(r["path"]) for r in await bob.store.fetchall("SELECT path FROM received")]
        assert len(files) == 5
        assert all(f.exists() for f in files)
        opened = await bob.open_many(tmp_path / "opened")
        # Noted opened and recorded handled together; the files it arrived in removed.
        rows = await bob.store.fetchall(
            "SELECT r.state, r.path, h.state AS handled FROM received AS r"
            " JOIN handled AS h ON h.consignment_id = r.consignment_id"
        )
        states = [(r["state"], r["path"], r["handled"]) for r in rows]
        assert states == [("opened", None, "handled")] * 5
        assert not any(f.exists() for f in files)
        assert sorted(r.consignment_id or "" for r in opened) == sorted(
            r.consignment_id or "" for r in results if r.ok
        )
        assert all(r.ok for r in opened)
        for i, result in enumerate(results):
            if result.ok:
                got = tmp_path / "opened" / str(result.consignment_id) / f"n{i}.txt"
                assert got.read_bytes() == f"payload {i}\n".encode() * 50
        assert await bob.open_many(tmp_path / "opened") == []  # each opened once
        assert await releases(world) == 5
        # Revoke many: the escrow's answer per consignment.
        ids = [*[r.consignment_id or "" for r in results if r.ok][:2], "0" * 32]
        revoked = await alice.revoke_many(ids)
        assert [(r.ok, r.code) for r in revoked] == [
            (True, None),
            (True, None),
            (False, "unknown_consignment"),
        ]


async def test_a_missing_input_refuses_the_run_before_anything_is_sealed(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    work = jobs(tmp_path, 3)
    work[1].inputs[0].unlink()
    async with agent(SenderAgent, world, transport, tmp_path, "alice") as alice:
        assert isinstance(alice, SenderAgent)
        with pytest.raises(AgentError, match=r"no input file .*n1\.txt.*nothing was sealed"):
            await alice.seal_many(work)
        assert not (tmp_path / "out").exists()
        assert await alice.store.fetchall("SELECT * FROM batch_items") == []


async def test_a_run_resumed_after_a_lost_reply_deposits_each_once(
    world: World,
    escrow: WorkerRunner,
    transport: Transport,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The escrow decided the batch, but the agent died before it kept the reply
    (its stored batch request is gone too): the run again sends the same items
    in a new batch, and the escrow answers each from its record."""
    work = jobs(tmp_path, 4)
    real = batch.ask
    calls = 0

    async def lost(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        await real(*args)
        if calls == 1:
            raise NoReply("the reply was lost", request_id="lost")
        return await real(*args)

    monkeypatch.setattr(batch, "ask", lost)
    async with agent(SenderAgent, world, transport, tmp_path, "alice") as alice:
        assert isinstance(alice, SenderAgent)
        with pytest.raises(NoReply):
            await alice.seal_many(work)
        (job,) = {r["job"] for r in await alice.store.fetchall("SELECT job FROM batch_items")}
        stored = [r.consignment_id for r in await alice.store.batch_items(job)]
        async with alice.store._tx() as conn:
            await conn.execute("DELETE FROM requests WHERE type = 'batch'")
        results = await alice.seal_many(work)
    assert [r.consignment_id for r in results] == stored  # not sealed again
    assert [(r.ok, r.code) for r in results] == [(True, None)] * 4  # not already_deposited
    assert await deposits(world) == 4


async def test_serve_hands_each_over_once_retries_and_parks(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    work = jobs(tmp_path, 3)
    calls: dict[str, int] = {}
    handed: list[str] = []

    async with (
        agent(SenderAgent, world, transport, tmp_path, "alice") as alice,
        agent(ReceiverAgent, world, transport, tmp_path, "bob") as bob,
    ):
        assert isinstance(alice, SenderAgent)
        assert isinstance(bob, ReceiverAgent)
        results = await alice.seal_many(work)
        poison, flaky, hangs = (r.consignment_id or "" for r in results)

        async def handler(opened: OpenedConsignment) -> None:
            cid = opened.consignment_id
            calls[cid] = calls.get(cid, 0) + 1
            assert (opened.destination / "n0.txt").exists() or cid != poison
            if cid == poison:
                raise ValueError("cannot take this one")
            if cid == flaky and calls[cid] == 1:
                raise RuntimeError("database down")
            if cid == hangs and calls[cid] == 1:
                await asyncio.sleep(3600)
            handed.append(cid)

        stop = asyncio.Event()
        options = ServeOptions(handler_timeout=0.5, max_tries=2, poll=0.1)
        into = tmp_path / "into"
        task = asyncio.create_task(bob.serve(handler, into, stop=stop, options=options))
        for r in results:
            await alice.send(r.consignment_id or "")
        async with asyncio.timeout(WAIT):
            while len(handed) < 2 or not await bob.parked():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        stop.set()
        await task
        assert sorted(handed) == sorted([flaky, hangs])
        assert calls == {poison: 2, flaky: 2, hangs: 2}
        ((cid, reason),) = await bob.parked()
        assert cid == poison
        assert "ValueError: cannot take this one" in reason
        assert await releases(world) == 3
        # Served again: nothing is handed over twice, nothing released again.
        stop = asyncio.Event()
        task = asyncio.create_task(bob.serve(handler, into, stop=stop, options=options))
        await asyncio.sleep(0.5)
        stop.set()
        await task
        assert sorted(handed) == sorted([flaky, hangs])
        assert await releases(world) == 3


async def test_a_refused_key_request_is_asked_anew_later(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    """`not_yet` opens nothing; once the window opens, the same call opens it
    (a new key request: the refusal is recorded under the old item's id)."""
    work = jobs(tmp_path, 1)
    opens_at = int(time.time()) + 3
    async with (
        agent(SenderAgent, world, transport, tmp_path, "alice") as alice,
        agent(ReceiverAgent, world, transport, tmp_path, "bob") as bob,
    ):
        assert isinstance(alice, SenderAgent)
        assert isinstance(bob, ReceiverAgent)
        (sealed,) = await alice.seal_many(work, attributes=ControlAttributes(not_before=opens_at))
        await alice.send_many([sealed])
        await arrived(bob, 1)
        (early,) = await bob.open_many(tmp_path / "opened")
        assert (early.ok, early.code) == (False, "not_yet")
        await asyncio.sleep(max(0.0, opens_at - time.time()) + 1.1)
        (later,) = await bob.open_many(tmp_path / "opened")
        assert later.ok, later
        assert (tmp_path / "opened" / str(later.consignment_id) / "n0.txt").exists()

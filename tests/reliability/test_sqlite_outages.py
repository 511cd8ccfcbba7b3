"""The SQLite store when the database cannot take writes: locked by another
process past the busy timeout, or full (SQLite's `max_page_count`, which fails
exactly as a full disk does, with SQLITE_FULL). Requests wait, nothing of them
is kept meanwhile, and once the database takes writes again each is decided
once and answered; none is dead-lettered for it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from broker import InProcessBroker, InProcessTransport, TransportConfig
from escrow_worker.state.base import StoreBusy, Tx
from escrow_worker.state.sqlite import SqliteStore
from tests.escrow_worker.helpers import (
    Agent,
    EscrowSetup,
    deposit_body,
    key_request_body,
    make_escrow,
    request,
    request_id_of,
    running_worker,
    seal_for,
)
from tests.reliability.helpers import escrow_counts, fill_database

DEPOSITS = 6


async def _world(tmp_path: Path) -> tuple[EscrowSetup, InProcessBroker, TransportConfig]:
    return await make_escrow(tmp_path / "escrow"), InProcessBroker(), TransportConfig(prefix="t")


async def _transport(broker: InProcessBroker, config: TransportConfig) -> InProcessTransport:
    transport = InProcessTransport(config, broker=broker)
    await transport.start()
    return transport


async def _logged_waiting(caplog: pytest.LogCaptureFixture) -> None:
    """Until the store says it waits (it rolled back and will try again)."""
    async with asyncio.timeout(30):
        # The store's thread logs it: no event to wait on.
        while not any("requests wait for it" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_locked_database_is_waited_out_and_each_request_decided_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    setup, broker, config = await _world(tmp_path)
    sealed = [seal_for(setup["alice"], [setup["bob"]])[1] for _ in range(DEPOSITS)]
    datas = [request(setup["alice"], "deposit", deposit_body(setup, d)) for d in sealed]
    other = sqlite3.connect(setup.directory / "escrow.db", isolation_level=None, timeout=10)
    try:
        async with (
            await setup.open_service() as service,
            running_worker(service, await _transport(broker, config)) as worker,
        ):
            alice = await Agent(setup, setup["alice"], await _transport(broker, config)).start()
            before = await escrow_counts(setup)
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            for data in datas:
                await alice.send(data)
            # Past the store's 5 s busy timeout: it rolls back, waits, tries again.
            await _logged_waiting(caplog)
            assert worker.processed == 0
            assert _deposits(other) == before["deposits"]
            other.execute("ROLLBACK")
            answers = [await alice.reply_to(request_id_of(d)) for d in datas]
            assert {a.type for a in answers} == {"deposit-receipt"}
        assert worker.processed == DEPOSITS  # each once: no requeue, no dead letter
        counts = await escrow_counts(setup)
        assert counts["deposits"] == before["deposits"] + DEPOSITS
        assert counts["requests"] == before["requests"] + DEPOSITS
    finally:
        other.close()


def _deposits(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM deposits").fetchone()[0])


async def test_a_full_database_is_waited_out_and_nothing_is_half_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    setup, broker, config = await _world(tmp_path)
    consignment, deposit = seal_for(setup["alice"], [setup["bob"]])
    sealed = [seal_for(setup["alice"], [setup["bob"]])[1] for _ in range(DEPOSITS)]
    async with await setup.open_service() as service:
        store = service.store
        assert isinstance(store, SqliteStore)
        async with running_worker(service, await _transport(broker, config)) as worker:
            alice = await Agent(setup, setup["alice"], await _transport(broker, config)).start()
            bob = await Agent(setup, setup["bob"], await _transport(broker, config)).start()
            await alice.ask(request(setup["alice"], "deposit", deposit_body(setup, deposit)))
            before = await escrow_counts(setup)
            done = worker.processed
            fill_database(_connection(store))  # the disk is full: not one more page, no room left
            datas = [request(setup["alice"], "deposit", deposit_body(setup, d)) for d in sealed]
            asks = [request(setup["bob"], "key-request", key_request_body(deposit))]
            for data in datas:
                await alice.send(data)
            await bob.send(asks[0])
            await _logged_waiting(caplog)
            await asyncio.sleep(0.5)  # and a few tries more
            # Waiting, not refused, not dead-lettered; and nothing half applied.
            assert worker.processed == done
            assert await escrow_counts(setup) == before
            # Space again (the connection is the store's; it is between tries).
            _connection(store).execute("PRAGMA max_page_count = 1073741823")
            answers = [await alice.reply_to(request_id_of(d)) for d in datas]
            assert {a.type for a in answers} == {"deposit-receipt"}
            release = await bob.reply_to(request_id_of(asks[0]))
            assert release.type == "key-release"
        counts = await escrow_counts(setup)
        assert counts["deposits"] == before["deposits"] + DEPOSITS
        assert counts["releases"] == counts["released"] == before["releases"] + 1
    assert consignment  # sealed for real; opening is other tests' business


def _connection(store: SqliteStore) -> sqlite3.Connection:
    """The store's own connection (max_page_count is per connection), used only
    while the store's thread is idle or sleeping between tries."""
    conn = store._conn
    assert isinstance(conn, sqlite3.Connection)
    return conn


async def test_a_database_full_for_longer_than_max_wait_is_busy_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path / "escrow.db", max_wait=0.5)
    try:
        fill_database(_connection(store))
        before = await store.run(lambda tx: tx.fetchall("SELECT * FROM escrow_meta"))

        async def job(tx: Tx) -> None:
            await tx.execute("DELETE FROM escrow_meta WHERE key = 'filler0'")
            await tx.execute("INSERT INTO escrow_meta (key, value) VALUES ('b', ?)", ("x" * 9000,))

        with pytest.raises(StoreBusy, match="busy or full"):
            await store.run(job)
        # The whole job was undone, not just the statement that failed.
        assert await store.run(lambda tx: tx.fetchall("SELECT * FROM escrow_meta")) == before
    finally:
        await store.close()

"""The escrow's store on both backends: migrations in order and refused when the
database is newer, one transaction per job (a failing job undoes only itself,
also inside a batch), the rule that a job awaits only its Tx, locks, and the
errors a user sees for a bad location."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from escrow_worker.state.base import (
    SchemaTooNew,
    Store,
    StoreBusy,
    StoreError,
    Tx,
    open_store,
)
from escrow_worker.state.location import Location
from escrow_worker.state.migrations import LATEST, MIGRATIONS
from escrow_worker.state.sqlite import SqliteStore


async def _open(location: Location) -> Store:
    if location.directory is not None:
        location.directory.mkdir(exist_ok=True)
    return await location.open_store()


_SQLITE_TYPES = {"BLOB": "bytes", "INTEGER": "int", "TEXT": "text"}
_PG_TYPES = {"bytea": "bytes", "bigint": "int", "text": "text"}


async def _columns(tx: Tx) -> dict[str, list[tuple[str, str, bool]]]:
    """Every table's columns as (name, kind, not null), backend-neutral."""
    tables: dict[str, list[tuple[str, str, bool]]] = {}
    if tx.dialect == "sqlite":
        names = await tx.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        for (name,) in names:
            rows = await tx.fetchall(f'PRAGMA table_info("{name}")')
            tables[name] = sorted(
                (col, _SQLITE_TYPES[kind], bool(notnull) or bool(pk))
                for _, col, kind, notnull, _, pk in rows
            )
    else:
        rows = await tx.fetchall(
            "SELECT table_name, column_name, data_type, is_nullable"
            " FROM information_schema.columns WHERE table_schema = 'public'"
        )
        for table, col, kind, nullable in rows:
            tables.setdefault(table, []).append((col, _PG_TYPES[kind], nullable == "NO"))
        tables = {k: sorted(v) for k, v in tables.items()}
    return tables


async def test_both_backends_have_the_same_schema(tmp_path: Path, pg_url: str) -> None:
    sqlite = await open_store(None, tmp_path)
    postgres = await open_store(pg_url, None)
    try:
        assert await sqlite.run(_columns) == await postgres.run(_columns)
        assert "deposits" in await sqlite.run(_columns)
    finally:
        await sqlite.close()
        await postgres.close()


async def test_migrations_are_recorded_and_applied_once(escrow_location: Location) -> None:
    for _ in range(2):  # opening again applies nothing and fails nothing
        store = await _open(escrow_location)
        try:
            rows = await store.run(
                lambda tx: tx.fetchall("SELECT version FROM schema_migrations ORDER BY version")
            )
        finally:
            await store.close()
        assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]


async def test_a_newer_database_is_refused_and_left_alone(escrow_location: Location) -> None:
    store = await _open(escrow_location)
    future = LATEST + 1
    try:
        await store.run(
            lambda tx: tx.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (future, "from a newer release", 0),
            )
        )
    finally:
        await store.close()
    with pytest.raises(SchemaTooNew, match=f"schema version {future}") as info:
        await escrow_location.open_store()
    assert info.value.hint is not None
    assert "newer" in info.value.hint
    # Nothing was downgraded: the newer version is still recorded.
    if escrow_location.directory is not None:
        import sqlite3

        with sqlite3.connect(escrow_location.directory / "escrow.db") as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert future in versions


async def test_a_failing_job_undoes_only_itself(escrow_location: Location) -> None:
    store = await _open(escrow_location)
    try:

        def write(key: str, fail: bool):  # type: ignore[no-untyped-def]
            async def job(tx: Tx) -> str:
                await tx.execute("INSERT INTO escrow_meta (key, value) VALUES (?, 'v')", (key,))
                if fail:
                    raise RuntimeError(f"{key} failed")
                return key

            return job

        # Many at once: on SQLite they share a transaction (savepoints), on
        # PostgreSQL each has its own; either way only the failing ones vanish.
        jobs = [store.run(write(f"k{i}", fail=i % 3 == 0)) for i in range(30)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        kept = await store.run(lambda tx: tx.fetchall("SELECT key FROM escrow_meta"))
    finally:
        await store.close()
    failed = {f"k{i}" for i in range(30) if i % 3 == 0}
    assert {r[0] for r in kept} == {f"k{i}" for i in range(30)} - failed
    assert [str(r) for r in results if isinstance(r, RuntimeError)] == [
        f"{k} failed" for k in sorted(failed, key=lambda k: int(k[1:]))
    ]


async def test_a_sqlite_job_that_awaits_anything_else_is_refused(tmp_path: Path) -> None:
    store = await open_store(None, tmp_path)
    try:

        async def sleeps(tx: Tx) -> None:
            await tx.execute("INSERT INTO escrow_meta (key, value) VALUES ('k', 'v')")
            await asyncio.sleep(0)

        with pytest.raises(StoreError, match="awaited something other than the store"):
            await store.run(sleeps)
        assert await store.run(lambda tx: tx.fetchall("SELECT * FROM escrow_meta")) == []
    finally:
        await store.close()


async def test_a_locked_sqlite_database_is_busy_not_broken(tmp_path: Path) -> None:
    import sqlite3

    # max_wait=0: busy at once, not waited out (tests/reliability waits it out).
    store = await SqliteStore.open(tmp_path / "escrow.db", busy_timeout_ms=200, max_wait=0)
    other = sqlite3.connect(tmp_path / "escrow.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreBusy):
            await store.run(
                lambda tx: tx.execute("INSERT INTO escrow_meta (key, value) VALUES ('k', 'v')")
            )
        other.execute("ROLLBACK")
        # Once the lock is gone, the same job goes through.
        await store.run(
            lambda tx: tx.execute("INSERT INTO escrow_meta (key, value) VALUES ('k', 'v')")
        )
        assert await store.run(lambda tx: tx.fetchval("SELECT value FROM escrow_meta")) == "v"
    finally:
        other.close()
        await store.close()


async def test_exclusive_sections_do_not_overlap(escrow_location: Location) -> None:
    stores = [await _open(escrow_location) for _ in range(2)]
    inside: list[int] = []
    overlaps = 0

    async def section(store: object, n: int) -> None:
        nonlocal overlaps
        async with stores[n].exclusive("test"):
            inside.append(n)
            overlaps += len(inside) > 1
            await asyncio.sleep(0.05)
            inside.remove(n)

    try:
        await asyncio.gather(*(section(None, i % 2) for i in range(6)))
    finally:
        for store in stores:
            await store.close()
    assert overlaps == 0


async def test_a_lock_serialises_two_transactions_on_one_key(pg_url: str) -> None:
    """PostgreSQL: `Tx.lock` makes the second wait for the first to commit, so it
    sees what the first wrote (how two workers with one request id behave)."""
    store = await open_store(pg_url, None)
    seen: list[object] = []

    async def first(tx: Tx) -> None:
        await tx.lock("request-1")
        await tx.execute("INSERT INTO escrow_meta (key, value) VALUES ('r', 'first')")
        await asyncio.sleep(0.2)  # PostgreSQL jobs may suspend; the lock is held

    async def second(tx: Tx) -> None:
        await asyncio.sleep(0.05)
        await tx.lock("request-1")
        seen.append(await tx.fetchval("SELECT value FROM escrow_meta WHERE key = 'r'"))

    try:
        await asyncio.gather(store.run(first), store.run(second))
    finally:
        await store.close()
    assert seen == ["first"]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (Location(database="mysql://root@localhost/x"), "must be a postgresql:// URL"),
        (Location(), "no escrow directory and no database URL"),
    ],
    ids=["not-postgresql", "nothing"],
)
async def test_a_bad_location_is_a_clear_error(where: Location, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        await where.open_store()
    assert info.value.hint


async def test_an_unreachable_database_names_it_without_the_password() -> None:
    url = "postgresql://consign:s3cret@127.0.0.1:1/escrow"
    with pytest.raises(StoreError) as info:
        await open_store(url, None)
    assert "s3cret" not in info.value.message
    assert "127.0.0.1:1" in info.value.message
    assert info.value.hint is not None
    assert "CONSIGN_ESCROW_DB" in info.value.hint

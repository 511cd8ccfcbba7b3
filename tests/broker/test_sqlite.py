"""`broker.sqlite.transaction`: all or nothing, and the error that ended the
block is the one reported, even when SQLite already rolled back (as it does on
a full disk)."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from broker.errors import full_disk
from broker.sqlite import open_sqlite, transaction

SCHEMA = ("CREATE TABLE IF NOT EXISTS t (v INTEGER)",)


class _Failed(Exception):
    pass


async def _insert_and_fail(conn: aiosqlite.Connection, value: int, *, sqlite_ended: bool) -> None:
    async with transaction(conn):
        await conn.execute("INSERT INTO t VALUES (?)", (value,))
        if sqlite_ended:
            # What SQLITE_FULL does: the transaction ends under the block.
            await conn.execute("ROLLBACK")
        raise _Failed


async def _rows(path: Path) -> list[int]:
    conn = await open_sqlite(path, SCHEMA)
    try:
        return [r[0] for r in await conn.execute_fetchall("SELECT v FROM t ORDER BY v")]
    finally:
        await conn.close()


async def test_a_block_that_raises_keeps_nothing(tmp_path: Path) -> None:
    conn = await open_sqlite(tmp_path / "a.db", SCHEMA)
    try:
        async with transaction(conn):
            await conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(_Failed):
            await _insert_and_fail(conn, 2, sqlite_ended=False)
        assert not conn.in_transaction
    finally:
        await conn.close()
    assert await _rows(tmp_path / "a.db") == [1]


async def test_the_blocks_error_is_reported_when_sqlite_rolled_back_already(
    tmp_path: Path,
) -> None:
    conn = await open_sqlite(tmp_path / "a.db", SCHEMA)
    try:
        with pytest.raises(_Failed):
            await _insert_and_fail(conn, 2, sqlite_ended=True)
        # The connection is usable at once.
        async with transaction(conn):
            await conn.execute("INSERT INTO t VALUES (3)")
    finally:
        await conn.close()
    assert await _rows(tmp_path / "a.db") == [3]


def test_a_full_disk_is_told_from_other_write_errors() -> None:
    assert full_disk(sqlite3.OperationalError("database or disk is full"))  # SQLITE_FULL
    assert full_disk(OSError(errno.ENOSPC, "No space left on device"))
    assert full_disk(OSError(errno.EFBIG, "File too large"))
    assert not full_disk(sqlite3.OperationalError("disk I/O error"))
    assert not full_disk(OSError(errno.EACCES, "Permission denied"))

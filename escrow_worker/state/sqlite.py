"""`SqliteStore`: the escrow's state in one SQLite file, for one host.

One thread per process owns the connection. `run(job)` puts the job on that
thread's queue (the one hand-off) and awaits its result. The thread takes every
job waiting at that moment (up to `max_batch`), runs them in ONE transaction
(BEGIN IMMEDIATE, a savepoint per job, so a failing job undoes only itself),
commits once, then hands all the results back to the event loop at once. With
`synchronous = FULL` one fsync makes the whole batch durable: group commit,
without weakening what a reply promises. Several processes on the same host may
share the file (WAL mode); BEGIN IMMEDIATE serialises them, and a database
still locked after the busy timeout is `StoreBusy`. SQLite's WAL mode is for
one host only: never put the file on a network file system.

A job's coroutine is driven on the thread without an event loop (see
`state.base`). This module must never run a job outside a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from escrow_worker.state import txlog
from escrow_worker.state.base import Row, SchemaTooNew, Store, StoreBusy, StoreError, Tx
from escrow_worker.state.migrations import BOOKKEEPING, LATEST, MIGRATIONS

__all__ = ["SqliteStore"]

T = TypeVar("T")
_log = logging.getLogger(__name__)
_BUSY_TIMEOUT_MS: Final = 5000
#: Seconds a batch waits out a locked or full database before its jobs get
#: `StoreBusy` (as long as `PostgresStore` waits for an unreachable server).
_MAX_WAIT: Final = 600.0
_SAVEPOINT: Final = "job"


class _SqliteTx(Tx):
    dialect = "sqlite"
    for_update = ""
    for_share = ""

    __slots__ = ("_conn", "cache", "memo")

    def __init__(self, conn: sqlite3.Connection, cache: dict[str, Any]) -> None:
        self._conn = conn
        self.cache = cache
        self.memo = {}

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    async def lock(self, key: str) -> None:
        return None  # BEGIN IMMEDIATE: every transaction here is serial already


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a store job's coroutine to completion without an event loop. A job
    that suspends (awaits anything but its Tx) is a bug: refused loudly."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise StoreError(
        "a store job awaited something other than the store",
        "this is a bug in the escrow: report it with the log",
    )


@dataclass(eq=False)
class _Job:
    fn: Callable[[Tx], Coroutine[Any, Any, Any]]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    outcome: tuple[bool, Any] = field(default=(False, None))


def _connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=256
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or mode[0] != "wal":
            raise sqlite3.OperationalError("the database refuses WAL mode")
        # FULL: a decision the escrow has replied to must survive a power cut.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(BOOKKEEPING.format(INT="INTEGER"))
        current = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0
        if current > LATEST:
            raise SchemaTooNew(
                f"the escrow database is at schema version {current}; this program knows "
                f"versions up to {LATEST}",
                "run the newer consignment that wrote it; never an older one against it",
            )
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            for statement in migration.sql("sqlite"):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.description, int(time.time())),
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


#: SQLite's primary result codes for trouble that passes: another process holds
#: the lock past the busy timeout, the disk (or `max_page_count`) is full, a
#: write failed.
_TRANSIENT: Final = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR}
)


def _transient(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _TRANSIENT


def _as_store_error(exc: sqlite3.Error) -> StoreError:
    if isinstance(exc, sqlite3.OperationalError):
        # Locked past the busy timeout, disk full, I/O error: try again later.
        return StoreBusy(f"the escrow database is busy or full ({exc})", "it is tried again")
    return StoreError(f"the escrow database failed: {exc}", "restore it from backup if damaged")


class SqliteStore(Store):
    kind = "sqlite"

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        max_batch: int = 64,
        max_wait: float = _MAX_WAIT,
    ) -> None:
        self._path = path
        self._conn = conn
        self._max_wait = max_wait
        self._outage = False  # logged once per outage, not once per batch
        self._cache: dict[str, Any] = {}
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(
            target=self._serve, name=f"escrow store {path.name}", daemon=True
        )
        self._thread.start()

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        max_batch: int = 64,
        busy_timeout_ms: int = _BUSY_TIMEOUT_MS,
        max_wait: float = _MAX_WAIT,
    ) -> SqliteStore:
        if not await asyncio.to_thread(path.parent.is_dir):
            raise StoreError(
                f"the escrow directory {path.parent} does not exist",
                "check --escrow-dir / CONSIGN_ESCROW_DIR, or run `consign escrow init` first",
            )
        try:
            conn = await asyncio.to_thread(_connect, path, busy_timeout_ms)
        except OSError as exc:
            raise StoreError(
                f"cannot open the escrow database {path}: {exc}",
                "check --escrow-dir and that the directory is writable",
            ) from exc
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot prepare the escrow database {path}: {exc}",
                "is it an escrow database? restore it from backup if it is damaged",
            ) from exc
        return cls(path, conn, max_batch=max_batch, max_wait=max_wait)

    @property
    def location(self) -> str:
        return str(self._path)

    async def run(self, job: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        if self._closed:
            raise StoreError("the escrow store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(job, future, loop))
        return await future

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """An advisory lock on a file beside the database (`fcntl.flock`)."""
        path = self._path.with_name(f"{self._path.name}.{name}.lock")
        fd = await asyncio.to_thread(os.open, path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    # -- the store's thread ----------------------------------------------------------

    def _serve(self) -> None:
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                self._run_waiting(batch)
                self._hand_back(batch)
                if stop:
                    return
        finally:
            self._conn.close()

    def _run_waiting(self, batch: list[_Job]) -> None:
        """Run the batch; while the database is locked by another process, full,
        or failing to write, roll it all back, wait and run it again, up to
        `max_wait` seconds (or until the store closes): then each job gets
        `StoreBusy` and its request goes back to the queue, nothing of it kept."""
        deadline = time.monotonic() + self._max_wait
        delay = 0.05
        while True:
            transient = self._run_batch(batch)
            if transient is None:
                if self._outage:
                    self._outage = False
                    _log.warning("the escrow database %s takes writes again", self._path)
                return
            if self._closed or time.monotonic() >= deadline:
                self._fail_all(batch, _as_store_error(transient), everyone=True)
                return
            if not self._outage:
                self._outage = True
                _log.warning(
                    "the escrow database %s cannot take writes (%s); requests wait for it",
                    self._path,
                    transient,
                )
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
            delay = min(delay * 2, 1.0)

    def _run_batch(self, batch: list[_Job]) -> sqlite3.Error | None:
        """One transaction for the batch. Returns the error if a transient one
        (locked, full, I/O) stopped it: then everything was rolled back and the
        batch may run again. A job's own failure undoes that job alone."""
        conn = self._conn
        for job in batch:
            job.outcome = (False, None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute(f"SAVEPOINT {_SAVEPOINT}")
                try:
                    tx = _SqliteTx(conn, self._cache)
                    result = drive(job.fn(tx))
                    drive(txlog.flush(tx))  # in the job's savepoint: undone with it
                    job.outcome = (True, result)
                except sqlite3.Error as exc:
                    if _transient(exc) or not conn.in_transaction:
                        raise
                    job.outcome = (False, _as_store_error(exc))
                    conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                except Exception as exc:  # the job's own failure: undo it alone
                    job.outcome = (False, exc)
                    conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                conn.execute(f"RELEASE {_SAVEPOINT}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            if _transient(exc):
                return exc
            self._fail_all(batch, _as_store_error(exc), everyone=True)
        return None

    @staticmethod
    def _fail_all(batch: list[_Job], error: BaseException, *, everyone: bool = False) -> None:
        """Nothing of the batch was kept: every job fails (`everyone`), or those
        that had not failed on their own already."""
        for job in batch:
            if everyone or job.outcome[0] or job.outcome[1] is None:
                job.outcome = (False, error)

    def _hand_back(self, batch: list[_Job]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in batch:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, jobs)
            except RuntimeError:  # that event loop is closed: nobody waits any more
                _log.debug("%d store results had nobody to go to", len(jobs))


def _settle(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.done():  # the caller was cancelled; the job may have committed
            continue
        ok, value = job.outcome
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)

"""`PostgresStore`: the escrow's state on a PostgreSQL server, shared by workers
on any number of hosts.

A pool of asyncpg connections; `run(job)` takes one, runs the job in one
transaction (READ COMMITTED) and commits. asyncpg prepares every statement once
per connection and reuses it. Exactness under concurrency comes from locks,
not luck: `Tx.lock(request_id)` (a transaction-scoped advisory lock) makes two
workers that got the same request wait for each other, so the second finds the
first's stored reply; a decision that counts (a release) reads its rows with
`Tx.for_update`. A serialization failure or deadlock re-runs the job (its
first run left nothing). Concurrent commits from many connections share WAL
flushes: PostgreSQL's own group commit, with `fsync` and `synchronous_commit`
left on.

When the server cannot be reached (down, restarting), `run` waits and tries
again, up to `max_wait` seconds, then raises `StoreBusy`: the delivery goes
back to the queue and is answered once the server is back, never decided twice
(the request id is stored with its decision). This module must never log a
URL with its password, nor a query's parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import asyncpg
from yarl import URL

from escrow_worker.state import txlog
from escrow_worker.state.base import Row, SchemaTooNew, Store, StoreBusy, StoreError, Tx
from escrow_worker.state.migrations import BOOKKEEPING, LATEST, MIGRATIONS

if TYPE_CHECKING:
    from asyncpg.pool import Pool, PoolConnectionProxy

__all__ = ["PostgresStore"]

T = TypeVar("T")
_log = logging.getLogger(__name__)

#: Advisory lock id held while migrating: two workers starting at once migrate once.
_MIGRATION_LOCK: Final = 0x636F6E7369676E  # "consign"
_RETRIES: Final = 8  # serialization failures / deadlocks before giving up
#: A job still running after this long is cut short as if the server were
#: unreachable (one timer per job; asyncpg's per-statement one costs a timer
#: per round trip).
_JOB_TIMEOUT: Final = 60.0
#: What means "the server is not reachable now", as opposed to a bad query.
_UNREACHABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)
_RETRY: Final = (asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError)


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...` (none occurs inside a literal
    in our SQL; a quoted `?` is left alone all the same)."""
    out: list[str] = []
    n = 0
    for i, part in enumerate(re.split(r"('[^']*')", sql)):
        if i % 2:  # a string literal
            out.append(part)
            continue
        pieces = part.split("?")
        for j, piece in enumerate(pieces):
            out.append(piece)
            if j < len(pieces) - 1:
                n += 1
                out.append(f"${n}")
    return "".join(out)


def _unreachable(exc: BaseException) -> bool:
    """The server is down or the connection broke (not: a bad query)."""
    if isinstance(exc, _UNREACHABLE):
        return True
    # asyncpg says "connection is closed" with the class it also uses for misuse.
    return isinstance(exc, asyncpg.exceptions.InterfaceError) and "closed" in str(exc)


def _rowcount(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


class _PgTx(Tx):
    """The transaction begins with its first statement, in the same round trip
    when that is a `lock` (a request's job): BEGIN costs no round trip of its own."""

    dialect = "postgresql"
    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"

    __slots__ = ("_conn", "begun", "cache", "memo")

    def __init__(
        self, conn: asyncpg.Connection[Any] | PoolConnectionProxy[Any], cache: dict[str, Any]
    ) -> None:
        self._conn = conn
        self.begun = False
        self.cache = cache
        self.memo = {}

    async def _begin(self) -> None:
        self.begun = True
        await self._conn.execute("BEGIN")

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        if not self.begun:
            await self._begin()
        return _rowcount(await self._conn.execute(_pg(sql), *params))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if not self.begun:
            await self._begin()
        await self._conn.executemany(_pg(sql), list(rows))

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        if not self.begun:
            await self._begin()
        return [tuple(r) for r in await self._conn.fetch(_pg(sql), *params)]

    async def lock(self, key: str) -> None:
        if self.begun:
            await self._conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_id(key))
            return
        self.begun = True
        # One round trip for both (a simple query, so no parameter: the lock id
        # is an integer this module computed).
        await self._conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({_lock_id(key):d})")

    async def finish(self, commit: bool) -> None:
        if self.begun:
            self.begun = False
            await self._conn.execute("COMMIT" if commit else "ROLLBACK")


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """The pool's reset between jobs: none. A job leaves nothing in the session
    (its locks are the transaction's, it sets, listens and declares nothing),
    and `PostgresStore.run` ends every transaction; asyncpg's default reset
    would cost a round trip per job."""


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parsed = URL(url)
    except ValueError:
        return "postgresql://..."
    return str(parsed.with_password(None)) if parsed.password else str(parsed)


class PostgresStore(Store):
    kind = "postgresql"

    def __init__(self, url: str, pool: Pool, *, max_wait: float = 600.0) -> None:
        self._url = url
        self._pool = pool
        self._max_wait = max_wait
        self._closed = False
        self._outage = False  # logged once per outage, not once per waiting job
        self._cache: dict[str, Any] = {}

    @classmethod
    async def open(cls, url: str, *, max_size: int = 10, max_wait: float = 600.0) -> PostgresStore:
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=max_size, reset=_keep_session
            )
        except _UNREACHABLE as exc:
            raise StoreError(
                f"cannot connect to the escrow database {redact(url)}: {exc}",
                "check CONSIGN_ESCROW_DB and that PostgreSQL is running and reachable",
            ) from exc
        except asyncpg.PostgresError as exc:
            raise StoreError(
                f"the escrow database {redact(url)} refused the connection: {exc}",
                "check the user, password and database name in CONSIGN_ESCROW_DB",
            ) from exc
        store = cls(url, pool, max_wait=max_wait)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    @property
    def location(self) -> str:
        return redact(self._url)

    async def _migrate(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(BOOKKEEPING.format(INT="BIGINT"))
            current = await conn.fetchval("SELECT max(version) FROM schema_migrations") or 0
            if current > LATEST:
                raise SchemaTooNew(
                    f"the escrow database is at schema version {current}; this program "
                    f"knows versions up to {LATEST}",
                    "run the newer consignment that wrote it; never an older one against it",
                )
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.sql("postgresql"):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at)"
                    " VALUES ($1, $2, $3)",
                    migration.version,
                    migration.description,
                    int(time.time()),
                )

    async def run(self, job: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        if self._closed:
            raise StoreError("the escrow store is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait
        delay, retries = 0.05, 0
        while True:
            try:
                async with self._pool.acquire() as conn:
                    tx = _PgTx(conn, self._cache)
                    try:
                        async with asyncio.timeout(_JOB_TIMEOUT):
                            result = await job(tx)
                            await txlog.flush(tx)  # last: the log's lock is the last one taken
                            await tx.finish(commit=True)
                    except BaseException:
                        if tx.begun and not conn.is_closed():
                            with contextlib.suppress(Exception):
                                await tx.finish(commit=False)
                        raise
                if self._outage:
                    self._outage = False
                    _log.warning("the escrow database %s answers again", self.location)
                return result
            except _RETRY:
                retries += 1
                if retries > _RETRIES:
                    raise StoreBusy(
                        "the escrow database kept refusing the transaction as conflicting",
                        "it is tried again",
                    ) from None
                await asyncio.sleep(0.005 * retries)
            except (*_UNREACHABLE, asyncpg.exceptions.InterfaceError) as exc:
                if not _unreachable(exc):
                    raise StoreError(
                        f"the escrow database connection was misused: {exc}",
                        "this is a bug in the escrow: report it with the log",
                    ) from exc
                if loop.time() >= deadline:
                    raise StoreBusy(
                        f"the escrow database {self.location} is unreachable ({exc})",
                        "it is tried again once the database answers",
                    ) from exc
                if not self._outage:
                    self._outage = True
                    _log.warning(
                        "the escrow database %s is unreachable (%s); requests wait for it",
                        self.location,
                        exc,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            except asyncpg.PostgresError as exc:
                raise StoreError(
                    f"the escrow database refused a query: {exc}",
                    "this is a bug or a damaged database: report it with the log",
                ) from exc

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """A session advisory lock on a connection of its own (released if this
        process dies: its connection closes)."""
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", _lock_id(f"exclusive:{name}"))
            try:
                yield
            finally:
                try:
                    await conn.execute(
                        "SELECT pg_advisory_unlock($1)", _lock_id(f"exclusive:{name}")
                    )
                except BaseException:
                    # The pool does not reset sessions: close this one, and
                    # its lock with it.
                    conn.terminate()
                    raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._pool.close()

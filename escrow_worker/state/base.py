"""The escrow's store: one interface, two backends.

`Store.run(job)` runs `job(tx)` as ONE transaction and returns what it returns;
if the job raises, nothing it did is kept. Every read and write of the
escrow's state goes through a job, written once against `Tx` with `?`
placeholders:

- `SqliteStore` (`state.sqlite`), the embedded default: one SQLite file in the
  escrow directory, for one host. All jobs of a process run on one thread that
  owns the connection; the jobs waiting at a moment run in one transaction
  (each in a savepoint of its own) and commit together (group commit, with
  `synchronous = FULL`). A job costs one hand-off to that thread.
- `PostgresStore` (`state.postgres`), for workers on several hosts: a pool of
  asyncpg connections, one transaction per job with prepared statements, row
  locks (`Tx.for_update`) where a decision counts, retried on a serialization
  failure or deadlock, and waited out while the server is unreachable.

The rule that makes one job run on both: **a job awaits nothing but its `Tx`**
(no sleeps, no threads, no network). On SQLite the job's coroutine is driven to
completion on the store's thread without an event loop; one that suspends is a
programming error and fails loudly.

Errors: `StoreBusy` (transient: locked, unreachable, disk full; try the request
again later), `SchemaTooNew` (refuse to start), `StoreError` (anything else
wrong with the store). This module must never hold business rules or SQL of a
feature.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from escrow_worker.errors import EscrowError
from escrow_worker.state.migrations import Dialect

__all__ = [
    "DB_FILENAME",
    "LogItem",
    "Row",
    "SchemaTooNew",
    "Store",
    "StoreBusy",
    "StoreError",
    "Tx",
    "open_store",
]

T = TypeVar("T")
Row = tuple[Any, ...]
DB_FILENAME = "escrow.db"


class StoreError(EscrowError):
    """The escrow's store cannot be opened or used."""


class StoreBusy(StoreError):
    """Transient: the database is locked, unreachable or out of space. Nothing of
    the job was kept; the same request may be tried again later."""


class SchemaTooNew(StoreError):
    """The database was written by a newer version of this program."""


@dataclass(frozen=True)
class LogItem:
    """An entry of the transaction log a job asked for (`Tx.log`), before it has
    its place in the chain (`state.txlog` gives it one)."""

    kind: str
    data: Mapping[str, Any]
    at: int
    consignment: str | None = None
    parties: tuple[str, ...] = ()


class Tx(abc.ABC):
    """One open transaction. SQL uses `?` placeholders on both backends."""

    __slots__ = ("_log",)
    _log: list[LogItem]

    dialect: ClassVar[Dialect]
    #: Appended to a SELECT that a decision will update: a row lock on
    #: PostgreSQL; nothing on SQLite, where the transaction holds the write lock.
    for_update: ClassVar[str]
    #: The same for a row that must not change until this transaction ends.
    for_share: ClassVar[str]
    #: Shared by every transaction of one store: for caches kept exact by a
    #: version read in the transaction that uses them (`escrow_worker.ca.cache`).
    cache: dict[str, Any]
    #: This transaction's own, gone when it ends.
    memo: dict[str, Any]

    @abc.abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of rows it changed."""

    @abc.abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    def log(self, item: LogItem) -> None:
        """Append `item` to the transaction log when the job ends, in this same
        transaction (the store does it, so the log's lock is always the last
        lock a transaction takes and can never be part of a deadlock)."""
        try:
            self._log.append(item)
        except AttributeError:
            self._log = [item]

    def take_log(self) -> list[LogItem]:
        """The entries asked for so far, forgotten here (the store's, at job end)."""
        items: list[LogItem] = getattr(self, "_log", [])
        self._log = []
        return items

    @abc.abstractmethod
    async def lock(self, key: str) -> None:
        """Serialise, until this transaction ends, with every other transaction
        that locks the same `key` (e.g. one request id handled by two workers at
        once). A no-op on SQLite, where transactions are serial already."""


class Store(abc.ABC):
    """The escrow's state. Open with `open_store`; close with `close()`."""

    kind: ClassVar[Dialect]

    @abc.abstractmethod
    async def run(self, job: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        """Run `job(tx)` in one transaction and return its result (see the module
        docstring for what a job may await). Raises what the job raises (its
        changes undone), `StoreBusy`, or `StoreError`."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish the jobs already queued, then close. Idempotent."""

    @abc.abstractmethod
    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]:
        """Hold a named lock across several transactions, against every process
        using this store (e.g. one master-key rotation at a time). Released if
        the holder dies."""

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the data is, for messages (never a password)."""

    @property
    def shares_files(self) -> bool:
        """True when the escrow's key files live beside the database (SQLite),
        False when the store holds them (PostgreSQL)."""
        return self.kind == "sqlite"


def is_database_url(value: str | None) -> bool:
    return bool(value) and str(value).split("://", 1)[0].lower() in ("postgresql", "postgres")


async def open_store(db_url: str | None, escrow_dir: Path | None) -> Store:
    """The store `CONSIGN_ESCROW_DB` names: a `postgresql://` URL, or (unset) the
    SQLite file `escrow.db` in `escrow_dir`. Applies pending migrations."""
    if db_url:
        if not is_database_url(db_url):
            raise StoreError(
                f"CONSIGN_ESCROW_DB must be a postgresql:// URL, not {db_url.split('://')[0]!r}",
                "unset it to use SQLite in the escrow directory, or give "
                "postgresql://user@host:5432/dbname",
            )
        from escrow_worker.state.postgres import PostgresStore

        return await PostgresStore.open(db_url)
    if escrow_dir is None:
        raise StoreError(
            "which escrow? no escrow directory and no database URL",
            "set CONSIGN_ESCROW_DIR (SQLite in that directory) or CONSIGN_ESCROW_DB "
            "(postgresql://...)",
        )
    from escrow_worker.state.sqlite import SqliteStore

    return await SqliteStore.open(escrow_dir / DB_FILENAME)

"""Where an escrow lives: its database and its sealed key files.

An escrow is named by a `Location`: an escrow directory (SQLite `escrow.db`
and the key files beside it: the embedded default, one host), or a PostgreSQL
URL (`CONSIGN_ESCROW_DB`; the store holds the key files too, in its
`escrow_files` table, so a worker host needs only that URL, the broker URL and
the escrow passphrase).

The key files, by name (see `ca.authority` and `state.masterkey`):

  ca.pem / ca.key              CA certificate / sealed Ed25519 CA key
  signing.pem / signing.key    the escrow's signing certificate / sealed key
  encryption.pem / encryption.key   its encryption certificate / sealed key
  master.keys                  the master keyring, sealed

A `Keystore` reads and writes them, in the directory or in the store. Private
ones are always sealed under the escrow passphrase before they get here; this
module must never see a key in clear, nor log a file's contents.
"""

from __future__ import annotations

import abc
import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from broker.errors import FileError
from broker.files import read_bytes, write_bytes
from escrow_worker.errors import EscrowError
from escrow_worker.state.base import DB_FILENAME, Store, Tx, is_database_url, open_store

__all__ = ["FILES", "DirectoryKeystore", "Keystore", "Location", "StoreKeystore"]

#: Every file an escrow keeps, and whether it is private (sealed, mode 0600).
FILES: Final[dict[str, bool]] = {
    "ca.pem": False,
    "ca.key": True,
    "signing.pem": False,
    "signing.key": True,
    "encryption.pem": False,
    "encryption.key": True,
    "master.keys": True,
}
_LIMIT: Final = 1 << 20


def _check(name: str) -> None:
    if name not in FILES:
        raise ValueError(f"not an escrow file: {name!r}")


class Keystore(abc.ABC):
    """The escrow's files: certificates, sealed keys and the sealed keyring."""

    @abc.abstractmethod
    async def read(self, name: str) -> bytes | None:
        """The file's bytes, or None if the escrow has none by that name."""

    @abc.abstractmethod
    async def write(self, name: str, data: bytes, *, overwrite: bool = False) -> None:
        """Store `data` atomically; refuse to replace a file unless `overwrite`."""

    async def require(self, name: str) -> bytes:
        data = await self.read(name)
        if data is None:
            raise EscrowError(
                f"the escrow has no {name}",
                "is this an escrow? run `consign escrow init` first, or restore it from backup",
            )
        return data

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """Where the files are, for messages."""


class DirectoryKeystore(Keystore):
    """Files in the escrow directory, as `consign escrow init` writes them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def read(self, name: str) -> bytes | None:
        _check(name)
        path = self.directory / name
        if not await asyncio.to_thread(path.is_file):
            return None
        return await asyncio.to_thread(read_bytes, path, name, _LIMIT)

    async def write(self, name: str, data: bytes, *, overwrite: bool = False) -> None:
        _check(name)
        try:
            await asyncio.to_thread(
                write_bytes, self.directory / name, data, private=FILES[name], overwrite=overwrite
            )
        except FileError as exc:
            raise EscrowError(exc.message, exc.hint) from exc

    @property
    def where(self) -> str:
        return str(self.directory)


class StoreKeystore(Keystore):
    """Files in the store's `escrow_files` table (PostgreSQL: no shared disk)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def read(self, name: str) -> bytes | None:
        _check(name)

        async def job(tx: Tx) -> bytes | None:
            data = await tx.fetchval("SELECT data FROM escrow_files WHERE name = ?", (name,))
            return None if data is None else bytes(data)

        return await self._store.run(job)

    async def write(self, name: str, data: bytes, *, overwrite: bool = False) -> None:
        _check(name)
        now = int(time.time())

        async def job(tx: Tx) -> int:
            if overwrite:
                return await tx.execute(
                    "INSERT INTO escrow_files (name, data, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET data = excluded.data,"
                    " updated_at = excluded.updated_at",
                    (name, data, now),
                )
            return await tx.execute(
                "INSERT INTO escrow_files (name, data, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, data, now),
            )

        if await self._store.run(job) != 1:
            raise EscrowError(
                f"the escrow already has {name} in {self.where}",
                "this database already holds an escrow: use another one",
            )

    @property
    def where(self) -> str:
        return self._store.location


@dataclass(frozen=True)
class Location:
    """An escrow directory, a PostgreSQL URL, or both (the URL wins for the state;
    the directory then only holds what the operator writes there)."""

    directory: Path | None = None
    database: str | None = None

    @classmethod
    def of(cls, where: Location | Path | str) -> Location:
        """A Location from a directory path, a postgresql:// URL, or a Location."""
        if isinstance(where, Location):
            return where
        if isinstance(where, str) and is_database_url(where):
            return cls(database=where)
        return cls(directory=Path(where))

    @classmethod
    def from_env(cls, directory: Path | None, database: str | None = None) -> Location:
        """`--escrow-dir`/CONSIGN_ESCROW_DIR and CONSIGN_ESCROW_DB (when not given)."""
        if database is None:
            database = os.environ.get("CONSIGN_ESCROW_DB") or None
        return cls(directory, database)

    @property
    def uses_database_server(self) -> bool:
        return self.database is not None

    def describe(self) -> str:
        if self.database is not None:
            from escrow_worker.state.postgres import redact

            return redact(self.database)
        return str(self.directory)

    def require_initialised(self) -> None:
        """Fail early (before any passphrase is asked) when a directory escrow is
        not there; a database escrow is checked when it opens."""
        if self.database is not None:
            return
        if self.directory is None:
            raise EscrowError(
                "which escrow? no escrow directory and no database URL",
                "set CONSIGN_ESCROW_DIR (or --escrow-dir), or CONSIGN_ESCROW_DB",
            )
        if (
            not (self.directory / "ca.pem").is_file()
            or not (self.directory / DB_FILENAME).is_file()
        ):
            raise EscrowError(
                f"{self.directory} is not an escrow data directory",
                "run `consign escrow init` first, or check --escrow-dir / CONSIGN_ESCROW_DIR",
            )

    async def open_store(self) -> Store:
        return await open_store(self.database, self.directory)

    def keystore(self, store: Store) -> Keystore:
        if self.database is not None:
            return StoreKeystore(store)
        assert self.directory is not None
        return DirectoryKeystore(self.directory)

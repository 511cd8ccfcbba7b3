"""The escrow's master keys: what deposited key parts are encrypted under at rest.

A keyring file `master.keys` in the escrow data directory holds one or more
32-byte keys, each with a key id, sealed under the escrow passphrase (the
sealed-file format of `broker.pki.sealed`, kind "escrow-master-keyring", the same scrypt
cost as the escrow's other key files). Which key encrypts new parts is recorded in
the database (`escrow_meta.master_key_id`), so that it changes in the same
transaction as the re-encrypted parts.

An escrow part is AES-256-GCM(key, random 96-bit nonce, part, associated data =
"consignment/v1 escrow part" || 0x00 || consignment id || 0x00 || key id),
stored as nonce || ciphertext with the key id beside it: a part moved to another
consignment, or relabelled with another key id, does not decrypt.

Rotation (`rotate_master_key`): add a new key to the keyring file; in one
transaction re-encrypt every part under it and make it current; then drop the
keys no part uses any more. A worker that meets a key id it does not hold reloads
the keyring file; one that finds a newer current key id in the database reloads
before it encrypts. This module must never write a master key anywhere but the
sealed keyring, nor put one (or a part) in a message or a log.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiosqlite
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.canonical import canonical_json, parse_canonical_json, unb64
from broker.errors import BrokerError, IdentityFileError
from broker.files import read_bytes, write_bytes
from broker.pki import sealed as _sealed
from broker.sqlite import transaction
from escrow_worker.errors import EscrowError
from escrow_worker.state.db import get_meta, open_db, set_meta
from escrow_worker.state.paths import EscrowPaths

KEYRING_FILE = "master.keys"
KIND = "escrow-master-keyring"
META_KEY = "master_key_id"
_LOCK_FILE = "master.lock"
_AAD_LABEL = b"consignment/v1 escrow part\x00"
_NONCE = 12
_RESTORE = "restore master.keys and escrow.db from the same backup"


class UnknownMasterKey(EscrowError):
    """A part is encrypted under a key id the keyring does not hold."""


def _aad(consignment_id: str, key_id: str) -> bytes:
    return _AAD_LABEL + consignment_id.encode("ascii") + b"\x00" + key_id.encode("ascii")


@dataclass(frozen=True)
class MasterKeyring:
    """Master keys by key id. `repr` never shows a key."""

    keys: Mapping[str, bytes] = field(repr=False)
    created: Mapping[str, int] = field(default_factory=dict)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self.keys

    def encrypt(self, key_id: str, consignment_id: str, part: bytes) -> bytes:
        key = self._key(key_id)
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(key).encrypt(nonce, part, _aad(consignment_id, key_id))

    def decrypt(self, key_id: str, consignment_id: str, blob: bytes) -> bytes:
        key = self._key(key_id)
        try:
            return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], _aad(consignment_id, key_id))
        except (InvalidTag, ValueError) as exc:
            raise EscrowError(
                f"the stored escrow part of consignment {consignment_id} does not decrypt",
                _RESTORE,
            ) from exc

    def _key(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise UnknownMasterKey(
                f"master key {key_id!r} is not in the keyring", _RESTORE
            ) from None

    def with_key(self, key_id: str, key: bytes, created_at: int) -> MasterKeyring:
        return MasterKeyring({**self.keys, key_id: key}, {**self.created, key_id: created_at})

    def only(self, key_id: str) -> MasterKeyring:
        return MasterKeyring({key_id: self._key(key_id)}, {key_id: self.created.get(key_id, 0)})


def keyring_path(escrow_dir: Path) -> Path:
    return escrow_dir / KEYRING_FILE


def new_key() -> tuple[str, bytes]:
    """A fresh master key and its (random, public) id."""
    return secrets.token_hex(8), os.urandom(32)


def _dump(keyring: MasterKeyring) -> bytes:
    entries = [
        {
            "created_at": keyring.created.get(key_id, 0),
            "id": key_id,
            "key": base64.b64encode(key).decode("ascii"),
        }
        for key_id, key in sorted(keyring.keys.items())
    ]
    return canonical_json({"keys": entries})


def _load(plaintext: bytes) -> MasterKeyring:
    try:
        content = parse_canonical_json(plaintext, "the master keyring")
        keys: dict[str, bytes] = {}
        created: dict[str, int] = {}
        for entry in content["keys"]:
            key = unb64(entry["key"], "key")
            if len(key) != 32 or not isinstance(entry["id"], str):
                raise ValueError("bad key entry")
            keys[entry["id"]] = key
            created[entry["id"]] = int(entry["created_at"])
    except (KeyError, TypeError, ValueError, BrokerError) as exc:
        raise IdentityFileError(
            "inconsistent", "the master keyring holds no valid keys", _RESTORE
        ) from exc
    if not keys:
        raise IdentityFileError("inconsistent", "the master keyring is empty", _RESTORE)
    return MasterKeyring(keys, created)


def read_keyring(escrow_dir: Path, passphrase: bytes) -> MasterKeyring:
    """Unseal the keyring (slow: scrypt). Raises IdentityFileError on a wrong passphrase."""
    data = read_bytes(keyring_path(escrow_dir), "master keyring")
    return _load(_sealed.unseal(data, passphrase, kind=KIND))


def _log_n(escrow_dir: Path) -> int:
    """The scrypt cost of the escrow's other sealed keys, for the keyring too."""
    try:
        header = json.loads(read_bytes(EscrowPaths(escrow_dir).key("signing"), "escrow key"))
        log_n = header["kdf"]["log_n"]
    except (KeyError, TypeError, ValueError):
        return _sealed.DEFAULT_LOG_N
    if isinstance(log_n, int) and _sealed.MIN_LOG_N <= log_n <= _sealed.MAX_LOG_N:
        return log_n
    return _sealed.DEFAULT_LOG_N


def write_keyring(
    escrow_dir: Path, keyring: MasterKeyring, passphrase: bytes, *, overwrite: bool
) -> None:
    sealed = _sealed.seal(_dump(keyring), passphrase, kind=KIND, log_n=_log_n(escrow_dir))
    write_bytes(keyring_path(escrow_dir), sealed, private=True, overwrite=overwrite)


def ensure_keyring(escrow_dir: Path, passphrase: bytes, *, now: datetime) -> MasterKeyring:
    """Read the keyring, creating it with one key if the escrow has none yet.

    Two workers starting at once may both try; the file is created atomically
    (never replaced), so the loser reads the winner's."""
    if not keyring_path(escrow_dir).exists():
        key_id, key = new_key()
        first = MasterKeyring({key_id: key}, {key_id: int(now.timestamp())})
        with contextlib.suppress(EscrowError):
            write_keyring(escrow_dir, first, passphrase, overwrite=False)
    return read_keyring(escrow_dir, passphrase)


async def current_key_id(conn: aiosqlite.Connection) -> str | None:
    return await get_meta(conn, META_KEY)


async def adopt_keyring(conn: aiosqlite.Connection, keyring: MasterKeyring) -> str:
    """Make sure the database names a current key the keyring holds; return it.

    An escrow opened for the first time takes the keyring's (only) key."""
    async with transaction(conn):
        current = await current_key_id(conn)
        if current is None:
            current = max(keyring.keys, key=lambda k: (keyring.created.get(k, 0), k))
            await set_meta(conn, META_KEY, current)
    return current


@contextlib.contextmanager
def _rotation_lock(escrow_dir: Path) -> Iterator[None]:
    """One rotation at a time per data directory (an advisory file lock)."""
    fd = os.open(escrow_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Rotation:
    """What `rotate_master_key` did: the new key id, the ids retired, and how
    many stored parts it re-encrypted."""

    key_id: str
    retired: tuple[str, ...]
    reencrypted: int


async def rotate_master_key(escrow_dir: Path, passphrase: bytes, *, now: datetime) -> Rotation:
    """Create a new master key, re-encrypt every stored part under it in one
    transaction, make it current, and retire the keys no part uses any more."""
    paths = EscrowPaths(escrow_dir)
    paths.require_initialised()
    with _rotation_lock(escrow_dir):
        keyring = ensure_keyring(escrow_dir, passphrase, now=now)
        conn = await open_db(paths.db)
        try:
            await adopt_keyring(conn, keyring)
            key_id, key = new_key()
            keyring = keyring.with_key(key_id, key, int(now.timestamp()))
            # First the file, so that a worker meeting the new id can load it.
            write_keyring(escrow_dir, keyring, passphrase, overwrite=True)
            count = 0
            async with transaction(conn):
                rows = await conn.execute_fetchall(
                    "SELECT consignment_id, part_key_id, part FROM deposits"
                )
                for consignment_id, old_id, blob in rows:
                    cid = str(consignment_id)
                    part = keyring.decrypt(str(old_id), cid, bytes(blob))
                    await conn.execute(
                        "UPDATE deposits SET part_key_id = ?, part = ? WHERE consignment_id = ?",
                        (key_id, keyring.encrypt(key_id, cid, part), cid),
                    )
                    count += 1
                await set_meta(conn, META_KEY, key_id)
        finally:
            await conn.close()
        # Every part is under the new key and every worker now encrypts with it
        # (it reads the current id inside its own transaction): drop the rest.
        retired = tuple(sorted(k for k in keyring.keys if k != key_id))
        write_keyring(escrow_dir, keyring.only(key_id), passphrase, overwrite=True)
    return Rotation(key_id, retired, count)


class Vault:
    """A worker's view of the master keys: encrypts new parts under the key the
    database names as current, decrypts stored ones, and reloads the keyring
    file when it meets a key id it does not hold (after a rotation)."""

    def __init__(self, escrow_dir: Path, passphrase: bytes, keyring: MasterKeyring) -> None:
        self._dir = escrow_dir
        self._passphrase = passphrase
        self._keyring = keyring

    def __repr__(self) -> str:
        return f"<Vault {self._dir} keys={sorted(self._keyring.keys)}>"

    async def reload(self) -> None:
        self._keyring = await asyncio.to_thread(read_keyring, self._dir, self._passphrase)

    async def _holding(self, key_id: str) -> MasterKeyring:
        if key_id not in self._keyring:
            await self.reload()
        return self._keyring

    async def encrypt(
        self, conn: aiosqlite.Connection, consignment_id: str, part: bytes
    ) -> tuple[str, bytes]:
        """Encrypt under the current key; call inside the transaction that stores it."""
        key_id = await current_key_id(conn)
        if key_id is None:
            raise EscrowError("the escrow database names no master key", _RESTORE)
        keyring = await self._holding(key_id)
        return key_id, keyring.encrypt(key_id, consignment_id, part)

    async def decrypt(self, key_id: str, consignment_id: str, blob: bytes) -> bytes:
        keyring = await self._holding(key_id)
        return keyring.decrypt(key_id, consignment_id, blob)

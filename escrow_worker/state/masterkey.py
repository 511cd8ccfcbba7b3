"""The escrow's master keys: what deposited key parts are encrypted under at rest.

The keyring `master.keys` (in the escrow's keystore, `state.location`: the
escrow directory, or the store on PostgreSQL) holds one or more 32-byte keys,
each with a key id, sealed under the escrow passphrase (the sealed-file format of
`broker.pki.sealed`, kind "escrow-master-keyring", the same scrypt cost as the
escrow's other key files). Which key encrypts new parts is recorded in the
database (`escrow_meta.master_key_id`), so that it changes in the same
transaction as the re-encrypted parts.

An escrow part is AES-256-GCM(key, random 96-bit nonce, part, associated data =
"consignment/v1 escrow part" || 0x00 || consignment id || 0x00 || key id),
stored as nonce || ciphertext with the key id beside it: a part moved to another
consignment, or relabelled with another key id, does not decrypt.

Rotation (`rotate_master_key`, one at a time per escrow): add a new key to the
keyring; in one transaction re-encrypt every part under it and make it current
(a deposit reads the current id with a share lock, so none encrypts under the
old key after that commit); then drop the keys no part uses any more. A store job
that meets a key id the worker's keyring lacks raises `KeyringStale`; the
service reloads the keyring (outside any transaction: unsealing is an scrypt)
and runs the job again. This module must never write a master key anywhere but
the sealed keyring, nor put one (or a part) in a message or a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.canonical import b64, canonical_json, parse_canonical_json, unb64
from broker.errors import BrokerError, IdentityFileError
from broker.pki import sealed as _sealed
from escrow_worker.errors import EscrowError
from escrow_worker.state.base import LogItem, Store, Tx
from escrow_worker.state.location import Keystore
from escrow_worker.state.meta import get_meta, set_meta

__all__ = [
    "KeyringStale",
    "MasterKeyring",
    "Rotation",
    "UnknownMasterKey",
    "Vault",
    "adopt_keyring",
    "ensure_keyring",
    "read_keyring",
    "rotate_master_key",
]

KEYRING = "master.keys"
KIND = "escrow-master-keyring"
META_KEY = "master_key_id"
_AAD_LABEL = b"consignment/v1 escrow part\x00"
_NONCE = 12
_RESTORE = "restore the keyring (master.keys) and the database from the same backup"


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


class KeyringStale(EscrowError):
    """A job met a key id the worker's keyring does not hold yet: reload it
    (`Vault.reload`) and run the job again."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"master key {key_id!r} is not loaded yet", "reload the keyring")
        self.key_id = key_id


def new_key() -> tuple[str, bytes]:
    """A fresh master key and its (random, public) id."""
    return secrets.token_hex(8), os.urandom(32)


def _dump(keyring: MasterKeyring) -> bytes:
    entries = [
        {"created_at": keyring.created.get(key_id, 0), "id": key_id, "key": b64(key)}
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


async def read_keyring(keystore: Keystore, passphrase: bytes) -> MasterKeyring:
    """Unseal the keyring (slow: scrypt, in a thread). Raises IdentityFileError on
    a wrong passphrase, EscrowError if there is none."""
    data = await keystore.require(KEYRING)
    return _load(await asyncio.to_thread(_sealed.unseal, data, passphrase, kind=KIND))


async def _log_n(keystore: Keystore) -> int:
    """The scrypt cost of the escrow's other sealed keys, for the keyring too."""
    try:
        header = json.loads(await keystore.require("signing.key"))
        log_n = header["kdf"]["log_n"]
    except (KeyError, TypeError, ValueError, EscrowError):
        return _sealed.DEFAULT_LOG_N
    if isinstance(log_n, int) and _sealed.MIN_LOG_N <= log_n <= _sealed.MAX_LOG_N:
        return log_n
    return _sealed.DEFAULT_LOG_N


async def write_keyring(
    keystore: Keystore, keyring: MasterKeyring, passphrase: bytes, *, overwrite: bool
) -> None:
    log_n = await _log_n(keystore)
    sealed = await asyncio.to_thread(
        _sealed.seal, _dump(keyring), passphrase, kind=KIND, log_n=log_n
    )
    await keystore.write(KEYRING, sealed, overwrite=overwrite)


async def ensure_keyring(keystore: Keystore, passphrase: bytes, *, now: datetime) -> MasterKeyring:
    """Read the keyring, creating it with one key if the escrow has none yet.

    Two workers starting at once may both try; it is created atomically (never
    replaced), so the loser reads the winner's."""
    if await keystore.read(KEYRING) is None:
        key_id, key = new_key()
        first = MasterKeyring({key_id: key}, {key_id: int(now.timestamp())})
        with contextlib.suppress(EscrowError):
            await write_keyring(keystore, first, passphrase, overwrite=False)
    return await read_keyring(keystore, passphrase)


async def current_key_id(tx: Tx) -> str | None:
    """The key new parts are encrypted under, share-locked until the transaction
    ends (a rotation waits for it, and it for a rotation)."""
    value = await tx.fetchval(
        "SELECT value FROM escrow_meta WHERE key = ?" + tx.for_share,  # noqa: S608
        (META_KEY,),
    )
    return None if value is None else str(value)


async def adopt_keyring(store: Store, keyring: MasterKeyring) -> str:
    """Make sure the database names a current key the keyring holds; return it.

    An escrow opened for the first time takes the keyring's (only) key."""

    async def job(tx: Tx) -> str:
        current = await get_meta(tx, META_KEY)
        if current is None:
            current = max(keyring.keys, key=lambda k: (keyring.created.get(k, 0), k))
            await set_meta(tx, META_KEY, current)
        return current

    return await store.run(job)


@dataclass(frozen=True)
class Rotation:
    """What `rotate_master_key` did: the new key id, the ids retired, and how
    many stored parts it re-encrypted."""

    key_id: str
    retired: tuple[str, ...]
    reencrypted: int


async def rotate_master_key(
    store: Store, keystore: Keystore, passphrase: bytes, *, now: datetime
) -> Rotation:
    """Create a new master key, re-encrypt every stored part under it in one
    transaction, make it current, and retire the keys no part uses any more."""
    async with store.exclusive("master-key-rotation"):
        keyring = await ensure_keyring(keystore, passphrase, now=now)
        await adopt_keyring(store, keyring)
        key_id, key = new_key()
        keyring = keyring.with_key(key_id, key, int(now.timestamp()))
        # First the keyring, so that a worker meeting the new id can load it.
        await write_keyring(keystore, keyring, passphrase, overwrite=True)

        async def reencrypt(tx: Tx) -> int:
            await tx.fetchval(
                "SELECT value FROM escrow_meta WHERE key = ?" + tx.for_update,  # noqa: S608
                (META_KEY,),
            )
            count = 0
            rows = await tx.fetchall("SELECT consignment_id, part_key_id, part FROM deposits")
            for consignment_id, old_id, blob in rows:
                cid = str(consignment_id)
                part = keyring.decrypt(str(old_id), cid, bytes(blob))
                await tx.execute(
                    "UPDATE deposits SET part_key_id = ?, part = ? WHERE consignment_id = ?",
                    (key_id, keyring.encrypt(key_id, cid, part), cid),
                )
                count += 1
            await set_meta(tx, META_KEY, key_id)
            data = {"key_id": key_id, "reencrypted": count}
            tx.log(LogItem("master-key", data, int(now.timestamp())))
            return count

        count = await store.run(reencrypt)
        # Every part is under the new key and every worker now encrypts with it
        # (it reads the current id inside its own transaction): drop the rest.
        retired = tuple(sorted(k for k in keyring.keys if k != key_id))
        await write_keyring(keystore, keyring.only(key_id), passphrase, overwrite=True)
    return Rotation(key_id, retired, count)


class Vault:
    """A worker's view of the master keys: encrypts new parts under the key the
    database names as current and decrypts stored ones, inside store jobs (no
    I/O there); `reload` fetches the keyring again after a `KeyringStale`."""

    def __init__(self, keystore: Keystore, passphrase: bytes, keyring: MasterKeyring) -> None:
        self._keystore = keystore
        self._passphrase = passphrase
        self._keyring = keyring

    def __repr__(self) -> str:
        return f"<Vault {self._keystore.where} keys={sorted(self._keyring.keys)}>"

    async def reload(self) -> None:
        self._keyring = await read_keyring(self._keystore, self._passphrase)

    def _holding(self, key_id: str) -> MasterKeyring:
        if key_id not in self._keyring:
            raise KeyringStale(key_id)
        return self._keyring

    async def encrypt(self, tx: Tx, consignment_id: str, part: bytes) -> tuple[str, bytes]:
        """Encrypt under the current key; call inside the job that stores it."""
        key_id = await current_key_id(tx)
        if key_id is None:
            raise EscrowError("the escrow database names no master key", _RESTORE)
        return key_id, self._holding(key_id).encrypt(key_id, consignment_id, part)

    def decrypt(self, key_id: str, consignment_id: str, blob: bytes) -> bytes:
        return self._holding(key_id).decrypt(key_id, consignment_id, blob)

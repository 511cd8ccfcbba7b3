"""The directory as of its version: what a request reads of the directory
(certificates, users and groups, the CRL, the trust policy) without reading
it again while nothing in it changed.

Every write to the directory (`ca.directory`, `ca.policy`) calls
`directory_changed(tx)` in its own transaction, which gives the directory a
new random version (`escrow_meta` key ``directory_version``). A transaction
reads the version once (one indexed read) and takes what it needs from the
store-wide cache filled at that version (`Tx.cache`), loading what is not there
yet. So every check still sees the directory as committed at the moment of its
transaction (a revocation, a new CRL or a rule takes effect at the next
request, on every worker of every host), and the directory is read from the
database only after a change.

A version is random, never a counter: one written by a transaction that was
rolled back never comes back. A transaction that changed the directory reads
it directly until it ends (what it wrote is not committed yet). This module
must never cache anything but the directory, nor be bypassed by a writer:
`tests/escrow_worker/test_directory_cache.py` checks that every write to the
directory's tables is in a function that calls `directory_changed`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Final, TypeVar

from escrow_worker.state.base import Tx

__all__ = ["DIRECTORY_TABLES", "cached", "directory_changed"]

T = TypeVar("T")

#: What the version covers: the tables, and the `escrow_meta` keys, of the directory.
DIRECTORY_TABLES: Final = ("users", "user_groups", "certificates", "crl", "policy_rules")
_VERSION: Final = "directory_version"
_MEMO: Final = "directory"
_KEEP: Final = 4096  # entries per version; past that the cache starts again


class _AtVersion:
    __slots__ = ("values", "version")

    def __init__(self, version: str) -> None:
        self.version = version
        self.values: dict[Hashable, Any] = {}


#: In `Tx.memo`: this transaction changed the directory; read it directly.
_CHANGED: Final = _AtVersion("")


async def directory_changed(tx: Tx) -> None:
    """Give the directory a new version, in `tx` (so only if `tx` commits)."""
    await tx.execute(
        "INSERT INTO escrow_meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (_VERSION, os.urandom(16).hex()),
    )
    tx.memo[_MEMO] = _CHANGED


async def _current(tx: Tx) -> _AtVersion:
    at = tx.memo.get(_MEMO)
    if at is None:
        rows = await tx.fetchall("SELECT value FROM escrow_meta WHERE key = ?", (_VERSION,))
        version = str(rows[0][0]) if rows else "none"
        at = tx.cache.get(_MEMO)
        if at is None or at.version != version:
            at = _AtVersion(version)
            tx.cache[_MEMO] = at
        tx.memo[_MEMO] = at
    assert isinstance(at, _AtVersion)
    return at


async def cached(tx: Tx, key: Hashable, load: Callable[[Tx], Awaitable[T]]) -> T:
    """`await load(tx)`, or what it gave at the directory's current version.
    What `load` returns must not be changed by anyone (frozen records)."""
    at = await _current(tx)
    if at is _CHANGED:
        return await load(tx)
    try:
        return at.values[key]  # type: ignore[no-any-return]
    except KeyError:
        pass
    value = await load(tx)
    if len(at.values) >= _KEEP:
        at.values.clear()
    at.values[key] = value
    return value

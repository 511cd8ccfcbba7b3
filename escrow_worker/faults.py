"""Fault injection for the reliability tests (docs/reliability.md): with
``CONSIGN_TEST_KILL_AT=<point>[:<n>]`` in its environment, a worker process
kills itself with SIGKILL (no clean-up, no flush: as `kill -9` would) the
`n`-th time (default 1) one of its requests reaches `point`:

- ``received``: a delivery is in hand, nothing of it done;
- ``decided``: the request's decision and signed reply are written inside the
  store transaction, which is not committed yet;
- ``committed``: the transaction is committed, the reply not yet published;
- ``replied``: the reply and events are published and confirmed, the delivery
  not yet acked.

Only the reliability tests and `bench/reliability.py` set it; unset, `reach`
is one comparison. Whoever can set a worker's environment can kill the worker
anyway, so the variable gives nobody anything new. This module must never do
anything but count and kill.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Final

from escrow_worker.errors import EscrowError

__all__ = ["KILL_AT_ENV", "POINTS", "check", "reach"]

KILL_AT_ENV: Final = "CONSIGN_TEST_KILL_AT"
POINTS: Final = ("received", "decided", "committed", "replied")

_lock = threading.Lock()  # `decided` is reached on the SQLite store's thread
_reached = 0


def _target() -> tuple[str, int] | None:
    value = os.environ.get(KILL_AT_ENV)
    if not value:
        return None
    point, _, count = value.partition(":")
    if point not in POINTS or not (count == "" or (count.isdigit() and int(count) >= 1)):
        raise EscrowError(
            f"{KILL_AT_ENV}={value!r} names no fault point",
            f"use one of {', '.join(POINTS)}, optionally with :N (the N-th time), or unset it",
        )
    return point, int(count or 1)


#: Read by `check()`, which every `EscrowWorker` calls when it is made.
_TARGET: tuple[str, int] | None = None


def check() -> None:
    """Read the variable; raise `EscrowError` if it names no point (a worker
    refuses to start rather than ignore it)."""
    global _TARGET
    _TARGET = _target()


def reach(point: str) -> None:
    """A request reached `point`: kill this process if the variable says so."""
    global _reached
    if _TARGET is None or _TARGET[0] != point:
        return
    with _lock:
        _reached += 1
        if _reached >= _TARGET[1]:
            os.kill(os.getpid(), signal.SIGKILL)

"""How a `consign` command ends on SIGINT (Ctrl-C) or SIGTERM: within a second,
with exit code 128 + the signal (130, 143), one line on stderr, and nothing
half-written.

Three phases, three handlers:

- while the command's modules load (`on_startup`), nothing has been written yet:
  the process says so and ends at once;
- outside the event loop (`raising`), the signal raises `Signalled`, a
  `BaseException` like `KeyboardInterrupt`, so no `except Exception` swallows it;
- inside `run`, the signal cancels the command's task, so every `async with`
  unwinds (transactions roll back, temporary files are removed). A watchdog
  thread ends the process after `GRACE` seconds if it has not ended by then,
  and a second signal ends it at once: everything the agents keep is written
  atomically (SQLite transactions, files renamed into place), so nothing
  half-written is left under its name either way.

Standard library only, and only its lightest modules at import (asyncio and
threading are imported by `run`): it must load before anything else. It must never catch
an error it does not raise.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    pass

T = TypeVar("T")

#: Seconds a command has, after SIGINT or SIGTERM, to unwind before it is ended.
GRACE: Final = 0.8
SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

#: What `run` calls before it ends the process itself: reports the interrupt.
Reporter = Callable[[int], None]


class Signalled(BaseException):
    """SIGINT or SIGTERM arrived while no event loop ran."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def message(signum: int) -> str:
    return f"interrupted by {signal.Signals(signum).name}; nothing was left half-written"


def on_startup() -> None:
    """Until `raising()`: a signal ends the process at once, with its line (and,
    with --json, its JSON object). Only for the `consign` program itself."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if "--json" in sys.argv:
            error = {"code": "interrupted", "kind": "interrupted", "message": message(signum)}
            error["hint"] = "run the command again"
            os.write(1, (json.dumps({"error": error}, indent=2, sort_keys=True) + "\n").encode())
        os.write(2, f"error: {message(signum)}\n".encode())
        os._exit(128 + signum)

    for sig in SIGNALS:
        signal.signal(sig, handler)


#: One token per command (`raising` puts it back): whoever takes it with
#: `first_report` (the command unwinding, or the watchdog ending a command that
#: did not unwind in time, both through the reporter) reports the interrupt, so
#: its line is printed once. `list.pop` is atomic, so the two threads cannot
#: both take it.
_REPORT_TOKEN: list[bool] = [True]


def first_report() -> bool:
    """True for the first caller since the command started, False after."""
    try:
        return _REPORT_TOKEN.pop()
    except IndexError:
        return False


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Signalled(signum)


def raising() -> dict[int, Any]:
    """Make SIGINT and SIGTERM raise `Signalled`; returns the handlers replaced."""
    before: dict[int, Any] = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _REPORT_TOKEN[:] = [True]
    for sig in SIGNALS:
        signal.signal(sig, _raise)
    return before


def finished() -> None:
    """The command's work is done and reported: SIGINT and SIGTERM are ignored
    while the process exits, so a signal in that moment neither turns a success
    into an interrupt nor kills the interpreter as it shuts down (CPython leaves
    an ignored signal ignored through its finalisation). Only for the `consign`
    program itself."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def restore(before: dict[int, Any]) -> None:
    for sig, handler in before.items():
        signal.signal(sig, handler)


async def _guarded(coro: Coroutine[Any, Any, T], report: Reporter) -> T:
    import asyncio
    import threading

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def end_now(signum: int) -> None:
        report(signum)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)

    def handler(signum: int, _frame: FrameType | None) -> None:
        # A Python-level handler runs between bytecodes even while the loop is
        # busy; the watchdog is a thread, so a blocked loop cannot delay it.
        if received:
            end_now(received[0])  # a second signal: now
        received.append(signum)
        loop.call_soon_threadsafe(task.cancel)
        watchdog = threading.Timer(GRACE, end_now, (signum,))
        watchdog.daemon = True
        watchdog.start()

    for sig in SIGNALS:
        signal.signal(sig, handler)
    try:
        return await coro
    except asyncio.CancelledError:
        if received:
            raise Signalled(received[0]) from None
        raise
    finally:
        for sig in SIGNALS:
            signal.signal(sig, _raise)


def run(coro: Coroutine[Any, Any, T], report: Reporter) -> T:
    """Run a command's coroutine; SIGINT or SIGTERM cancels it and raises
    `Signalled` (see the module's docstring)."""
    import asyncio

    return asyncio.run(_guarded(coro, report))

"""Running a synchronous function of the format (seal, unseal) in a worker
thread so an event loop keeps running, and stopping it when its caller is
cancelled: a thread cannot be cancelled, so it stops at its next progress step
and unwinds (removing its temporary file or staging directory) before the
cancellation goes on. This module must never leave a thread running past a
cancellation it was told of.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _Stopped(BaseException):
    """Raised in the worker thread at the next chunk once the caller is cancelled."""


def in_thread(fn: Callable[_P, _R]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    @functools.wraps(fn)
    async def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        # A thread cannot be cancelled: when the caller is, the thread stops at
        # its next progress step and unwinds (removing its temporary file or
        # staging directory) before the cancellation goes on.
        stop = threading.Event()
        given = kwargs.get("progress")

        def progress(done: int, total: int) -> None:
            if stop.is_set():
                raise _Stopped
            if callable(given):
                given(done, total)

        kwargs["progress"] = progress
        work = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(BaseException):
                await work
            raise

    run.__doc__ = f"{fn.__name__}() in a worker thread, so an event loop keeps running."
    return run

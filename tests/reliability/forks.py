"""Worker processes for thousands of kills: a fork server that imports the
worker's code once and forks a `consign escrow worker` per kill, so a kill
cycle does not pay for a Python start and its imports (`bench/reliability.py
kill`; `WorkerForks` is its side).

    python -m tests.reliability.forks   (from the repository root)

reads lines ``<kill point or -> <prefetch>`` on stdin; for each it forks a
worker (stdin, stdout and stderr on /dev/null; `CONSIGN_TEST_KILL_AT` set to
the point, or unset for ``-``), writes ``started <pid>``, waits for it and
writes ``ended <pid> <exit code>`` (negative: the signal). One worker at a
time. The server itself never opens a connection or starts a thread: a fork
copies nothing but imported code. It ends at the end of its input.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from escrow_worker.faults import KILL_AT_ENV

__all__ = ["WorkerForks"]

ROOT = Path(__file__).resolve().parents[2]


class WorkerForks:
    """The bench's side: a fork server started with `env` (the worker's)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.pid: int | None = None  # the worker running now

    @classmethod
    @contextlib.asynccontextmanager
    async def started(cls, env: dict[str, str]) -> AsyncIterator[WorkerForks]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.reliability.forks",
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        forks = cls(proc)
        try:
            yield forks
        finally:
            if forks.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(forks.pid, signal.SIGKILL)
            assert proc.stdin is not None
            proc.stdin.close()
            await proc.wait()

    async def _line(self) -> list[str]:
        assert self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        if not line:
            raise AssertionError("the fork server ended")
        return line.decode().split()

    async def start(self, kill_at: str | None, prefetch: int) -> int:
        """Fork a worker; its pid."""
        assert self.pid is None, "one worker at a time"
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{kill_at or '-'} {prefetch}\n".encode())
        await self._proc.stdin.drain()
        word, pid = await self._line()
        assert word == "started", word
        self.pid = int(pid)
        return self.pid

    async def ended(self, wait: float = 60.0) -> int:
        """Wait for the worker to end; its exit code (negative: the signal)."""
        assert self.pid is not None
        try:
            async with asyncio.timeout(wait):
                word, pid, code = await self._line()
        except TimeoutError:
            os.kill(self.pid, signal.SIGKILL)
            await self._line()
            self.pid = None
            raise AssertionError(f"the worker did not reach its fault point in {wait} s") from None
        assert (word, int(pid)) == ("ended", self.pid)
        self.pid = None
        return int(code)

    async def stop(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            await self.ended()


def _child(kill_at: str, prefetch: str) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if kill_at == "-":
        os.environ.pop(KILL_AT_ENV, None)
    else:
        os.environ[KILL_AT_ENV] = kill_at
    code = 1
    try:
        from client.cli import main

        main.main(
            ["escrow", "worker", "--prefetch", prefetch, "--log-level", "warning"],
            prog_name="consign",
        )
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os._exit(code)


def serve() -> None:
    # Everything a worker imports, imported once here (no connection, no thread).
    import aio_pika  # noqa: F401
    import aiosqlite  # noqa: F401
    import asyncpg  # noqa: F401

    import broker.transport.amqp  # noqa: F401
    import client.cli  # noqa: F401
    import escrow_worker.cli.worker
    import escrow_worker.state.postgres
    import escrow_worker.state.sqlite  # noqa: F401

    for line in sys.stdin:
        kill_at, prefetch = line.split()
        pid = os.fork()
        if pid == 0:
            _child(kill_at, prefetch)
        print(f"started {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"ended {pid} {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    serve()

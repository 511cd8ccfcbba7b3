"""What the reliability tests and `bench/reliability.py` share: a TCP proxy the
test controls (cut, refuse, slow) to put between a worker or an agent and
RabbitMQ or PostgreSQL, escrow worker processes started with a fault point
(`escrow_worker.faults`), and the counts the pass criteria are checked on.

The real servers are never stopped or restarted: a fault between a program and a
server is made in the proxy, which only this process owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aio_pika
from yarl import URL

from escrow_worker.faults import KILL_AT_ENV
from escrow_worker.state.base import Tx
from tests.escrow_worker.helpers import CONSIGN, EscrowSetup

__all__ = [
    "TcpProxy",
    "escrow_counts",
    "fill_database",
    "queue_depth",
    "start_worker",
    "stop_worker",
    "wait_killed",
]


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.server):
            writer.transport.abort()  # a reset, not a polite close
        for task in self.tasks:
            task.cancel()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `host:port`. `cut()` resets every
    connection through it; `refusing` resets new ones as they come; `delay`
    adds that many seconds of latency to every chunk in each direction, and
    `bandwidth` (bytes per second, each way; 0: unlimited) caps the rate: a
    slow link. Both may change while connections are open."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self.refusing = False
        self.delay = 0.0
        self.bandwidth = 0
        #: Connections accepted and forwarded, and connections reset by `cut()`.
        self.accepted = 0
        self.cut_links = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def to(cls, url: str) -> AsyncIterator[TcpProxy]:
        """A started proxy to the server of `url` (amqp:// or postgresql://)."""
        parsed = URL(url)
        default = 5432 if parsed.scheme.startswith("postgres") else 5672
        proxy = cls(parsed.host or "127.0.0.1", parsed.port or default)
        await proxy.start()
        try:
            yield proxy
        finally:
            await proxy.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, url: str) -> str:
        """`url` with its host and port replaced by this proxy's."""
        return str(URL(url).with_host("127.0.0.1").with_port(self.port))

    @property
    def open_links(self) -> int:
        return len(self._links)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self) -> int:
        """Reset every connection through the proxy now; return how many."""
        links, self._links = self._links, set()
        for link in links:
            link.abort()
        self.cut_links += len(links)
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Read one direction; each chunk is written `delay` seconds after it was
        read, in order (latency, not a stall: chunks in flight overlap); with
        `bandwidth`, reading waits as long as the chunk takes to cross."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        link.tasks.append(asyncio.create_task(self._deliver(queue, writer, link)))
        try:
            while data := await reader.read(self._chunk()):
                queue.put_nowait((loop.time() + self.delay, data))
                if self.bandwidth:
                    await asyncio.sleep(len(data) / self.bandwidth)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            queue.put_nowait(None)  # what was read is still delivered, then the end

    def _chunk(self) -> int:
        # A slow link carries small pieces, so a large message trickles through.
        return min(65536, max(512, self.bandwidth // 20)) if self.bandwidth else 65536

    async def _deliver(
        self,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        writer: asyncio.StreamWriter,
        link: _Link,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (item := await queue.get()) is not None:
                at, data = item
                if at > loop.time():
                    await asyncio.sleep(at - loop.time())
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            if link in self._links:  # one side ended: end the other
                self._links.discard(link)
                link.abort()


# -- worker processes -------------------------------------------------------------


async def start_worker(
    env: dict[str, str], *, kill_at: str | None = None, prefetch: int = 4
) -> asyncio.subprocess.Process:
    """`consign escrow worker` in a process of its own, killing itself at
    `kill_at` (``point[:n]``, see `escrow_worker.faults`) if given."""
    env = dict(env)
    env.pop(KILL_AT_ENV, None)
    if kill_at is not None:
        env[KILL_AT_ENV] = kill_at
    return await asyncio.create_subprocess_exec(
        CONSIGN,
        "escrow",
        "worker",
        "--prefetch",
        str(prefetch),
        "--log-level",
        "warning",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def wait_killed(proc: asyncio.subprocess.Process, wait: float = 60.0) -> None:
    """Wait for a worker to kill itself at its fault point (SIGKILL)."""
    try:
        async with asyncio.timeout(wait):
            code = await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"the worker did not reach its fault point in {wait} s") from None
    assert code == -signal.SIGKILL, f"the worker ended with {code}, not by its SIGKILL"


async def stop_worker(proc: asyncio.subprocess.Process | None) -> None:
    if proc is not None and proc.returncode is None:
        proc.kill()
        await proc.wait()


# -- what the pass criteria count ----------------------------------------------------


async def escrow_counts(setup: EscrowSetup) -> dict[str, int]:
    """Rows that count: deposits, releases (rows, and the receivers' counters),
    stored requests, unsent outbox messages."""

    async def job(tx: Tx) -> dict[str, int]:
        async def one(sql: str) -> int:
            return int(await tx.fetchval(sql) or 0)

        return {
            "deposits": await one("SELECT COUNT(*) FROM deposits"),
            "releases": await one("SELECT COUNT(*) FROM releases"),
            "released": await one("SELECT SUM(releases) FROM deposit_receivers"),
            "requests": await one("SELECT COUNT(*) FROM requests"),
            "unsent": await one("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL"),
        }

    return await setup.run(job)


async def queue_depth(amqp_url: str, queue: str) -> int:
    """How many ready messages `queue` holds now (0 if it does not exist)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return 0
        count = declared.declaration_result.message_count
        return int(count or 0)


def fill_database(conn: sqlite3.Connection) -> None:
    """No page more, and the pages there are filled: what a full disk does to
    a database (SQLITE_FULL on the next write that needs room)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {int(pages)}")
    n, prefix = 0, f"filler-{os.urandom(4).hex()}"
    full: sqlite3.OperationalError | None = None
    for size in (1000, 100, 10, 1):
        while True:
            try:
                conn.execute(
                    "INSERT INTO escrow_meta (key, value) VALUES (?, ?)",
                    (f"{prefix}-{n}", "x" * size),
                )
            except sqlite3.OperationalError as exc:
                full = exc
                break
            n += 1
        assert full is not None
        assert full.sqlite_errorcode == sqlite3.SQLITE_FULL

"""The long versions of the reliability tests (docs/reliability.md): faults and
bad input, repeated, counted, and printed as the table of that document.

    python bench/reliability.py [SCENARIO ...] [--store sqlite|postgresql|both]
        [--kills 10] [--rounds 5] [--cuts 10] [--requests 200] [--hostile 10000]
        [--consignments 10000] [--seed N] [--amqp-url URL] [--pg-url URL]

(from the repository root: it reuses the test helpers). Scenarios, all by
default: kill, agent-kill, cut, outage, slow, pg-cut, sqlite-outage, duplicates, bad-input,
corrupt. Each runs on a queue prefix and an escrow of its own (a temporary
directory, or a database of its own on `--pg-url`, dropped afterwards), and
never stops or restarts RabbitMQ or PostgreSQL: connection faults go through a
TCP proxy this process owns.

Each row: the fault, how many times it was tried, the requests (and how many a
worker had in flight), what was lost (a request never answered, or a deposit
not kept), what was duplicated (a second release for one request, or two
different replies to one request), dead letters nobody expected, and the
command that reproduces the row. Exit status 1 if any row is not zero-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import io
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker import ESCROW, Message, Transport
from broker.errors import BrokerError
from client.consignment import unseal
from client.errors import OpenError
from client.format.header import CHUNK_SIZE
from escrow_worker.faults import POINTS
from escrow_worker.state.location import Location
from tests.client.consign_helpers import ALICE, RECEIVERS, seal_bytes
from tests.escrow_worker.helpers import (
    EscrowSetup,
    deposit_body,
    environment,
    key_request_body,
    make_escrow,
    request,
    request_id_of,
    running_worker,
    seal_for,
    verify,
)
from tests.reliability.agents import Tally, agent_world, batch_round, single_round
from tests.reliability.campaign import run_campaign
from tests.reliability.forks import WorkerForks
from tests.reliability.helpers import (
    TcpProxy,
    escrow_counts,
    fill_database,
    queue_depth,
)
from tests.support import (
    DEFAULT_AMQP_URL,
    DEFAULT_PG_URL,
    TransportFactory,
    temporary_database,
)

DELIVERY_LIMIT = 20
#: The longest a request may live (DEFAULT_MAX_LIFETIME is 15 minutes): kills
#: on a busy machine take minutes, and a request must not turn stale meanwhile.
LONGEST = timedelta(minutes=14)


@dataclass
class Row:
    fault: str
    store: str
    tried: int
    requests: int
    in_flight: int
    lost: int
    duplicated: int
    dead: int
    seconds: float
    command: str
    note: str = ""
    #: Any other pass criterion broken (a wrong or revealing error, output left behind).
    wrong: int = 0

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicated == self.dead == self.wrong == 0

    def markdown(self) -> str:
        return (
            f"| {self.fault} | {self.store} | {self.tried:,} | {self.requests:,} | "
            f"{self.in_flight} | {self.lost} | {self.duplicated} | {self.dead} | {self.wrong} | "
            f"{self.seconds:.0f} | `{self.command}` |"
        )


HEADER = (
    "| fault or bad input | store | tried | requests | in flight | lost | duplicated "
    "| unexpected dead letters | other failures | seconds | reproduce |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
)


# -- a world per scenario ----------------------------------------------------------


@dataclass
class World:
    setup: EscrowSetup
    factory: TransportFactory
    amqp_url: str
    store: str
    delivery_limit: int = DELIVERY_LIMIT

    async def transport(self, url: str | None = None, **config: Any) -> Transport:
        return await self.factory(url=url, **({"delivery_limit": self.delivery_limit} | config))

    def env(self) -> dict[str, str]:
        env = environment(self.setup, self.factory, self.amqp_url)
        env["CONSIGN_DELIVERY_LIMIT"] = str(self.delivery_limit)
        return env


@contextlib.asynccontextmanager
async def world(
    args: argparse.Namespace,
    store: str,
    via: str | None = None,
    delivery_limit: int = DELIVERY_LIMIT,
) -> AsyncIterator[World]:
    """A fresh escrow on `store` (`via`: a PostgreSQL URL to reach it by instead)."""
    factory = TransportFactory("amqp", args.amqp_url)
    try:
        if store == "sqlite":
            with tempfile.TemporaryDirectory(prefix="consign-rel-") as tmp:
                setup = await make_escrow(Path(tmp) / "escrow", now=datetime.now(UTC))
                yield World(setup, factory, args.amqp_url, store, delivery_limit)
        else:
            async with temporary_database(args.pg_url) as url:
                where = Location(database=via(url) if callable(via) else url)
                setup = await make_escrow(where, now=datetime.now(UTC))
                yield World(setup, factory, args.amqp_url, store, delivery_limit)
    finally:
        await factory.cleanup()


async def deposited(w: World) -> Any:
    """One consignment by alice for bob, deposited through a worker of this process."""
    _, deposit = seal_for(w.setup["alice"], [w.setup["bob"]])
    inbox = await w.transport()
    await inbox.declare_inbox("alice")
    await inbox.declare_inbox("bob")
    async with (
        await w.setup.open_service() as service,
        running_worker(service, await w.transport()),
    ):
        data = request(
            w.setup["alice"], "deposit", deposit_body(w.setup, deposit), now=datetime.now(UTC)
        )
        await publish(inbox, [data])
        await answers(w, inbox, "alice", {request_id_of(data)})
    return deposit


def cmd(args: argparse.Namespace, scenario: str, store: str | None, *sizes: str) -> str:
    """The command that reproduces a row."""
    parts = ["python bench/reliability.py", scenario]
    if store:
        parts.append(f"--store {store}")
    for size in sizes:
        parts.append(f"--{size} {getattr(args, size)}")
    parts.append(f"--seed {args.seed}")
    return " ".join(parts)


def key_requests(
    w: World, deposit: Any, n: int, *, lifetime: timedelta = timedelta(minutes=5)
) -> list[bytes]:
    now = datetime.now(UTC)
    body = key_request_body(deposit)
    return [
        request(w.setup["bob"], "key-request", body, now=now, lifetime=lifetime) for _ in range(n)
    ]


async def publish(transport: Transport, datas: list[bytes], *, patient: bool = False) -> None:
    for data in datas:
        message = Message(body=data, message_id=request_id_of(data), type="request.v1")
        while True:
            try:
                await transport.publish(ESCROW, message)
                break
            except BrokerError:
                if not patient:
                    raise
                await asyncio.sleep(0.2)


async def answers(
    w: World, transport: Transport, name: str, ids: set[str], *, wait: float = 600.0
) -> dict[str, set[bytes]]:
    """Replies in `name`'s inbox to `ids` (bytes by request id), read until each
    came and nothing more for a second, or `wait` seconds."""
    found: dict[str, set[bytes]] = collections.defaultdict(set)
    queue = transport.config.inbox_queue(name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    quiet_since = loop.time()
    while loop.time() < deadline:
        try:
            delivery = await transport.get(queue, timeout=0.5)
        except BrokerError:
            await asyncio.sleep(0.5)
            continue
        if delivery is None:
            if ids <= set(found) and loop.time() - quiet_since > 1.0:
                break
            continue
        quiet_since = loop.time()
        await delivery.ack()
        received = verify(w.setup, delivery.body)
        rid = getattr(received.body, "in_reply_to", None)
        if rid is not None:
            found[rid].add(received.raw)
    return found


async def verdict(
    w: World,
    fault: str,
    tried: int,
    datas: list[bytes],
    found: dict[str, set[bytes]],
    *,
    in_flight: int,
    started: float,
    command: str,
    releases: int | None = None,
) -> Row:
    ids = {request_id_of(d) for d in datas}
    counts = await escrow_counts(w.setup)
    want = len(ids) if releases is None else releases
    lost = len(ids - set(found))
    duplicated = max(counts["releases"] - want, 0) + max(counts["released"] - want, 0)
    duplicated += sum(len(v) > 1 for v in found.values())
    # Every answer must be the release itself (not, say, a refusal as stale).
    wrong = 0
    for rid, raws in found.items():
        said = {(r.type, r.code) for r in (verify(w.setup, raw) for raw in raws)}
        if said != {("key-release", None)}:
            wrong += 1
            print(f"  {fault}: request {rid} answered {sorted(said, key=str)}", file=sys.stderr)
    if counts["releases"] != want or counts["released"] != want:
        print(f"  {fault}: {counts} for {want} requests", file=sys.stderr)
    dead = await queue_depth(w.amqp_url, f"{w.factory.prefix}.dead-letters")
    return Row(
        fault,
        w.store,
        tried,
        len(ids),
        in_flight,
        lost,
        duplicated,
        dead,
        time.monotonic() - started,
        command,
        wrong=wrong,
    )


# -- the scenarios -------------------------------------------------------------------


async def kill(args: argparse.Namespace, store: str) -> Row:
    """`--kills` rounds; each kills a worker process at every point in turn (at
    the 1st to 4th request reaching it), under one backlog; then a clean worker
    finishes it."""
    started = time.monotonic()
    rnd = random.Random(args.seed)
    # A worker killed while it holds a request counts one delivery of it; more
    # than the limit and the request is dead-lettered, as designed (and tested
    # in tests/broker/test_transport.py). Here the kills are the fault, not the limit: each
    # kill can count once against a request, so no request reaches the limit.
    limit = max(DELIVERY_LIMIT, len(POINTS) * args.kills + 1)
    async with world(args, store, delivery_limit=limit) as w:
        deposit = await deposited(w)
        per_round = len(POINTS) * 2  # about what a round's killed workers take
        inbox = await w.transport()
        killed = 0
        datas: list[bytes] = []
        # One Python start for every worker: each is forked from a server that
        # imported the worker's code once (tests/reliability/forks.py).
        async with WorkerForks.started(w.env()) as forks:
            cycles = time.monotonic()
            for _ in range(args.kills):
                # Signed just before their round: a request lives 5 minutes, and
                # a long run must not turn the last ones stale before they are served.
                batch = key_requests(w, deposit, per_round, lifetime=LONGEST)
                datas += batch
                await publish(inbox, batch)
                for point in POINTS:
                    await forks.start(f"{point}:{rnd.randint(1, 4)}", prefetch=4)
                    code = await forks.ended(wait=120)
                    assert code == -signal.SIGKILL, f"a worker ended with {code}, not its kill"
                    killed += 1
            per_kill = (time.monotonic() - cycles) / max(killed, 1)
            print(f"  {killed} kills, {per_kill:.2f} s per kill", file=sys.stderr)
            await forks.start(None, prefetch=16)
            found = await answers(w, inbox, "bob", {request_id_of(d) for d in datas})
            await forks.stop()
        return await verdict(
            w,
            "worker kill -9 at each point (received, decided, committed, replied)",
            killed,
            datas,
            found,
            in_flight=4,
            started=started,
            command=cmd(args, "kill", store, "kills"),
        )


async def agent_kill(args: argparse.Namespace, store: str) -> Row:
    """`--rounds` rounds; each kills alice's `batch seal --send` and bob's
    `batch open`, `send` and `open` once (`tests/reliability/agents.py`: where,
    at random among the probes), and runs each again."""
    started = time.monotonic()
    rnd = random.Random(args.seed)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="consign-rel-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            if store == "sqlite":
                location = Location(directory=Path(tmp) / "escrow")
            else:
                location = Location(
                    database=await stack.enter_async_context(temporary_database(args.pg_url))
                )
            world = await stack.enter_async_context(agent_world(Path(tmp), location, args.amqp_url))
            for i in range(args.rounds):
                await batch_round(world, tally, f"b{i}", rnd, n=4)
                await single_round(world, tally, f"s{i}", rnd)
            dead = await queue_depth(args.amqp_url, f"{world.prefix}.dead-letters")
    for line in tally.notes[:20]:
        print(f"  failure: {line}", file=sys.stderr)
    return Row(
        "sender/receiver agent (`consign`) kill -9 mid batch seal+send, batch open, send, open",
        store,
        tally.kills,
        args.rounds * 5,
        1,
        tally.lost,
        tally.duplicated,
        dead,
        time.monotonic() - started,
        cmd(args, "agent-kill", store, "rounds"),
        note=f"{tally.finished_first} command(s) ended before their kill; "
        f"{tally.reopened} consignment(s) placed by a killed open placed again by the next",
        wrong=tally.wrong,
    )


async def _cut_run(
    args: argparse.Namespace, store: str, *, everyone: bool, outage: float, name: str, cmd: str
) -> Row:
    started = time.monotonic()
    async with world(args, store) as w, TcpProxy.to(args.amqp_url) as proxy:
        deposit = await deposited(w)
        datas = key_requests(w, deposit, args.requests)
        through = proxy.url(args.amqp_url)
        inbox = await w.transport(through if everyone else None)
        publisher = await w.transport(through if everyone else None)
        service = await w.setup.open_service()
        async with service, running_worker(service, await w.transport(through), prefetch=8):
            sender = asyncio.create_task(publish(publisher, datas, patient=True))
            for _ in range(args.cuts):
                await asyncio.sleep(random.uniform(0.5, 2.0))
                proxy.refusing = outage > 0
                proxy.cut()
                await asyncio.sleep(outage)
                proxy.refusing = False
            await sender
            found = await answers(w, inbox, "bob", {request_id_of(d) for d in datas})
        return await verdict(
            w, name, args.cuts, datas, found, in_flight=8, started=started, command=cmd
        )


async def slow(args: argparse.Namespace, store: str) -> Row:
    """Every connection (worker, publisher, receiver) through a slow link whose
    latency and bandwidth change `--cuts` times under a burst of `--requests`."""
    started = time.monotonic()
    rnd = random.Random(args.seed)
    async with world(args, store) as w, TcpProxy.to(args.amqp_url) as proxy:
        deposit = await deposited(w)
        datas = key_requests(w, deposit, args.requests, lifetime=LONGEST)
        through = proxy.url(args.amqp_url)
        inbox = await w.transport(through)
        publisher = await w.transport(through)
        proxy.delay, proxy.bandwidth = 0.1, 256 << 10
        service = await w.setup.open_service()
        reader = asyncio.create_task(consumed(w, inbox, "bob", {request_id_of(d) for d in datas}))
        async with service, running_worker(service, await w.transport(through), prefetch=8):
            sender = asyncio.gather(*(publish(publisher, datas[i::8]) for i in range(8)))
            for _ in range(args.cuts):
                await asyncio.sleep(rnd.uniform(0.5, 2.0))
                proxy.delay = rnd.uniform(0.05, 0.2)
                proxy.bandwidth = rnd.choice([32 << 10, 128 << 10, 512 << 10])
            await sender
            found = await reader
        return await verdict(
            w,
            "slow link for every connection: 50-200 ms each way, 32-512 KiB/s, changing",
            args.cuts,
            datas,
            found,
            in_flight=8,
            started=started,
            command=cmd(args, "slow", store, "cuts", "requests"),
        )


async def consumed(
    w: World, transport: Transport, name: str, ids: set[str], *, wait: float = 900.0
) -> dict[str, set[bytes]]:
    """As `answers`, by a consumer (a slow link makes one `get` per reply slow)."""
    found: dict[str, set[bytes]] = collections.defaultdict(set)

    async def read() -> None:
        async with transport.consume(transport.config.inbox_queue(name), prefetch=64) as got:
            async for delivery in got:
                await delivery.ack()
                received = verify(w.setup, delivery.body)
                rid = getattr(received.body, "in_reply_to", None)
                if rid is not None:
                    found[rid].add(received.raw)

    task = asyncio.create_task(read())
    try:
        async with asyncio.timeout(wait):
            while not ids <= set(found):  # noqa: ASYNC110 (the consumer fills it)
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # copies that come late
    except TimeoutError:
        pass
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return found


async def cut(args: argparse.Namespace, store: str) -> Row:
    return await _cut_run(
        args,
        store,
        everyone=False,
        outage=0.0,
        name="worker-broker TCP connection reset mid-burst",
        cmd=cmd(args, "cut", store, "cuts", "requests"),
    )


async def outage(args: argparse.Namespace, store: str) -> Row:
    return await _cut_run(
        args,
        store,
        everyone=True,
        outage=2.0,
        name="broker outage as clients see it: every connection reset, new ones refused 2 s",
        cmd=cmd(args, "outage", store, "cuts", "requests"),
    )


async def pg_cut(args: argparse.Namespace, store: str) -> Row:
    started = time.monotonic()
    async with TcpProxy.to(args.pg_url) as proxy, world(args, "postgresql", via=proxy.url) as w:
        deposit = await deposited(w)
        datas = key_requests(w, deposit, args.requests)
        inbox = await w.transport()
        service = await w.setup.open_service()
        async with service, running_worker(service, await w.transport(), prefetch=8):
            sender = asyncio.create_task(publish(inbox, datas))
            for _ in range(args.cuts):
                await asyncio.sleep(random.uniform(0.5, 2.0))
                proxy.refusing = True
                proxy.cut()
                await asyncio.sleep(1.0)
                proxy.refusing = False
            await sender
            found = await answers(w, inbox, "bob", {request_id_of(d) for d in datas})
        return await verdict(
            w,
            "worker-PostgreSQL connections reset, new ones refused 1 s",
            args.cuts,
            datas,
            found,
            in_flight=8,
            started=started,
            command=cmd(args, "pg-cut", None, "cuts", "requests"),
        )


async def sqlite_outage(args: argparse.Namespace, store: str) -> Row:
    """Alternately: another process holds the write lock 6 s (past the busy
    timeout), the database is full 2 s (`max_page_count`), under a stream of
    key requests and deposits."""
    started = time.monotonic()
    async with world(args, "sqlite") as w:
        deposit = await deposited(w)
        datas = key_requests(w, deposit, args.requests)
        inbox = await w.transport()
        service = await w.setup.open_service()
        conn = service.store._conn  # type: ignore[attr-defined]
        path = w.setup.directory / "escrow.db"
        async with service, running_worker(service, await w.transport(), prefetch=8):
            sender = asyncio.create_task(publish(inbox, datas))
            for i in range(args.cuts):
                await asyncio.sleep(random.uniform(0.2, 1.0))
                if i % 2 == 0:
                    other = sqlite3.connect(path, isolation_level=None, timeout=30)
                    other.execute("BEGIN IMMEDIATE")
                    await asyncio.sleep(6)
                    other.execute("ROLLBACK")
                    other.close()
                else:
                    # The store's connection may take no page more (a pragma only:
                    # safe beside its thread); another fills the free space.
                    pages = conn.execute("PRAGMA page_count").fetchone()[0]
                    conn.execute(f"PRAGMA max_page_count = {int(pages)}")
                    await asyncio.to_thread(_fill_beside, path)
                    await asyncio.sleep(2)
                    conn.execute("PRAGMA max_page_count = 1073741823")
            await sender
            found = await answers(w, inbox, "bob", {request_id_of(d) for d in datas})
        return await verdict(
            w,
            "SQLite locked by another process 6 s / full 2 s (alternately)",
            args.cuts,
            datas,
            found,
            in_flight=8,
            started=started,
            command=cmd(args, "sqlite-outage", None, "cuts", "requests"),
        )


def _fill_beside(path: Path) -> None:
    filler = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        fill_database(filler)
    finally:
        filler.close()


async def duplicates(args: argparse.Namespace, store: str) -> Row:
    """Every request published three times, all shuffled, to two workers at once."""
    started = time.monotonic()
    rnd = random.Random(args.seed)
    async with world(args, store) as w:
        deposit = await deposited(w)
        datas = key_requests(w, deposit, args.requests)
        copies = datas * 3
        rnd.shuffle(copies)
        inbox = await w.transport()
        one, two = await w.setup.open_service(), await w.setup.open_service()
        async with (
            one,
            two,
            running_worker(one, await w.transport(), prefetch=16),
            running_worker(two, await w.transport(), prefetch=16),
        ):
            await asyncio.gather(*(publish(inbox, copies[i::8]) for i in range(8)))
            found = await answers(w, inbox, "bob", {request_id_of(d) for d in datas})
        row = await verdict(
            w,
            "duplicated x3, reordered, concurrent, two workers",
            len(copies),
            datas,
            found,
            in_flight=32,
            started=started,
            command=cmd(args, "duplicates", store, "requests"),
        )
        # Three copies each: every copy answered, with the same bytes.
        return row


async def bad_input(args: argparse.Namespace, store: str) -> Row:
    started = time.monotonic()
    async with world(args, store) as w:
        w.setup.clock.now = datetime.now(UTC)

        async def transport(**config: Any) -> Transport:
            return await w.factory(**config)

        report = await run_campaign(
            w.setup, transport, args.amqp_url, count=args.hostile, seed=args.seed, wait=1800
        )
        failures = report.failures()
        for line in failures[:20]:
            print(f"  failure: {line}", file=sys.stderr)
        lost = sum(1 for f in failures if f.startswith("valid key request"))
        dead = abs(report.dead_letters - sum(h.dead for h in report.hostile))
        return Row(
            "malformed, truncated, mis-signed, replayed, misaddressed, oversize requests",
            store,
            len(report.hostile),
            len(report.hostile) + len(report.valid),
            32,
            lost,
            0,
            dead,
            time.monotonic() - started,
            cmd(args, "bad-input", store, "hostile"),
            note=f"{report.dead_letters} dead-lettered; "
            + ", ".join(f"{k}: {n}" for k, n in sorted(report.by_kind.items())),
            wrong=len(failures) - lost - bool(dead),
        )


async def corrupt(args: argparse.Namespace, store: str) -> Row:
    """Corrupted consignments opened: always the one OpenError, nothing written."""
    return await asyncio.to_thread(_corrupt_all, args)


def _corrupt_all(args: argparse.Namespace) -> Row:
    started = time.monotonic()
    rnd = random.Random(args.seed)
    bob = RECEIVERS[0]
    files = {"a.txt": rnd.randbytes(CHUNK_SIZE * 2 + 123), "b/c.bin": rnd.randbytes(5000)}
    sealed, deposit = seal_bytes(files, [bob])
    opened_wrongly = leftovers = 0
    with tempfile.TemporaryDirectory(prefix="consign-rel-") as tmp:
        target = Path(tmp) / "out"
        for _ in range(args.consignments):
            data = _corrupt(rnd, sealed)
            if data == sealed:
                continue
            target.mkdir()
            try:
                unseal(
                    io.BytesIO(data),
                    target,
                    identity=bob.encryption,
                    release=deposit.release_for(bob.name),
                    sender_key=ALICE.signing.public_key(),
                )
                opened_wrongly += 1
            except OpenError as exc:
                if str(exc) != OpenError.MESSAGE or type(exc) is not OpenError:
                    opened_wrongly += 1
            leftovers += bool(list(target.iterdir())) or len(list(Path(tmp).iterdir())) != 1
            shutil.rmtree(target)
    return Row(
        "corrupted consignments opened (flips, cuts, inserts, appends, chunk swaps)",
        "-",
        args.consignments,
        args.consignments,
        1,
        0,
        0,
        0,
        time.monotonic() - started,
        cmd(args, "corrupt", None, "consignments"),
        note=f"{opened_wrongly} opened or told which check failed, {leftovers} left output",
        wrong=opened_wrongly + leftovers,
    )


def _corrupt(rnd: random.Random, sealed: bytes) -> bytes:
    data = bytearray(sealed)
    for _ in range(rnd.randint(1, 3)):
        how = rnd.choice(["flip", "set", "cut", "insert", "append", "swap"])
        at = rnd.randrange(len(data)) if data else 0
        if how == "flip" and data:
            data[at] ^= 1 << rnd.randrange(8)
        elif how == "set" and data:
            data[at] = rnd.randrange(256)
        elif how == "cut":
            del data[at:]
        elif how == "insert":
            data[at:at] = rnd.randbytes(rnd.randint(1, 16))
        elif how == "append":
            data += rnd.randbytes(rnd.randint(1, CHUNK_SIZE + 64))
        elif how == "swap" and len(data) > 2 * CHUNK_SIZE:
            a, b = rnd.randrange(len(data) - CHUNK_SIZE), rnd.randrange(len(data) - CHUNK_SIZE)
            data[a : a + CHUNK_SIZE], data[b : b + CHUNK_SIZE] = (
                data[b : b + CHUNK_SIZE],
                data[a : a + CHUNK_SIZE],
            )
    return bytes(data)


SCENARIOS: dict[
    str, tuple[Callable[[argparse.Namespace, str], Awaitable[Row]], tuple[str, ...]]
] = {
    "kill": (kill, ("sqlite", "postgresql")),
    "agent-kill": (agent_kill, ("sqlite", "postgresql")),
    "cut": (cut, ("sqlite",)),
    "outage": (outage, ("sqlite",)),
    "slow": (slow, ("sqlite",)),
    "pg-cut": (pg_cut, ("postgresql",)),
    "sqlite-outage": (sqlite_outage, ("sqlite",)),
    "duplicates": (duplicates, ("sqlite", "postgresql")),
    "bad-input": (bad_input, ("sqlite", "postgresql")),
    "corrupt": (corrupt, ("-",)),
}


async def main(args: argparse.Namespace) -> int:
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        print(f"unknown scenario(s) {sorted(unknown)}: use {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    rows: list[Row] = []
    for name in args.scenarios or list(SCENARIOS):
        run, stores = SCENARIOS[name]
        for store in stores:
            if args.store != "both" and store not in (args.store, "-") and len(stores) > 1:
                continue
            print(f"{name} ({store}) ...", file=sys.stderr, flush=True)
            row = await run(args, store)
            rows.append(row)
            print(row.markdown(), flush=True)
            if row.note:
                print(f"  {row.note}", file=sys.stderr)
    print(f"\n{HEADER}")
    for row in rows:
        print(row.markdown())
    bad = [r for r in rows if not r.ok]
    print(f"\nseed={args.seed} rows={len(rows)} not_zero={len(bad)}", flush=True)
    return 1 if bad else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=", ".join(SCENARIOS))
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--kills", type=int, default=10, help="rounds of kills (4 each)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="agent-kill rounds (4 commands killed each)"
    )
    parser.add_argument("--cuts", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--hostile", type=int, default=10_000)
    parser.add_argument("--consignments", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(3), "big"))
    parser.add_argument(
        "--amqp-url", default=os.environ.get("CONSIGN_TEST_AMQP_URL", DEFAULT_AMQP_URL)
    )
    parser.add_argument("--pg-url", default=os.environ.get("CONSIGN_TEST_PG_URL", DEFAULT_PG_URL))
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))

"""Workers on several hosts: `consign escrow worker` processes that share nothing
but one PostgreSQL database and RabbitMQ (each runs in an empty working
directory of its own, with only CONSIGN_ESCROW_DB, the broker URL and the
escrow passphrase), under concurrent key requests with a release limit: exact
counts, one decision per request id, nothing lost, also when one worker is
killed with SIGKILL mid-burst and when PostgreSQL restarts under load."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker import ESCROW, ControlAttributes, Message
from broker.messages import MessageType
from escrow_worker.state import heartbeats
from escrow_worker.state.location import Location
from tests.escrow_worker.helpers import (
    CONSIGN,
    WAIT,
    Agent,
    EscrowSetup,
    deposit_body,
    environment,
    eventually,
    key_request_body,
    make_escrow,
    releases,
    request,
    request_id_of,
    running_worker,
    seal_for,
    verify,
)
from tests.support import TransportFactory

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgresql]
WORKERS = 3
DISTINCT = 45
MAX_RELEASES = 7


def _hosts(root: Path) -> list[Path]:
    """An empty working directory per worker 'host'."""
    dirs = []
    for n in range(WORKERS):
        home = root / f"host-{n}"
        home.mkdir()
        dirs.append(home)
    return dirs


async def _start(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        CONSIGN,
        "escrow",
        "worker",
        "--prefetch",
        "16",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _serving(setup: EscrowSetup, bob: Agent, procs: list[asyncio.subprocess.Process]) -> None:
    """Wait until the workers answer (they open the store and declare the queue)."""
    for _ in procs:
        reply = await bob.ask(
            request(setup["bob"], "lookup", {"name": "alice"}, now=datetime.now(UTC)), wait=30
        )
        assert reply.type == MessageType.LOOKUP_REPLY


async def _setup(pg_url: str) -> EscrowSetup:
    return await make_escrow(Location(database=pg_url), now=datetime.now(UTC))


async def _deposit(setup: EscrowSetup, factory: TransportFactory) -> tuple[Agent, object]:
    _, deposit = seal_for(
        setup["alice"], [setup["bob"]], attributes=ControlAttributes(max_releases=MAX_RELEASES)
    )
    async with await setup.open_service() as service, running_worker(service, await factory()):
        alice = await Agent(setup, setup["alice"], await factory()).start()
        bob = await Agent(setup, setup["bob"], await factory()).start()
        data = request(
            setup["alice"], "deposit", deposit_body(setup, deposit), now=datetime.now(UTC)
        )
        receipt = await alice.ask(data)
        assert receipt.type == MessageType.DEPOSIT_RECEIPT
    return bob, deposit


async def _burst(
    setup: EscrowSetup, factory: TransportFactory, deposit: object, copies: int = 2
) -> list[bytes]:
    datas = [
        request(
            setup["bob"],
            "key-request",
            key_request_body(deposit),  # type: ignore[arg-type]
            now=datetime.now(UTC),
        )
        for _ in range(DISTINCT)
    ]
    publishers = [await factory() for _ in range(3)]
    await asyncio.gather(
        *(
            publishers[i % 3].publish(
                ESCROW, Message(body=d, message_id=request_id_of(d), type="key-request.v1")
            )
            for i, d in enumerate(d for d in datas for _ in range(copies))
        )
    )
    return datas


async def _answers(bob: Agent, ids: set[str]) -> dict[str, list[bytes]]:
    """Replies until every request id has at least one (deadline: 60 s)."""
    found: dict[str, list[bytes]] = collections.defaultdict(list)
    async with asyncio.timeout(60):
        while not ids <= set(found):
            received = await bob.receive(WAIT)
            assert received is not None, f"{len(ids - set(found))} requests never answered"
            in_reply_to = getattr(received.body, "in_reply_to", None)
            if in_reply_to is not None:
                found[in_reply_to].append(received.raw)
    return found


def _check(setup: EscrowSetup, found: dict[str, list[bytes]]) -> None:
    outcomes: collections.Counter[str] = collections.Counter()
    for raws in found.values():
        assert len(set(raws)) == 1, "two answers to one request id differ"
        received = verify(setup, raws[0])
        outcomes[received.type if received.code is None else received.code] += 1
    assert outcomes == {"key-release": MAX_RELEASES, "exhausted": DISTINCT - MAX_RELEASES}


async def test_workers_on_several_hosts_release_exactly_and_survive_a_kill(
    pg_url: str, amqp_factory: TransportFactory, amqp_url: str, tmp_path: Path
) -> None:
    setup = await _setup(pg_url)
    bob, deposit = await _deposit(setup, amqp_factory)
    env = environment(setup, amqp_factory, amqp_url)
    assert "CONSIGN_ESCROW_DIR" not in env
    hosts = _hosts(tmp_path)
    procs = [await _start(env, home) for home in hosts]
    try:
        # Every worker is up (its first heartbeat written) before the burst, so
        # the one killed below is one that served.
        async with asyncio.timeout(WAIT * 6):
            while not {p.pid for p in procs} <= {  # noqa: ASYNC110 (other processes write it)
                b.pid for b in await setup.run(lambda tx: heartbeats.recent(tx, since=0))
            }:
                await asyncio.sleep(0.05)
        datas = await _burst(setup, amqp_factory, deposit)
        # Let them get going, then kill one without warning.
        async with asyncio.timeout(WAIT * 3):
            while (await releases(setup))[0] < 2:  # noqa: ASYNC110 (other processes write it)
                await asyncio.sleep(0.01)
        procs[0].send_signal(signal.SIGKILL)
        await procs[0].wait()
        found = await _answers(bob, {request_id_of(d) for d in datas})
        _check(setup, found)
        await eventually(lambda: releases(setup), (MAX_RELEASES, MAX_RELEASES))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
    # Nothing was written on the worker hosts: the database holds everything.
    for home in hosts:
        assert list(home.iterdir()) == []
    # Each worker process left its heartbeat: the killed one never said it
    # stopped; the others did, with the requests they handled.
    beats = {b.pid: b for b in await setup.run(lambda tx: heartbeats.recent(tx, since=0))}
    assert beats.pop(os.getpid()).stopped_at is not None  # the worker that took the deposit
    assert set(beats) == {p.pid for p in procs}
    assert beats[procs[0].pid].stopped_at is None
    assert all(beats[p.pid].stopped_at is not None for p in procs[1:])
    assert sum(beats[p.pid].handled for p in procs[1:]) > 0


def _pg_cluster() -> list[str] | None:
    """`pg_ctlcluster VERSION NAME` for the local server, if this machine has one."""
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return None
    versions = sorted(os.listdir("/etc/postgresql"))
    return (
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"] if versions else None
    )


@pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.environ.get("CONSIGN_TEST_PG_RESTART") != "1",
    reason="restarts PostgreSQL: runs with CI=true or CONSIGN_TEST_PG_RESTART=1",
)
async def test_a_postgresql_restart_under_load_loses_nothing_and_decides_once(
    pg_url: str, amqp_factory: TransportFactory, amqp_url: str, tmp_path: Path
) -> None:
    cluster = _pg_cluster()
    if cluster is None:
        pytest.fail("pg_ctlcluster is not available to restart PostgreSQL", pytrace=False)
    setup = await _setup(pg_url)
    bob, deposit = await _deposit(setup, amqp_factory)
    env = environment(setup, amqp_factory, amqp_url)
    hosts = _hosts(tmp_path)
    procs = [await _start(env, home) for home in hosts[:2]]
    try:
        await _serving(setup, bob, procs)
        datas = await _burst(setup, amqp_factory, deposit)
        restart = await asyncio.to_thread(
            subprocess.run, [*cluster, "restart"], capture_output=True, text=True, check=False
        )
        assert restart.returncode == 0, restart.stderr
        found = await _answers(bob, {request_id_of(d) for d in datas})
        _check(setup, found)
        await eventually(lambda: releases(setup), (MAX_RELEASES, MAX_RELEASES), wait=30)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()

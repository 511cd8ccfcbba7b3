"""MESSAGING.md reliability test 1 with real processes: `kill -9` an escrow
worker in the middle of a burst of key requests, start another, and every request
is answered, with one release per request and the same bytes for every copy."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker import ESCROW, Message
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
    replies,
    request,
    request_id_of,
    running_worker,
    seal_for,
)
from tests.support import TransportFactory

pytestmark = pytest.mark.rabbitmq
#: Enough that a worker with few requests at a time is still busy when it is killed
#: (a worker batches what waits; with 16 at once it once finished 60 first).
REQUESTS = 200


@pytest.fixture
async def setup(escrow_location: Location, tmp_path: Path) -> EscrowSetup:
    return await make_escrow(escrow_location, now=datetime.now(UTC))


async def _worker(env: dict[str, str], prefetch: int = 16) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        CONSIGN,
        "escrow",
        "worker",
        "--prefetch",
        str(prefetch),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _released(setup: EscrowSetup) -> int:
    return (await releases(setup))[0]


async def test_kill_9_mid_burst_loses_nothing_and_releases_once(
    setup: EscrowSetup, amqp_factory: TransportFactory, amqp_url: str
) -> None:
    _, deposit = seal_for(setup["alice"], [setup["bob"]])
    service = await setup.open_service()
    async with service, running_worker(service, await amqp_factory()):
        alice = await Agent(setup, setup["alice"], await amqp_factory()).start()
        bob = await Agent(setup, setup["bob"], await amqp_factory()).start()
        now = datetime.now(UTC)
        receipt = await alice.ask(
            request(setup["alice"], "deposit", deposit_body(setup, deposit), now=now)
        )
        assert receipt.type == "deposit-receipt"
    env = environment(setup, amqp_factory, amqp_url)
    datas = [
        request(setup["bob"], "key-request", key_request_body(deposit), now=datetime.now(UTC))
        for _ in range(REQUESTS)
    ]
    publisher = await amqp_factory()
    await asyncio.gather(
        *(
            publisher.publish(
                ESCROW, Message(body=d, message_id=request_id_of(d), type="request.v1")
            )
            for d in datas
        )
    )
    first = await _worker(env, prefetch=2)
    second = None
    try:
        # Let the first worker get part of the way, then kill it without warning.
        async with asyncio.timeout(WAIT * 2):
            while await _released(setup) < 5:  # noqa: ASYNC110 (another process writes it)
                await asyncio.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        killed_at = await _released(setup)
        assert killed_at < REQUESTS, "the first worker finished before it was killed"

        second = await _worker(env)
        found = await replies(bob, REQUESTS)
        while set(found) != {request_id_of(d) for d in datas}:
            more = await replies(bob, 1)
            for key, raws in more.items():
                found.setdefault(key, []).extend(raws)
        await eventually(lambda: releases(setup), (REQUESTS, REQUESTS))
        for raws in found.values():
            assert len(set(raws)) == 1  # a copy re-sent after the kill is the same reply
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()

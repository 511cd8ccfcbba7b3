"""kill -9 of an escrow worker at each point of handling a request (before the
commit, after it, after the reply, before the ack; on PostgreSQL the two around
the commit, the others touching no store):
every deposit is kept, every request answered with one reply (every copy the
same bytes), every key part released once per request, no dead letter.

Real worker processes, killed by `CONSIGN_TEST_KILL_AT` (`escrow_worker.faults`);
a clean worker finishes the backlog. `bench/reliability.py kill` runs the long
version.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker import ESCROW, Message, Transport
from escrow_worker import faults
from escrow_worker.errors import EscrowError
from escrow_worker.faults import KILL_AT_ENV, POINTS
from escrow_worker.state.location import Location
from tests.escrow_worker.helpers import (
    WAIT,
    Agent,
    deposit_body,
    environment,
    key_request_body,
    make_escrow,
    request,
    request_id_of,
    running_worker,
    seal_for,
)
from tests.reliability.forks import WorkerForks
from tests.reliability.helpers import (
    escrow_counts,
    queue_depth,
    start_worker,
    stop_worker,
    wait_killed,
)
from tests.support import TransportFactory

pytestmark = pytest.mark.rabbitmq

DEPOSITS = 8
KEY_REQUESTS = 24
#: A request survives this many workers dying while they hold it; one kill per
#: point here, so a request is held by at most four of them.
DELIVERY_LIMIT = 10


async def answers(agent: Agent, datas: list[bytes]) -> dict[str, list[tuple[str, bytes]]]:
    """Every reply to `datas` (type and bytes, by request id), read until each
    was answered and nothing more came for a moment."""
    wanted = {request_id_of(d) for d in datas}
    found: dict[str, list[tuple[str, bytes]]] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90  # a worker process may take long to start on a busy machine
    async with asyncio.timeout(120):
        while not wanted <= set(found):
            received = await agent.receive(WAIT)
            if received is None:
                missing = len(wanted - set(found))
                assert loop.time() < deadline, f"{missing} requests never answered"
                continue
            if (in_reply_to := getattr(received.body, "in_reply_to", None)) is not None:
                found.setdefault(in_reply_to, []).append((received.type, received.raw))
        while (received := await agent.receive(0.5)) is not None:  # copies after a kill
            if (in_reply_to := getattr(received.body, "in_reply_to", None)) is not None:
                found.setdefault(in_reply_to, []).append((received.type, received.raw))
    return found


async def test_kill_9_at_each_point_loses_nothing_and_releases_once(
    escrow_location: Location, amqp_factory: TransportFactory, amqp_url: str
) -> None:
    setup = await make_escrow(escrow_location, now=datetime.now(UTC))

    async def transport() -> Transport:
        return await amqp_factory(delivery_limit=DELIVERY_LIMIT)

    _, first = seal_for(setup["alice"], [setup["bob"]])
    alice = await Agent(setup, setup["alice"], await transport()).start()
    bob = await Agent(setup, setup["bob"], await transport()).start()
    async with (
        await setup.open_service() as service,
        running_worker(service, await transport()),
    ):
        receipt = await alice.ask(
            request(setup["alice"], "deposit", deposit_body(setup, first), now=datetime.now(UTC))
        )
        assert receipt.type == "deposit-receipt"
    await alice.drain()

    now = datetime.now(UTC)
    sealed = [seal_for(setup["alice"], [setup["bob"]])[1] for _ in range(DEPOSITS)]
    deposits = [request(setup["alice"], "deposit", deposit_body(setup, d), now=now) for d in sealed]
    key_requests = [
        request(setup["bob"], "key-request", key_request_body(first), now=now)
        for _ in range(KEY_REQUESTS)
    ]
    publisher = await transport()
    # Interleaved, so that kills land among both kinds.
    datas = [d for pair in zip(deposits, key_requests[:DEPOSITS], strict=True) for d in pair]
    datas += key_requests[DEPOSITS:]
    for data in datas:
        await publisher.publish(
            ESCROW, Message(body=data, message_id=request_id_of(data), type="request.v1")
        )

    env = environment(setup, amqp_factory, amqp_url)
    env["CONSIGN_DELIVERY_LIMIT"] = str(DELIVERY_LIMIT)
    procs = []
    try:
        # One worker per point, all at once (they compete for the backlog as
        # workers do); each kills itself the third time a request reaches its point.
        # `received` and `replied` touch no store: on PostgreSQL only the points
        # around its commit are run again (bench/reliability.py runs them all).
        points = POINTS if setup.location.database is None else ("decided", "committed")
        procs = [await start_worker(env, kill_at=f"{p}:3", prefetch=2) for p in points]
        await asyncio.gather(*(wait_killed(proc) for proc in procs))
        before = await escrow_counts(setup)
        assert before["releases"] < KEY_REQUESTS, "the killed workers finished everything"
        procs.append(await start_worker(env, prefetch=8))
        bob_replies = await answers(bob, key_requests)
        alice_replies = await answers(alice, deposits)
    finally:
        for proc in procs:
            await stop_worker(proc)

    # Every request answered; a copy sent again after a kill is the same reply.
    assert set(bob_replies) == {request_id_of(d) for d in key_requests}
    assert set(alice_replies) == {request_id_of(d) for d in deposits}
    for raws in [*bob_replies.values(), *alice_replies.values()]:
        assert len({raw for _, raw in raws}) == 1
    assert {t for raws in bob_replies.values() for t, _ in raws} == {"key-release"}
    assert {t for raws in alice_replies.values() for t, _ in raws} == {"deposit-receipt"}
    # One release per key request, every deposit kept, nothing dead-lettered.
    counts = await escrow_counts(setup)
    assert counts["releases"] == counts["released"] == KEY_REQUESTS
    assert counts["deposits"] == DEPOSITS + 1
    assert await queue_depth(amqp_url, publisher.config.dead_letter_queue) == 0
    assert await queue_depth(amqp_url, publisher.config.escrow_queue) == 0


@pytest.mark.parametrize("value", ["nowhere", "decided:0", "decided:x", "committed:-1", ":3"])
def test_a_kill_point_that_names_nothing_stops_the_worker_from_starting(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(KILL_AT_ENV, value)
    with pytest.raises(EscrowError, match=KILL_AT_ENV) as caught:
        faults.check()
    assert caught.value.hint is not None
    assert "received" in caught.value.hint
    monkeypatch.delenv(KILL_AT_ENV)
    faults.check()  # unset: armed nowhere
    for point in POINTS:
        faults.reach(point)  # and reaching every point does nothing


async def test_the_fork_server_kills_a_worker_at_its_point_and_serves_with_a_clean_one(
    tmp_path: Path, amqp_factory: TransportFactory, amqp_url: str
) -> None:
    """What `bench/reliability.py kill` runs its thousands of kills on: a worker
    forked with a kill point dies by SIGKILL there, leaving the request to the
    next; a clean one answers it."""
    setup = await make_escrow(tmp_path / "escrow", now=datetime.now(UTC))
    bob = await Agent(setup, setup["bob"], await amqp_factory()).start()
    await bob.transport.declare_escrow_queues()
    env = environment(setup, amqp_factory, amqp_url)
    data = request(setup["bob"], "lookup", {"name": "alice"}, now=datetime.now(UTC))
    async with WorkerForks.started(env) as forks:
        await forks.start("received", prefetch=1)
        await bob.send(data)
        assert await forks.ended() == -signal.SIGKILL
        assert (await escrow_counts(setup))["requests"] == 0  # killed before deciding
        await forks.start(None, prefetch=1)
        reply = await bob.reply_to(request_id_of(data))
        assert reply.type == "lookup-reply"
        await forks.stop()
        assert forks.pid is None

"""RabbitMQ restarts under a running escrow worker and running agents: once it
is back, they reconnect by themselves and the story goes on (no restart of
ours, nothing lost of what was deposited before).

Restarts the RabbitMQ application of the test broker with `rabbitmqctl
stop_app` / `start_app` (a few seconds), so it runs only with CI=true or
CONSIGN_TEST_BROKER_RESTART=1. Needs `rabbitmqctl` on the machine of
the test broker (as in CI); with CI=true its absence is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from broker import AmqpTransport, Transport
from broker.errors import BrokerError
from client import ReceiverAgent, SenderAgent
from client.errors import ClientError
from tests.client.agent_helpers import ESCROW_NAME, WorkerRunner, make_world
from tests.support import TransportFactory, require_rabbitmqctl

pytestmark = pytest.mark.rabbitmq
CONTENT = b"sealed before the broker went down\n"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


async def restart_broker() -> None:
    def restart() -> None:
        _rabbitmqctl("stop_app")  # closes every client connection
        _rabbitmqctl("start_app")
        _rabbitmqctl("await_startup")

    await asyncio.to_thread(restart)


async def test_worker_and_agents_carry_on_after_a_broker_restart(
    tmp_path: Path, amqp_factory: TransportFactory
) -> None:
    if os.environ.get("CI") != "true" and os.environ.get("CONSIGN_TEST_BROKER_RESTART") != "1":
        # Restarting someone's broker is for CI (or on request), not a habit.
        pytest.skip("restarts RabbitMQ: runs with CI=true or CONSIGN_TEST_BROKER_RESTART=1")
    require_rabbitmqctl()
    world = await make_world(tmp_path, ("alice", "bob"))
    worker_transport = await amqp_factory()
    assert isinstance(worker_transport, AmqpTransport)
    agent_transports: list[Transport] = [await amqp_factory(), await amqp_factory()]
    async with WorkerRunner(world, worker_transport):
        alice = SenderAgent(
            world.identities["alice"], agent_transports[0], ESCROW_NAME, tmp_path / "alice"
        )
        bob = ReceiverAgent(
            world.identities["bob"], agent_transports[1], ESCROW_NAME, tmp_path / "bob"
        )
        async with alice, bob:
            (tmp_path / "report.txt").write_bytes(CONTENT)
            sealed = await alice.seal(
                [tmp_path / "report.txt"], tmp_path / "r.consignment", to=["bob"]
            )
            before = await _connections()
            await restart_broker()
            assert before, "the agents and the worker were connected"
            # Everything after this goes through connections that had to be
            # re-established: publishing, the worker's and bob's consumers.
            async with asyncio.timeout(60):
                while True:
                    try:
                        await alice.send(sealed.consignment_id)
                        break
                    except (BrokerError, ClientError):  # still reconnecting
                        await asyncio.sleep(0.5)
            opened = await bob.open(sealed.consignment_id, tmp_path / "out")
            assert opened.consignment_id == sealed.consignment_id
            assert (tmp_path / "out" / "report.txt").read_bytes() == CONTENT
            status = await alice.status(sealed.consignment_id)
            assert [(r.name, r.releases) for r in status.receivers] == [("bob", 1)]
            # The connections now open are new ones: the old ones died with the app.
            assert not (before & await _connections())


async def _connections() -> set[str]:
    """Names of the client connections RabbitMQ has open now."""

    def listed() -> set[str]:
        out = subprocess.run(
            ["rabbitmqctl", "list_connections", "-q", "name"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return {line.strip() for line in out.splitlines() if "->" in line}

    return await asyncio.to_thread(listed)

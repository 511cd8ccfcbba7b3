"""The README's RabbitMQ permissions, applied as written on a vhost of its own:
the whole story runs with one broker user for the worker and one per identity,
and an identity can read neither another's inbox nor the escrow's queue.

Needs `rabbitmqctl` on the machine of the test broker (as in CI); with CI=true
its absence is a failure, never a skip.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from yarl import URL

from broker import AmqpTransport, Transport, TransportConfig
from broker.errors import BrokerError
from client import ReceiverAgent, SenderAgent
from tests.client.agent_helpers import ESCROW_NAME, WorkerRunner, make_world
from tests.support import require_rabbitmqctl

README = Path(__file__).resolve().parents[2] / "README.md"
PASSWORD = "not-a-secret"


def readme_commands() -> list[list[str]]:
    """The `rabbitmqctl` commands of the README's "Broker accounts" block."""
    text = README.read_text()
    start = text.index("**Broker accounts.**")
    begin = text.index("```sh\n", start) + 6
    block = text[begin : text.index("\n```", begin)]
    logical = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line, comments=True) for line in logical.splitlines() if line.strip()]


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def vhost(amqp_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A vhost with the README's users (renamed to be unique on the broker) for
    the worker, alice and bob. Yields (vhost, broker user by role)."""
    require_rabbitmqctl()
    tag = uuid.uuid4().hex[:8]
    name = f"consign-perm-{tag}"
    users = {"worker": f"escrow-worker-{tag}", "alice": f"alice-{tag}", "bob": f"bob-{tag}"}
    commands = readme_commands()
    permissions = {c[2]: c[3:6] for c in commands if c[1] == "set_permissions"}
    assert set(permissions) == {"escrow-worker", "alice"}, commands
    rabbitmqctl("add_vhost", name)
    try:
        for role, user in users.items():
            rabbitmqctl("add_user", user, PASSWORD)
            if role == "worker":
                rules = permissions["escrow-worker"]
            else:  # the README shows alice's; every identity gets the same with its name
                rules = [r.replace("alice", role) for r in permissions["alice"]]
            rabbitmqctl("set_permissions", "-p", name, user, *rules)
        yield name, users
    finally:
        for user in users.values():
            subprocess.run(["rabbitmqctl", "delete_user", user], capture_output=True, timeout=60)
        subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True, timeout=60)


def url_for(amqp_url: str, vhost: str, user: str) -> str:
    base = URL(amqp_url)
    host, port = base.host or "127.0.0.1", base.port or 5672
    return f"amqp://{quote(user)}:{PASSWORD}@{host}:{port}/{quote(vhost, safe='')}"


async def started(url: str) -> Transport:
    transport = AmqpTransport(url, TransportConfig())  # the README's prefix, consign
    await transport.start()
    return transport


async def test_readme_permissions_run_the_story_and_keep_inboxes_private(
    tmp_path: Path, amqp_url: str, vhost: tuple[str, dict[str, str]]
) -> None:
    name, users = vhost
    world = await make_world(tmp_path, ("alice", "bob"))
    worker_t = await started(url_for(amqp_url, name, users["worker"]))
    alice_t = await started(url_for(amqp_url, name, users["alice"]))
    bob_t = await started(url_for(amqp_url, name, users["bob"]))
    try:
        async with WorkerRunner(world, worker_t):
            alice = SenderAgent(world.identities["alice"], alice_t, ESCROW_NAME, tmp_path / "a")
            bob = ReceiverAgent(world.identities["bob"], bob_t, ESCROW_NAME, tmp_path / "b")
            async with alice, bob:
                (tmp_path / "report.txt").write_bytes(b"for bob only\n")
                sealed = await alice.seal(
                    [tmp_path / "report.txt"], tmp_path / "r.consignment", to=["bob"]
                )
                await alice.send(sealed.consignment_id)
                inbox = await bob.fetch()
                assert [r.state for r in inbox.received] == ["complete"]
                await bob.open(sealed.consignment_id, tmp_path / "out")
                assert (tmp_path / "out" / "report.txt").read_bytes() == b"for bob only\n"
        # bob may read his own inbox, but not alice's nor the escrow's queue.
        config = bob_t.config
        await bob_t.get(config.inbox_queue("bob"))
        for queue in (config.inbox_queue("alice"), config.escrow_queue):
            with pytest.raises(BrokerError, match=r"(?i)access refused"):
                await bob_t.get(queue)
    finally:
        for transport in (bob_t, alice_t, worker_t):
            await transport.close()

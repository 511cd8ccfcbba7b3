"""`consign escrow worker`, `rotate-master-key` and `dead-letters` through the
real entry point in a subprocess, against RabbitMQ with a queue prefix of the
test's own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker import ESCROW, Message
from broker.messages import LookupReplyBody
from escrow_worker import EscrowWorker
from escrow_worker.state.location import Location
from tests.broker.pki_helpers import ESCROW_PASS
from tests.escrow_worker.helpers import (
    CONSIGN,
    Agent,
    EscrowSetup,
    environment,
    escrow_keyring,
    make_escrow,
    request,
)
from tests.support import TransportFactory

pytestmark = pytest.mark.rabbitmq


def consign(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONSIGN, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
async def setup(escrow_location: Location, tmp_path: Path) -> EscrowSetup:
    return await make_escrow(escrow_location, now=datetime.now(UTC))


async def test_worker_answers_and_stops_cleanly_on_sigterm(
    setup: EscrowSetup, amqp_factory: TransportFactory, amqp_url: str
) -> None:
    env = environment(setup, amqp_factory, amqp_url)
    proc = await asyncio.create_subprocess_exec(
        CONSIGN,
        "escrow",
        "worker",
        "--prefetch",
        "8",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        transport = await amqp_factory()
        await transport.declare_escrow_queues()  # the same queue the worker declares
        alice = await Agent(setup, setup["alice"], transport).start()
        data = request(setup["alice"], "lookup", {"name": "bob"}, now=datetime.now(UTC))
        reply = await alice.ask(data, wait=60)
        assert isinstance(reply.body, LookupReplyBody)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert out == b""
    request_id = reply.body.in_reply_to
    assert f"{request_id} lookup from alice: ok" in stderr
    assert "OK escrow worker stopped" in stderr
    assert ESCROW_PASS.decode() not in stderr
    assert "Traceback" not in stderr


async def test_worker_without_a_broker_url_says_what_to_do(
    setup: EscrowSetup, amqp_factory: TransportFactory, amqp_url: str
) -> None:
    env = environment(setup, amqp_factory, amqp_url)
    del env["CONSIGN_AMQP_URL"]
    result = consign("escrow", "worker", env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2:] == [
        "error: no RabbitMQ URL given",
        "hint: set CONSIGN_AMQP_URL or pass --amqp-url amqp://user:password@host:5672/",
    ]
    nowhere = "amqp://guest:guest@127.0.0.1:1/"
    unreachable = consign("escrow", "worker", "--amqp-url", nowhere, env=env)
    assert unreachable.returncode == 1
    assert "error: cannot connect to RabbitMQ" in unreachable.stderr
    assert "guest:guest" not in unreachable.stderr


@pytest.mark.parametrize(
    ("variable", "value", "what"),
    [
        ("CONSIGN_DELIVERY_LIMIT", "abc", "a valid integer"),
        ("CONSIGN_DELIVERY_LIMIT", "-1", "greater than or equal to 0"),
        ("CONSIGN_MAX_MESSAGE_SIZE", "-5", "greater than or equal to 1024"),
    ],
)
async def test_worker_with_a_bad_setting_names_the_variable(
    setup: EscrowSetup,
    amqp_factory: TransportFactory,
    amqp_url: str,
    variable: str,
    value: str,
    what: str,
) -> None:
    env = environment(setup, amqp_factory, amqp_url)
    env[variable] = value
    result = consign("escrow", "worker", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error, hint = result.stderr.splitlines()
    assert error.startswith(f"error: {variable}: input should be ")
    assert what in error
    assert repr(value) in error
    assert hint.startswith(f"hint: fix {variable} or unset it to use the default (")


async def test_worker_with_a_wrong_passphrase_refuses_to_start(
    setup: EscrowSetup, amqp_factory: TransportFactory, amqp_url: str
) -> None:
    env = environment(setup, amqp_factory, amqp_url)
    env["CONSIGN_ESCROW_PASSPHRASE"] = "not it"
    result = consign("escrow", "worker", env=env)
    assert result.returncode == 1
    assert "error: wrong passphrase" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("hint: ")


async def test_rotate_master_key(
    setup: EscrowSetup, amqp_factory: TransportFactory, amqp_url: str
) -> None:
    env = environment(setup, amqp_factory, amqp_url)
    first = consign("escrow", "rotate-master-key", "--json", env=env)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert set((await escrow_keyring(setup)).keys) == {data["master_key_id"]}
    assert data["reencrypted"] == 0
    second = consign("escrow", "rotate-master-key", "--json", env=env)
    assert json.loads(second.stdout)["retired"] == [data["master_key_id"]]
    assert "re-encrypted" in second.stderr
    env["CONSIGN_ESCROW_PASSPHRASE"] = "not it"
    wrong = consign("escrow", "rotate-master-key", env=env)
    assert wrong.returncode == 1
    assert "error: wrong passphrase" in wrong.stderr


async def test_dead_letters_counts_and_lists_without_removing(
    setup: EscrowSetup, amqp_factory: TransportFactory, amqp_url: str
) -> None:
    env = environment(setup, amqp_factory, amqp_url)
    empty = consign("escrow", "dead-letters", "--json", env=env)
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["count"] == 0

    transport = await amqp_factory()
    async with await setup.open_service() as service:
        worker = EscrowWorker(service, transport)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await transport.declare_escrow_queues()
        await transport.publish(ESCROW, Message(body=b"garbage", message_id="bad-1", type="x.v1"))
        async with asyncio.timeout(10):
            while worker.processed < 1:  # noqa: ASYNC110 - the worker counts, nothing signals
                await asyncio.sleep(0.05)
        stop.set()
        await task

    listed = consign("escrow", "dead-letters", "--json", env=env)
    data = json.loads(listed.stdout)
    assert data["count"] == 1
    assert data["complete"] is True
    (message,) = data["messages"]
    assert message["message_id"] == "bad-1"
    assert message["reason"] == "rejected"
    assert message["from_queue"] == transport.config.escrow_queue
    assert message["envelope"] is None
    assert "garbage" not in listed.stdout
    text = consign("escrow", "dead-letters", env=env)
    assert text.stdout.splitlines()[0] == f"{transport.config.dead_letter_queue}: 1 dead letter(s)"
    # Still there after looking.
    again = await transport.get(transport.config.dead_letter_queue, timeout=5)
    assert again is not None
    assert again.body == b"garbage"
    await again.ack()


def test_help_explains_each_command() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
    for command, words in {
        "worker": ["SIGTERM", "CONSIGN_AMQP_URL", "--prefetch"],
        "rotate-master-key": ["re-encrypt", "master.keys"],
        "dead-letters": ["dead-letter queue", "--json", "--limit"],
    }.items():
        result = consign("escrow", command, "--help", env=env)
        assert result.returncode == 0
        for word in words:
            assert word in result.stdout, (command, word)

"""Helpers for the tests that run the real `consign` entry point in a subprocess:
run it with a clean environment, check an error's two lines, start an escrow and
its worker with identities (`escrow_world`), and remove a test's queues from
RabbitMQ afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika

CONSIGN = str(Path(sys.executable).parent / "consign")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


@dataclass
class Env:
    root: Path
    vars: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, unset: tuple[str, ...] = (), **extra: str) -> Result:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
        env.update(self.vars)
        env.update(extra)
        for name in unset:
            env.pop(name, None)
        proc = subprocess.run(
            [CONSIGN, *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_error(result: Result, *fragments: str) -> None:
    """Exit 1, nothing on stdout, an error line (and a hint line) on stderr."""
    assert result.code == 1, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert lines[-2].startswith("error: "), result.err  # progress lines may come before
    assert lines[-1].startswith("hint: "), result.err
    assert sum(line.startswith("error: ") for line in lines) == 1
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err


def queues(prefix: str, names: tuple[str, ...] = ("alice", "bob", "carol")) -> list[str]:
    return [
        f"{prefix}.escrow.requests",
        f"{prefix}.dead-letters",
        *(f"{prefix}.inbox.{n}" for n in names),
    ]


async def delete_topology(
    url: str, prefix: str, names: tuple[str, ...] = ("alice", "bob", "carol")
) -> None:
    """Delete the queues and exchanges of one test's prefix (never the broker's)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in queues(prefix, names):
            await channel.queue_delete(queue)
        for exchange in (f"{prefix}.inbox", f"{prefix}.dlx"):
            await channel.exchange_delete(exchange)


PASSWORDS = {"alice": "alice pw", "bob": "bob pw", "carol": "carol pw"}


class Agents(Env):
    """`Env` with one home and passphrase per identity (`as_`)."""

    def as_(self, name: str, *args: str, **extra: str) -> Result:
        return self.run(*args, **(self.who(name) | extra))

    def who(self, name: str) -> dict[str, str]:
        return {
            "CONSIGN_HOME": str(self.root / f"{name}-home"),
            "CONSIGN_IDENTITY_PASSPHRASE": PASSWORDS[name],
        }

    def environ(self, name: str | None = None) -> dict[str, str]:
        """The whole environment a `consign` process of `name` runs with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
        return env | self.vars | (self.who(name) if name else {})


@contextlib.contextmanager
def escrow_world(
    root: Path, amqp_url: str, names: tuple[str, ...] = ("alice", "bob")
) -> Iterator[Agents]:
    """An escrow "acme" on RabbitMQ under a queue prefix of its own, `consign
    escrow worker` in a process of its own (its log in root/worker.log), and
    the identities `names`; the queues are deleted afterwards."""
    prefix = f"test-cli-{uuid.uuid4().hex[:10]}"
    agents = Agents(
        root,
        {
            "CONSIGN_ESCROW_DIR": str(root / "escrow"),
            "CONSIGN_ESCROW_PASSPHRASE": "operator passphrase",
            "CONSIGN_AMQP_URL": amqp_url,
            "CONSIGN_QUEUE_PREFIX": prefix,
        },
    )
    assert agents.run("escrow", "init", "--name", "acme").code == 0
    for name in names:
        out = f"{name}.identity"
        registered = agents.run(
            "escrow", "register", name, "--out", out, CONSIGN_IDENTITY_PASSPHRASE=PASSWORDS[name]
        )
        assert registered.code == 0, registered
        imported = agents.as_(name, "id", "import", out)
        assert imported.code == 0, imported
    with (root / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [CONSIGN, "escrow", "worker"], cwd=root, env=agents.environ(), stderr=log
        )
    try:
        wait_until_serving(root / "worker.log", worker)
        yield agents
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        asyncio.run(delete_topology(amqp_url, prefix, names))


def wait_until_serving(log: Path, worker: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until `consign escrow worker` says it serves (its queues exist)."""
    deadline = time.monotonic() + timeout
    while "serving" not in log.read_text():
        assert worker.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the escrow worker did not start"
        time.sleep(0.05)

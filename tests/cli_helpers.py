"""Helpers for the tests that run the real `consign` entry point in a subprocess:
run it with a clean environment, check an error's two lines, and remove a test's
queues from RabbitMQ afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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

"""`consign batch seal | open | revoke`, `consign receive` and `consign events
--follow` through the real entry point, in subprocesses, against an escrow
worker process on RabbitMQ: exit codes, stdout (--json, one result per item)
and stderr (the summary of what failed); and an unattended receiver killed
with kill -9 mid-batch that, restarted, opens every consignment exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.cli_helpers import CONSIGN, Env, Result, delete_topology

pytestmark = pytest.mark.rabbitmq

ESCROW_PW = "operator passphrase"
PASSWORDS = {"alice": "alice pw", "bob": "bob pw", "carol": "carol pw"}


class Agents(Env):
    def who(self, name: str) -> dict[str, str]:
        return {
            "CONSIGN_HOME": str(self.root / f"{name}-home"),
            "CONSIGN_IDENTITY_PASSPHRASE": PASSWORDS[name],
        }

    def as_(self, name: str, *args: str) -> Result:
        return self.run(*args, **self.who(name))

    def popen(self, name: str, *args: str, **kw: object) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
        env.update(self.vars | self.who(name))
        return subprocess.Popen([CONSIGN, *args], cwd=self.root, env=env, **kw)  # type: ignore[call-overload, no-any-return]

    def releases(self) -> int:
        with sqlite3.connect(self.root / "escrow" / "escrow.db") as db:
            return int(db.execute("SELECT COUNT(*) FROM releases").fetchone()[0])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, amqp_url: str) -> Iterator[Agents]:
    root = tmp_path_factory.mktemp("batches-cli")
    prefix = f"test-batch-{uuid.uuid4().hex[:10]}"
    agents = Agents(
        root,
        {
            "CONSIGN_ESCROW_DIR": str(root / "escrow"),
            "CONSIGN_ESCROW_PASSPHRASE": ESCROW_PW,
            "CONSIGN_AMQP_URL": amqp_url,
            "CONSIGN_QUEUE_PREFIX": prefix,
        },
    )
    assert agents.run("escrow", "init", "--name", "acme").code == 0
    for name, password in PASSWORDS.items():
        out = f"{name}.identity"
        registered = agents.run(
            "escrow", "register", name, "--out", out, CONSIGN_IDENTITY_PASSPHRASE=password
        )
        assert registered.code == 0, registered
        assert agents.as_(name, "id", "import", out).code == 0
    with (root / "worker.log").open("w") as log:
        worker = agents.popen("alice", "escrow", "worker", stderr=log)
    try:
        yield agents
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0
        asyncio.run(delete_topology(amqp_url, prefix))


def inputs(env: Agents, folder: str, count: int) -> list[str]:
    (env.root / folder).mkdir()
    names = []
    for i in range(count):
        (env.root / folder / f"doc{i}.txt").write_text(f"document {i}\n")
        names.append(f"{folder}/doc{i}.txt")
    return names


def test_batch_seal_open_revoke(env: Agents) -> None:
    files = inputs(env, "docs", 3)
    missing = env.as_("alice", "batch", "seal", *files, "docs/nope.txt", "--to", "bob",
                      "--out", "sealed")  # fmt: skip
    assert missing.code == 1, missing
    assert "no input file" in missing.err
    assert "nothing was sealed" in missing.err
    assert not (env.root / "sealed").exists()

    sealed = env.as_(
        "alice", "batch", "seal", *files, "--to", "bob", "--out", "sealed", "--send", "--json"
    )
    assert sealed.code == 0, sealed
    results = json.loads(sealed.out)
    assert [r["ok"] for r in results] == [True] * 3
    assert sealed.err.strip().endswith("OK 3 consignment(s) sealed and deposited")
    ids = [r["consignment_id"] for r in results]

    (env.root / "list.jsonl").write_text(
        '{"files": ["docs/doc0.txt"], "to": ["carol"]}\n'
        "not json\n"
        '{"files": ["docs/doc1.txt"], "to": ["nobody"]}\n'
    )
    mixed = env.as_("alice", "batch", "seal", "--manifest", "list.jsonl", "--out", "m", "--json")
    assert mixed.code == 1, mixed
    assert [(r["ok"], r["code"]) for r in json.loads(mixed.out)] == [
        (False, "bad_entry"),
        (True, None),
        (False, "unknown_user"),
    ]
    assert "error: 2 of 3 failed:" in mixed.err
    assert "list.jsonl:2: bad_entry" in mixed.err

    opened = env.as_("bob", "batch", "open", "--into", "bob-in", "--json")
    assert opened.code == 0, opened
    assert sorted(r["consignment_id"] for r in json.loads(opened.out)) == sorted(ids)
    for i, cid in enumerate(ids):
        assert (env.root / "bob-in" / cid / f"doc{i}.txt").read_text() == f"document {i}\n"
    again = env.as_("bob", "batch", "open", "--into", "bob-in", "--json")
    assert (again.code, json.loads(again.out)) == (0, [])

    revoked = env.as_("alice", "batch", "revoke", ids[0], "0" * 32, "--json")
    assert revoked.code == 1, revoked
    assert [(r["ok"], r["code"]) for r in json.loads(revoked.out)] == [
        (True, None),
        (False, "unknown_consignment"),
    ]
    # Each item is a decision of its own in the escrow's log: the history shows it.
    history = env.as_("alice", "history", ids[0], "--json")
    assert history.code == 0, history
    steps = [
        (e["data"]["signer"], e["data"]["type"], e["data"]["decision"], "batch" in e["data"])
        for e in json.loads(history.out)["entries"]
        if e["kind"] == "request"
    ]
    assert steps == [
        ("alice", "deposit", "ok", True),
        ("bob", "key-request", "ok", True),
        ("alice", "revoke", "ok", True),
    ]
    bobs = env.as_("bob", "history", ids[1])
    assert bobs.code == 0, bobs
    assert "bob key-request: ok (in batch " in bobs.out


def test_receive_killed_mid_batch_opens_each_once_after_restart(env: Agents) -> None:
    before = env.releases()
    files = inputs(env, "many", 8)
    hook = env.root / "hook.py"
    hook.write_text(
        "import os, pathlib, sys, time\n"
        "with open('handled.log', 'a') as log:\n"
        "    log.write(os.environ['CONSIGN_ID'] + ' ' + sys.argv[1] + '\\n')\n"
        "time.sleep(0.3)\n"
    )
    sealed = env.as_("alice", "batch", "seal", *files, "--to", "carol", "--out", "many-out",
                     "--send", "--json")  # fmt: skip
    assert sealed.code == 0, sealed
    ids = {r["consignment_id"] for r in json.loads(sealed.out)}
    command = f"{sys.executable} {hook}"
    log = env.root / "handled.log"
    with (env.root / "receive1.log").open("w") as err:
        first = env.popen("carol", "receive", "--into", "carol-in", "--exec", command, stderr=err)
        deadline = time.monotonic() + 60
        while (not log.exists() or len(log.read_text().splitlines()) < 2) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # mid-batch
        first.wait(timeout=10)
    handled_before = len(log.read_text().splitlines())
    assert 2 <= handled_before < 8
    with (env.root / "receive2.log").open("w") as err:
        second = env.popen("carol", "receive", "--into", "carol-in", "--exec", command, stderr=err)
        deadline = time.monotonic() + 60
        while {line.split()[0] for line in log.read_text().splitlines()} != ids:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(1.0)  # nothing more comes
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    lines = log.read_text().splitlines()
    # Every consignment handed over; at most the one in hand at the kill twice.
    assert {line.split()[0] for line in lines} == ids
    assert len(lines) - len(ids) <= 1
    assert env.releases() - before == 8  # each key part released once
    for cid in ids:
        assert any((env.root / "carol-in" / cid).iterdir())
    assert "OK stopped" in (env.root / "receive2.log").read_text()


def test_events_follow(env: Agents) -> None:
    files = inputs(env, "followed", 1)
    with (env.root / "follow.out").open("w") as out:
        follower = env.popen(
            "alice", "events", "--follow", "--json", stdout=out, stderr=subprocess.DEVNULL
        )
        sealed = env.as_("alice", "batch", "seal", *files, "--to", "bob", "--out", "f", "--json")
        assert sealed.code == 0, sealed
        (cid,) = [r["consignment_id"] for r in json.loads(sealed.out)]
        deadline = time.monotonic() + 30
        kinds: set[str] = set()
        while {"deposited", "notified"} - kinds:
            assert time.monotonic() < deadline, kinds
            time.sleep(0.1)
            text = (env.root / "follow.out").read_text()
            kinds = {
                e["kind"] for e in map(json.loads, text.splitlines()) if e["consignment_id"] == cid
            }
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(timeout=30) == 0

"""The agents in daily use, through the real `consign` entry point against an
escrow worker on RabbitMQ: failures as JSON, the notice while the escrow keeps
a command waiting, `open ID` straight after `send`, the inbox listing what
waits (`--all` for history), the consignment's file removed once opened,
`consign gc`, and a full disk."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.cli_helpers import CONSIGN, Agents, Result, assert_error, delete_topology, escrow_world

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, amqp_url: str) -> Iterator[Agents]:
    with escrow_world(tmp_path_factory.mktemp("daily"), amqp_url) as agents:
        yield agents


def _error(result: Result) -> dict[str, str]:
    assert result.code == 1, result
    error = json.loads(result.out)["error"]
    assert set(error) == {"kind", "code", "message", "hint"}
    lines = result.err.splitlines()
    assert lines[-2] == f"error: {error['message']}"
    assert lines[-1] == f"hint: {error['hint']}"
    return dict(error)


def _limited(env: Agents, name: str, limit: int, *args: str) -> Result:
    """Run `consign` as `name` with files limited to `limit` bytes: a write
    past it fails with EFBIG, as on a full disk."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [CONSIGN, *args],
        cwd=env.root,
        env=env.environ(name),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=limit_files,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_failures_in_json(env: Agents) -> None:
    refused = env.as_("alice", "status", "0" * 32, "--json")
    error = _error(refused)
    assert (error["kind"], error["code"]) == ("escrow_refused", "unknown_consignment")

    missing = env.as_("bob", "open", "1" * 32, "-o", "nowhere", "--json", "--timeout", "2")
    error = _error(missing)
    assert (error["kind"], error["code"]) == ("agent_error", "not_arrived")
    assert not (env.root / "nowhere").exists()

    not_json = env.as_("alice", "status", "0" * 32)
    assert_error(not_json, "(unknown_consignment)")


def test_waiting_for_an_escrow_that_has_no_worker(env: Agents, amqp_url: str) -> None:
    prefix = f"test-noworker-{uuid.uuid4().hex[:8]}"
    try:
        waited = env.as_(
            "alice", "status", "0" * 32, "--json", "--timeout", "7", CONSIGN_QUEUE_PREFIX=prefix
        )
        error = _error(waited)
        assert (error["kind"], error["code"]) == ("agent_error", "no_worker")
        assert "waiting for escrow 'acme' (no worker has started yet; up to 7 s)" in waited.err
    finally:
        asyncio.run(delete_topology(amqp_url, prefix, ("alice",)))


def test_open_right_after_send_then_the_inbox_lists_what_waits(env: Agents) -> None:
    data = os.urandom(3 << 20)
    (env.root / "fresh.bin").write_bytes(data)
    sealed = env.as_("alice", "seal", "fresh.bin", "--to", "bob", "-o", "fresh.consignment")
    assert sealed.code == 0, sealed
    cid = sealed.out.split("consignment: ")[1].split()[0]
    assert env.as_("alice", "send", cid).code == 0

    opened = env.as_("bob", "open", cid, "-o", "fresh-out")  # no `inbox` first: it waits
    assert opened.code == 0, opened
    assert (env.root / "fresh-out" / "fresh.bin").read_bytes() == data
    received = env.root / "bob-home" / "agents" / "bob" / "received"
    assert not (received / f"{cid}.consignment").exists()  # removed once opened
    assert not [p for p in received.iterdir() if p.name.startswith(".")]

    waiting = json.loads(env.as_("bob", "inbox", "--json").out)
    assert cid not in [r["consignment_id"] for r in waiting["received"]]
    assert cid not in [n["consignment_id"] for n in waiting["notifications"]]
    history = json.loads(env.as_("bob", "inbox", "--all", "--json").out)
    assert (cid, "opened") in [(r["consignment_id"], r["state"]) for r in history["received"]]


def test_the_database_keeps_no_chunk_data_and_gc_reclaims(env: Agents) -> None:
    (env.root / "bulk.bin").write_bytes(os.urandom(4 << 20))
    sealed = env.as_("alice", "seal", "bulk.bin", "--to", "bob", "-o", "bulk.consignment")
    cid = sealed.out.split("consignment: ")[1].split()[0]
    assert env.as_("alice", "send", cid).code == 0
    assert env.as_("bob", "inbox").code == 0
    state = env.root / "bob-home" / "agents" / "bob"
    assert (state / "received" / f"{cid}.consignment").stat().st_size > 4 << 20
    db = sqlite3.connect(state / "agent.db")
    try:
        pages, free, size = (
            db.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_count", "freelist_count", "page_size")
        )
    finally:
        db.close()
    assert pages * size < 1 << 20, "chunk data went through the database"

    # Other tests of this module's world may have left bob consignments too.
    others = [p for p in (state / "received").glob("*.consignment") if cid not in p.name]
    kept = env.as_("bob", "gc", "--json")
    assert kept.code == 0, kept
    assert (state / "received" / f"{cid}.consignment").exists()  # waiting: kept
    gone = env.as_("bob", "gc", "--older-than", "1", "--json")
    assert gone.code == 0, gone
    report = json.loads(gone.out)
    assert report["files_removed"] == 1 + len(others)
    assert report["bytes_removed"] > 4 << 20
    assert not (state / "received" / f"{cid}.consignment").exists()
    db = sqlite3.connect(state / "agent.db")
    try:
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    finally:
        db.close()
    assert free * size < 1 << 20


def test_a_full_disk_is_one_error_and_nothing_half_written(env: Agents) -> None:
    (env.root / "large.bin").write_bytes(os.urandom(2 << 20))
    full = _limited(
        env, "alice", 1 << 20, "seal", "large.bin", "--to", "bob", "-o", "large.consignment",
        "--json",
    )  # fmt: skip
    error = _error(full)
    assert (error["kind"], error["code"]) == ("disk_full", "disk_full")
    assert "Traceback" not in full.err
    assert not (env.root / "large.consignment").exists()
    assert not list(env.root.glob(".consign-partial-*"))

    # bob knows alice's certificate before its disk fills, whichever tests of
    # this world ran first: chunks from a sender not yet looked up wait in the
    # agent's database, and the file size limit that stands in for a full disk
    # is "disk I/O error" to SQLite (a real full disk is SQLITE_FULL, reported
    # as disk_full: tests/broker/test_sqlite.py).
    (env.root / "hello.txt").write_text("hello")
    hello = env.as_("alice", "seal", "hello.txt", "--to", "bob", "-o", "hello.consignment")
    assert env.as_("alice", "send", hello.out.split("consignment: ")[1].split()[0]).code == 0
    assert env.as_("bob", "inbox").code == 0
    sealed = env.as_("alice", "seal", "large.bin", "--to", "bob", "-o", "large.consignment")
    cid = sealed.out.split("consignment: ")[1].split()[0]
    assert env.as_("alice", "send", cid).code == 0
    # bob's disk fills while the consignment arrives: nothing acked is lost
    filling = _limited(env, "bob", 1 << 20, "inbox", "--json")
    error = _error(filling)
    assert error["kind"] == "disk_full", error
    opened = env.as_("bob", "open", cid, "-o", "large-out")  # space again: it all comes
    assert opened.code == 0, opened
    assert (env.root / "large-out" / "large.bin").read_bytes() == (
        env.root / "large.bin"
    ).read_bytes()

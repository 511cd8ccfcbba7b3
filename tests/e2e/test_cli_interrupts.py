"""Ctrl-C (SIGINT) and SIGTERM at many points of the agent commands, through
the real `consign` entry point against an escrow worker on RabbitMQ: each ends
promptly with exit 130 or 143 and one line on stderr, leaves no partial output
and no temporary file, and the same command then runs to the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.consignment import inspect
from tests.cli_helpers import CONSIGN, Agents, escrow_world

pytestmark = pytest.mark.rabbitmq

#: Seconds from the signal to the end of the process: the command's own
#: deadline is 0.8 s; the rest is slack for a machine shared by many processes.
ENDS_WITHIN = 3.0
#: Where the signal lands, in seconds after the command's handlers are in.
POINTS = (0.0, 0.4, 1.2)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, amqp_url: str) -> Iterator[Agents]:
    with escrow_world(tmp_path_factory.mktemp("interrupts"), amqp_url) as agents:
        yield agents


def _handlers_in(pid: int) -> bool:
    """Whether the process catches SIGTERM yet (only `consign` makes it do so)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # it ended already
    caught = int(next(x for x in status.splitlines() if x.startswith("SigCgt:")).split()[1], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def _interrupt(
    env: Agents, name: str, args: tuple[str, ...], delay: float, sig: signal.Signals
) -> tuple[int, str, str]:
    proc = subprocess.Popen(
        [CONSIGN, *args],
        cwd=env.root,
        env=env.environ(name),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not _handlers_in(proc.pid):
        time.sleep(0.005)
    time.sleep(delay)
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    if proc.returncode != 0:  # 0: it had finished before the signal
        assert proc.returncode == 128 + sig, (proc.returncode, out, err)
        assert err == f"error: interrupted by {sig.name}; nothing was left half-written\n"
        if "--json" in args:
            error = json.loads(out)["error"]
            assert (error["kind"], error["code"]) == ("interrupted", "interrupted")
        else:
            assert out == ""
        assert took < ENDS_WITHIN, took
    assert "Traceback" not in err
    assert not list(env.root.rglob(".consign-partial-*")), "a temporary file was left"
    return proc.returncode, out, err


def _points(env: Agents, name: str, *args: str) -> Iterator[int]:
    """Each point in turn, lazily: the caller checks what one interrupt left
    before the next run (a later run that completes would hide it)."""
    signals = (signal.SIGINT, signal.SIGTERM)
    for i, delay in enumerate(POINTS):
        yield _interrupt(env, name, args, delay, signals[i % 2])[0]


def test_every_agent_command_ends_cleanly_when_interrupted(env: Agents) -> None:
    data = os.urandom(12 << 20)
    (env.root / "big.bin").write_bytes(data)
    target = env.root / "big.consignment"

    # seal: an interrupted seal leaves no consignment (and deposits nothing usable)
    for code in _points(env, "alice", "seal", "big.bin", "--to", "bob", "-o", "big.consignment"):
        if code != 0 and target.exists():
            # The signal came once the seal was whole, deposited and recorded
            # (while the agent closed): nothing is half-written, the escrow has it.
            info = inspect(target)
            status = env.as_("alice", "status", info.consignment_id)
            assert status.code == 0, (code, status)
        target.unlink(missing_ok=True)
    sealed = env.as_("alice", "seal", "big.bin", "--to", "bob", "-o", "big.consignment", "--json")
    assert sealed.code == 0, sealed
    cid = json.loads(sealed.out)["consignment_id"]

    # send: chunks sent twice are kept once by the receiver
    list(_points(env, "alice", "send", cid))
    assert env.as_("alice", "send", cid).code == 0

    # inbox: what was stored before the signal is kept, the rest comes back
    list(_points(env, "bob", "inbox"))
    inbox = env.as_("bob", "inbox", "--json")
    assert inbox.code == 0, inbox
    received = json.loads(inbox.out)["received"]
    assert [(r["consignment_id"], r["state"]) for r in received] == [(cid, "complete")]

    # open: nothing lands in the output directory unless the whole open succeeded
    out = env.root / "opened"
    # --keep: an open that completes before its signal leaves the consignment
    # for the one after the loop.
    for code in _points(env, "bob", "open", cid, "-o", "opened", "--keep"):
        if code != 0:
            assert not (out / "big.bin").exists()
        elif (out / "big.bin").exists():
            (out / "big.bin").unlink()
    opened = env.as_("bob", "open", cid, "-o", "opened")
    assert opened.code == 0, opened
    assert (out / "big.bin").read_bytes() == data

    # --json: the interrupt is a JSON object on stdout too
    code, _, _ = _interrupt(env, "alice", ("status", cid, "--json"), 0.0, signal.SIGINT)
    assert code in (0, 130)

"""kill -9 of a sender or receiver agent (`consign` in a process of its own) in
the middle of a batch, a send or an open, then the same command run again
(tests/reliability/test_agent_kills.py runs the short version,
`bench/reliability.py agent-kill` the long one).

The pass criteria, counted in a `Tally`: every consignment whose deposit the
escrow confirmed is kept and reaches its receiver (lost: one that is not); no
deposit made twice, no key part released more than once per consignment, no
consignment opened twice (duplicated); the command run again succeeds, and no
file in the output directory is ever half-written: a visible file is the whole
plaintext, or absent (other failures).

A kill lands where a probe says: a number of consignment files written, the
escrow's count of deposits or releases reached, chunks waiting in the
receiver's inbox, opened directories present. The probes read the state the
command changes (files, the escrow's store, RabbitMQ); a kill never waits on a
clock. The real RabbitMQ and database servers are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika

from broker.pki.identity import dump_identity
from client.consignment import inspect
from escrow_worker.state.location import Location
from tests.broker.pki_helpers import ESCROW_PASS, LOG_N
from tests.cli_helpers import CONSIGN, PASSWORDS, delete_topology
from tests.escrow_worker.helpers import make_escrow

__all__ = ["AgentWorld", "Tally", "agent_world", "batch_round", "single_round"]

NAMES = ("alice", "bob")
#: A probe is read this often while the command runs.
_POLL = 0.01

Probe = Callable[[], Awaitable[bool]]


@dataclass
class Run:
    code: int | None
    out: str
    err: str

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL


@dataclass
class Tally:
    """What the kills did: how many landed mid-command, and every criterion broken."""

    kills: int = 0
    #: Commands that ended by themselves before their probe fired (no kill).
    finished_first: int = 0
    #: Consignments placed whole by a killed open before it recorded them, so
    #: placed again (the same bytes) by the run again: reported once.
    reopened: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    notes: list[str] = field(default_factory=list)

    def fail(self, what: str, kind: str, n: int = 1) -> None:
        if n <= 0:
            return
        setattr(self, kind, getattr(self, kind) + n)
        self.notes.append(f"{kind}: {what}")

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicated == self.wrong == 0


@dataclass
class AgentWorld:
    root: Path
    location: Location
    amqp_url: str
    prefix: str
    env: dict[str, str]
    _store: Any = None
    _amqp: aio_pika.abc.AbstractConnection | None = None

    def environ(self, name: str | None) -> dict[str, str]:
        env = dict(self.env)
        if name is not None:
            env["CONSIGN_HOME"] = str(self.root / f"{name}-home")
            env["CONSIGN_IDENTITY_PASSPHRASE"] = PASSWORDS[name]
        return env

    async def consign(
        self, name: str | None, *args: str, kill: Probe | None = None, wait: float = 120.0
    ) -> Run:
        """`consign ARGS` as `name`; with `kill`, SIGKILL it as soon as the probe
        holds (if it has not ended by then)."""
        proc = await asyncio.create_subprocess_exec(
            CONSIGN,
            *args,
            cwd=self.root,
            env=self.environ(name),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        talk = asyncio.create_task(proc.communicate())
        try:
            async with asyncio.timeout(wait):
                if kill is not None:
                    while not talk.done():
                        if await kill():
                            with contextlib.suppress(ProcessLookupError):
                                proc.kill()
                            break
                        await asyncio.sleep(_POLL)
                out, err = await talk
        except TimeoutError:
            proc.kill()
            out, err = await talk
            raise AssertionError(f"consign {' '.join(args)} ran over {wait} s: {err!r}") from None
        return Run(proc.returncode, out.decode(), err.decode())

    async def count(self, table: str) -> int:
        if self._store is None:
            self._store = await self.location.open_store()
        sql = f"SELECT COUNT(*) FROM {table}"  # noqa: S608 (a table name of ours)
        return int(await self._store.run(lambda tx: tx.fetchval(sql)))

    async def inbox_depth(self, name: str) -> int:
        """Messages ready in `name`'s inbox queue (0 before it exists)."""
        if self._amqp is None:
            self._amqp = await aio_pika.connect(self.amqp_url)
        channel = await self._amqp.channel()
        try:
            queue = await channel.declare_queue(f"{self.prefix}.inbox.{name}", passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return 0  # not declared yet (the broker closed the channel)
        count = int(queue.declaration_result.message_count or 0)
        await channel.close()
        return count

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
        if self._amqp is not None:
            await self._amqp.close()


@contextlib.asynccontextmanager
async def agent_world(root: Path, location: Location, amqp_url: str) -> AsyncIterator[AgentWorld]:
    """An escrow "acme" at `location` with alice and bob registered (their
    homes under `root`; cheap scrypt costs: the keys live for seconds), and
    `consign escrow worker` serving it in a process of its own, on a queue
    prefix of its own (deleted afterwards)."""
    prefix = f"test-agentkill-{uuid.uuid4().hex[:10]}"
    setup = await make_escrow(location, NAMES, now=datetime.now(UTC))
    for name in NAMES:
        home = root / f"{name}-home"
        home.mkdir()
        sealed = dump_identity(setup[name], PASSWORDS[name].encode(), log_n=LOG_N)
        (home / f"{name}.identity").write_bytes(sealed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
    if location.database is not None:
        env["CONSIGN_ESCROW_DB"] = location.database
    else:
        env["CONSIGN_ESCROW_DIR"] = str(location.directory)
    env |= {
        "CONSIGN_ESCROW_PASSPHRASE": ESCROW_PASS.decode(),
        "CONSIGN_AMQP_URL": amqp_url,
        "CONSIGN_QUEUE_PREFIX": prefix,
    }
    world = AgentWorld(root, location, amqp_url, prefix, env)
    log = root / "worker.log"
    with log.open("w") as sink:
        worker = await asyncio.create_subprocess_exec(
            CONSIGN, "escrow", "worker", cwd=root, env=world.environ(None), stderr=sink
        )
    try:
        async with asyncio.timeout(60):
            while "serving" not in log.read_text():
                assert worker.returncode is None, log.read_text()
                await asyncio.sleep(0.02)
        yield world
    finally:
        if worker.returncode is None:
            worker.terminate()
            await worker.wait()
        await world.close()
        await delete_topology(amqp_url, prefix, NAMES)


# -- probes --------------------------------------------------------------------------


def files_in(directory: Path, pattern: str, at_least: int) -> Probe:
    def count() -> int:
        return len(list(directory.glob(pattern))) if directory.is_dir() else 0

    async def probe() -> bool:
        return await asyncio.to_thread(count) >= at_least

    return probe


def escrow_reached(world: AgentWorld, table: str, at_least: int) -> Probe:
    async def probe() -> bool:
        return await world.count(table) >= at_least

    return probe


def inbox_reached(world: AgentWorld, name: str, at_least: int) -> Probe:
    async def probe() -> bool:
        return await world.inbox_depth(name) >= at_least

    return probe


# -- the checks ----------------------------------------------------------------------


def _visible(directory: Path) -> list[Path]:
    """Every file below `directory` a user would take for output (not the
    hidden staging directories an interrupted open may leave)."""
    if not directory.is_dir():
        return []
    return [
        p
        for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    ]


def _check_opened(tally: Tally, into: Path, expected: dict[str, bytes], when: str) -> None:
    """Every visible file under `into` is a whole plaintext of `expected` (by
    file name); none half-written."""
    for path in _visible(into):
        want = expected.get(path.name)
        if want is None or path.read_bytes() != want:
            tally.fail(f"{path} {when} is not a whole plaintext", "wrong")


def _json(run: Run) -> Any:
    try:
        return json.loads(run.out)
    except ValueError:
        return None


async def batch_round(
    world: AgentWorld,
    tally: Tally,
    tag: str,
    rnd: random.Random,
    *,
    n: int = 4,
    seal_kill: str | None = None,
    open_kill: str | None = None,
) -> None:
    """alice `batch seal ... --send` of `n` files to bob, killed at `seal_kill`
    ("sealed": some files written; "deposited": the escrow holds them all;
    "sending": chunks in bob's inbox; None: at random among these), then run
    again; bob `batch open`, killed at `open_kill` ("released": some key parts
    released; "opened": opening under way into some target directories; None:
    at random), then run again."""
    src = world.root / f"in-{tag}"
    src.mkdir()
    plain: dict[str, bytes] = {}
    for i in range(n):
        name = f"{tag}-doc{i}.bin"
        plain[name] = rnd.randbytes(rnd.randint(1000, 300_000))
        (src / name).write_bytes(plain[name])
    deposits0, releases0 = await world.count("deposits"), await world.count("releases")
    out = world.root / f"sealed-{tag}"
    seal_kill = seal_kill or rnd.choice(["sealed", "deposited", "sending"])
    probe = {
        "sealed": files_in(out, "*.consignment", rnd.randint(1, n - 1)),
        "deposited": escrow_reached(world, "deposits", deposits0 + n),
        "sending": inbox_reached(world, "bob", rnd.randint(1, n)),
    }[seal_kill]
    files = [str(src / name) for name in plain]
    command = ("batch", "seal", *files, "--to", "bob", "--out", str(out), "--send", "--json")
    first = await world.consign("alice", *command, kill=probe)
    _counted(tally, first, f"batch seal ({seal_kill})")
    again = await world.consign("alice", *command)
    results = _json(again)
    if again.code != 0 or not isinstance(results, list) or not all(r["ok"] for r in results):
        tally.fail(f"batch seal run again after a kill at {seal_kill}: {again}", "wrong")
        return
    ids = {r["consignment_id"] for r in results}
    deposits = await world.count("deposits") - deposits0
    tally.fail(f"{n - deposits} of {n} deposits missing ({seal_kill})", "lost", n - deposits)
    tally.fail(f"{deposits - n} deposits too many ({seal_kill})", "duplicated", deposits - n)
    held = {inspect(p).consignment_id for p in out.glob("*.consignment")}
    if len(ids) != n or held != ids or len(list(out.iterdir())) != n:
        tally.fail(
            f"{len(ids)} ids, files {sorted(os.listdir(out))} for {n} ({seal_kill})", "wrong"
        )

    into = world.root / f"opened-{tag}"
    open_kill = open_kill or rnd.choice(["released", "opened"])
    probe = {
        "released": escrow_reached(world, "releases", releases0 + rnd.randint(1, n)),
        "opened": files_in(into, "*", rnd.randint(1, n)),
    }[open_kill]
    command = ("batch", "open", "--into", str(into), "--wait", "0.3", "--json")
    first = await world.consign("bob", *command, kill=probe)
    _counted(tally, first, f"batch open ({open_kill})")
    _check_opened(tally, into, plain, f"after a kill at {open_kill}")
    # Opened whole before the kill: a directory holding a placed file (placing
    # is all or nothing; a directory with only a staging one was in progress).
    before = {p.relative_to(into).parts[0] for p in _visible(into)}
    again = await world.consign("bob", *command)
    results = _json(again)
    if again.code != 0 or not isinstance(results, list) or not all(r["ok"] for r in results):
        tally.fail(f"batch open run again after a kill at {open_kill}: {again}", "wrong")
        return
    now = {r["consignment_id"] for r in results}
    reported = {r["consignment_id"] for r in _json(first)} if first.code == 0 else set()
    # Reported opened by two commands: opened twice. (A killed command reported
    # nothing: one it placed but had not recorded is opened again, with the
    # stored release and the same bytes over its own files, and reported once.)
    twice = now & reported
    tally.fail(
        f"opened twice after a kill at {open_kill}: {sorted(twice)}", "duplicated", len(twice)
    )
    tally.reopened += len(now & before) if first.killed else 0
    now |= reported
    missing = ids - (now | before)
    tally.fail(f"never opened ({open_kill}): {sorted(missing)}", "lost", len(missing))
    _check_opened(tally, into, plain, "after the run again")
    got = sorted(p.name for p in _visible(into))
    if got != sorted(plain):
        tally.fail(f"{into} holds {got}, not {sorted(plain)} ({open_kill})", "wrong")
    releases = await world.count("releases") - releases0
    tally.fail(f"{releases - n} key parts released twice ({open_kill})", "duplicated", releases - n)
    _check_staging(tally, into)


def _counted(tally: Tally, run: Run, what: str) -> None:
    if run.killed:
        tally.kills += 1
    elif run.code == 0:
        tally.finished_first += 1
    else:
        tally.fail(f"{what} failed before its kill: {run}", "wrong")


def _check_staging(tally: Tally, into: Path) -> None:
    """The run again leaves no staging directory behind (an interrupted
    open's, or its own)."""
    left = [p for p in into.rglob(".consign-partial-*")] if into.is_dir() else []
    tally.fail(f"staging left in {into}: {left}", "wrong", len(left))


async def single_round(
    world: AgentWorld,
    tally: Tally,
    tag: str,
    rnd: random.Random,
    *,
    size: int = 2 << 20,
) -> None:
    """alice seals one large file for bob and `send`s it, killed once some of
    its chunks are in bob's inbox, then sends it again; bob fetches his inbox
    and `open`s it, killed once the escrow released its key part (mid-decrypt),
    then opens it again."""
    data = rnd.randbytes(size)
    source = world.root / f"{tag}.bin"
    source.write_bytes(data)
    target = world.root / f"{tag}.consignment"
    sealed = await world.consign(
        "alice", "seal", str(source), "--to", "bob", "-o", str(target), "--json"
    )
    assert sealed.code == 0, sealed
    cid = json.loads(sealed.out)["consignment_id"]
    chunks = max(2, size // (512 << 10))
    first = await world.consign(
        "alice", "send", cid, kill=inbox_reached(world, "bob", rnd.randint(1, chunks - 1))
    )
    _counted(tally, first, "send")
    again = await world.consign("alice", "send", cid)
    if again.code != 0:
        tally.fail(f"send run again: {again}", "wrong")
        return
    inbox = await world.consign("bob", "inbox", "--json")
    states = {
        r["consignment_id"]: r["state"] for r in json.loads(inbox.out or "{}").get("received", [])
    }
    if states.get(cid) != "complete":
        tally.fail(f"{cid} arrived {states.get(cid)} after a killed send", "lost")
        return
    releases0 = await world.count("releases")
    out = world.root / f"opened-{tag}"
    first = await world.consign(
        "bob", "open", cid, "-o", str(out), kill=escrow_reached(world, "releases", releases0 + 1)
    )
    _counted(tally, first, "open")
    _check_opened(tally, out, {source.name: data}, "after a kill mid-open")
    if first.code != 0:
        again = await world.consign("bob", "open", cid, "-o", str(out))
        if again.code != 0:
            tally.fail(f"open run again: {again}", "wrong")
            return
    if [p.name for p in _visible(out)] != [source.name]:
        tally.fail(f"{out} holds {_visible(out)}", "lost")
    _check_opened(tally, out, {source.name: data}, "after the run again")
    releases = await world.count("releases") - releases0
    tally.fail(f"{releases - 1} key parts released twice (open)", "duplicated", releases - 1)
    _check_staging(tally, out)

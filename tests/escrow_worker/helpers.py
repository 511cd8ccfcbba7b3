"""Helpers for the escrow worker tests: an escrow with registered users, a
settable clock, signed requests, a minimal agent that talks to a running worker,
and sealing real consignments (the client is used by the tests only)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from pydantic import BaseModel

from broker import (
    ESCROW,
    ControlAttributes,
    Deposit,
    Message,
    Mode,
    SignedEnvelope,
    Transport,
    new_envelope,
    seal_deposit,
    sign_envelope,
    verify_envelope_signature,
)
from broker.canonical import parse_canonical_json
from broker.messages import DepositBody, KeyRequestBody, MessageType, parse_body
from broker.pki.identity import Identity
from client import Recipient, Sender, Source, seal
from escrow_worker import EscrowService, EscrowWorker, init_escrow, open_escrow, register_user
from escrow_worker.ca.authority import load_ca, unseal_private_key
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location
from escrow_worker.state.masterkey import MasterKeyring, read_keyring
from tests.broker.pki_helpers import ESCROW_PASS, LOG_N, NOW
from tests.support import TEST_DELIVERY_LIMIT, TransportFactory

ESCROW_NAME = "acme"
USERS = ("alice", "bob", "carol", "mallory")
WAIT = 10.0
T = TypeVar("T")


class Clock:
    """The escrow's injected clock; tests move it."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @property
    def t(self) -> int:
        return int(self.now.timestamp())


@dataclass
class EscrowSetup:
    location: Location
    clock: Clock
    users: dict[str, Identity]
    encryption_key: X25519PublicKey
    signing_key: Ed25519PublicKey
    name: str = ESCROW_NAME

    def __getitem__(self, name: str) -> Identity:
        return self.users[name]

    @property
    def directory(self) -> Path:
        """The escrow directory (SQLite escrows only)."""
        assert self.location.directory is not None, "a database escrow has no directory"
        return self.location.directory

    async def open_service(self) -> EscrowService:
        return await EscrowService.open(self.location, ESCROW_PASS, clock=self.clock)

    async def run(self, job: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        """One job on a store of its own (beside any running service's)."""
        store = await self.location.open_store()
        try:
            return await store.run(job)
        finally:
            await store.close()


async def make_escrow(
    where: Location | Path, users: tuple[str, ...] = USERS, *, now: datetime = NOW
) -> EscrowSetup:
    """An escrow whose certificates were issued a day before `now`, with `users`;
    its clock starts at `now`. `where`: a directory (SQLite) or a Location."""
    location = Location.of(where)
    issued = now - timedelta(days=1)
    certs = await init_escrow(location, ESCROW_NAME, ESCROW_PASS, now=issued, log_n=LOG_N)
    identities: dict[str, Identity] = {}
    async with open_escrow(location) as escrow:
        ca = await load_ca(escrow, ESCROW_PASS)
        for name in users:
            identities[name] = await register_user(
                escrow, ca, name, groups=(), now=issued, save=lambda i: None
            )
    encryption, signing = certs.encryption.public_key(), certs.signing.public_key()
    assert isinstance(encryption, X25519PublicKey)
    assert isinstance(signing, Ed25519PublicKey)
    return EscrowSetup(location, Clock(now), identities, encryption, signing)


def request(
    identity: Identity,
    type_: str,
    body: dict[str, Any] | BaseModel,
    *,
    now: datetime = NOW,
    audience: str = ESCROW_NAME,
    reply_to: str | None = None,
    request_id: str | None = None,
    lifetime: timedelta = timedelta(minutes=5),
    version: int = 1,
    key: Ed25519PrivateKey | None = None,
    signer: str | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """The wire bytes of a request signed by `identity`."""
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    envelope = new_envelope(
        type=type_,
        version=version,
        body=body,
        audience=audience,
        signer=signer if signer is not None else identity.signer,
        now=now,
        reply_to=identity.name if reply_to is None else reply_to,
        lifetime=lifetime,
        request_id=request_id,
        nonce=nonce,
    )
    return sign_envelope(envelope, key or identity.signing_key).to_wire()


def request_id_of(data: bytes) -> str:
    return SignedEnvelope.from_wire(data).unverified().request_id


def seal_for(
    sender: Identity,
    receivers: list[Identity],
    *,
    mode: Mode = Mode.SPLIT,
    attributes: ControlAttributes | None = None,
    escrow: str = ESCROW_NAME,
    data: bytes = b"the quarterly figures",
) -> tuple[bytes, Deposit]:
    """A real consignment (one file) and its deposit."""
    out = io.BytesIO()
    deposit = seal(
        [Source("figures.txt", io.BytesIO(data), len(data))],
        out,
        sender=Sender(sender.name, sender.signing_key),
        receivers=[Recipient(r.name, r.encryption_key.public_key()) for r in receivers],
        escrow=escrow,
        mode=mode,
        attributes=attributes,
    )
    return out.getvalue(), deposit


def deposit_body(setup: EscrowSetup, deposit: Deposit) -> DepositBody:
    return DepositBody(
        consignment_id=deposit.consignment_id,
        sealed_deposit=seal_deposit(deposit, setup.encryption_key),
    )


def key_request_body(deposit: Deposit, digest: str | None = None) -> KeyRequestBody:
    return KeyRequestBody(
        consignment_id=deposit.consignment_id,
        consignment_digest=digest if digest is not None else deposit.consignment_digest,
    )


@dataclass(frozen=True)
class Received:
    """A message from the escrow, its signature checked."""

    raw: bytes
    message_id: str
    type: str
    body: Any
    audience: str

    @property
    def code(self) -> str | None:
        return getattr(self.body, "code", None)


def verify(setup: EscrowSetup, raw: bytes) -> Received:
    envelope = verify_envelope_signature(SignedEnvelope.from_wire(raw), setup.signing_key)
    body = parse_body(envelope.type, envelope.version, envelope.body)
    return Received(raw, envelope.request_id, envelope.type, body, envelope.audience)


@dataclass
class Agent:
    """Just enough of an agent: publish signed bytes, read and verify its inbox."""

    setup: EscrowSetup
    identity: Identity
    transport: Transport
    seen: list[Received] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.identity.name

    async def start(self) -> Agent:
        await self.transport.declare_inbox(self.name)
        return self

    async def send(self, data: bytes) -> str:
        """Publish request bytes to the escrow work queue; return the request id."""
        try:
            request_id = request_id_of(data)
        except Exception:
            request_id = "unparseable-request"
        message = Message(body=data, message_id=request_id, type="request.v1")
        await self.transport.publish(ESCROW, message)
        return request_id

    async def receive(self, wait: float = WAIT) -> Received | None:
        delivery = await self.transport.get(
            self.transport.config.inbox_queue(self.name), timeout=wait
        )
        if delivery is None:
            return None
        await delivery.ack()
        received = verify(self.setup, delivery.body)
        assert received.audience == self.name
        self.seen.append(received)
        return received

    async def reply_to(self, request_id: str, wait: float = WAIT) -> Received:
        """Read the inbox until the reply to `request_id` comes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        for earlier in self.seen:
            if getattr(earlier.body, "in_reply_to", None) == request_id:
                self.seen.remove(earlier)
                return earlier
        while (left := deadline - loop.time()) > 0:
            received = await self.receive(left)
            if received is None:
                break
            if getattr(received.body, "in_reply_to", None) == request_id:
                self.seen.remove(received)
                return received
        raise AssertionError(f"no reply to {request_id} within {wait} s")

    async def ask(self, data: bytes, wait: float = WAIT) -> Received:
        return await self.reply_to(await self.send(data), wait)

    async def drain(self, quiet: float = 0.3) -> list[Received]:
        """Everything that arrives until nothing comes for `quiet` seconds."""
        while await self.receive(quiet) is not None:
            pass
        found, self.seen = self.seen, []
        return found

    def events(self, kind: str | None = None) -> list[Any]:
        return [
            r.body
            for r in self.seen
            if r.type == MessageType.EVENT and (kind is None or r.body.kind == kind)
        ]


@contextlib.asynccontextmanager
async def running_worker(
    service: EscrowService, transport: Transport, *, prefetch: int = 32
) -> AsyncIterator[EscrowWorker]:
    """A worker serving in the background until the block ends."""
    worker = EscrowWorker(service, transport, prefetch=prefetch)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    # The queues exist once run() declared them; wait for that before publishing.
    await _wait_for_queue(transport)
    try:
        yield worker
    finally:
        stop.set()
        async with asyncio.timeout(WAIT):
            await task


async def _wait_for_queue(transport: Transport) -> None:
    for _ in range(200):
        try:
            await transport.declare_escrow_queues()
            return
        except Exception:
            await asyncio.sleep(0.02)


async def eventually(check: Callable[[], Awaitable[T]], expected: T, wait: float = WAIT) -> None:
    """Poll `check()` until it returns `expected`, at most `wait` seconds."""
    value = None
    for _ in range(int(wait / 0.02)):
        value = await check()
        if value == expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still {value!r}, not {expected!r}, after {wait} s")


async def table(tx: Tx, sql: str, *args: object) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await tx.fetchall(sql, args)]


async def _state(tx: Tx) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "deposits": await table(tx, "SELECT * FROM deposits ORDER BY consignment_id"),
        "receivers": await table(
            tx,
            "SELECT consignment_id, receiver, notified_at, releases, revoked_at"
            " FROM deposit_receivers ORDER BY consignment_id, receiver",
        ),
        "releases": await table(tx, "SELECT * FROM releases ORDER BY request_id"),
    }


async def state(setup: EscrowSetup) -> dict[str, list[tuple[Any, ...]]]:
    """The escrow's decision state: deposits, receivers (without the last denial,
    which a refusal records), releases. A refusal must leave it as it was."""
    return await setup.run(_state)


async def full_snapshot(setup: EscrowSetup) -> dict[str, list[tuple[object, ...]]]:
    from tests.broker.pki_helpers import snapshot

    return await setup.run(snapshot)


async def escrow_encryption_key(setup: EscrowSetup) -> X25519PrivateKey:
    """The escrow's own X25519 private key, unsealed (what its operator holds)."""
    async with open_escrow(setup.location) as escrow:
        key = unseal_private_key(await escrow.keystore.require("encryption.key"), ESCROW_PASS)
    assert isinstance(key, X25519PrivateKey)
    return key


async def escrow_keyring(setup: EscrowSetup) -> MasterKeyring:
    async with open_escrow(setup.location) as escrow:
        return await read_keyring(escrow.keystore, ESCROW_PASS)


async def everything_held(setup: EscrowSetup) -> bytes:
    """Every byte the escrow keeps: its files (SQLite escrows) and every value in
    every row of its database (either backend)."""
    held: list[bytes] = []
    if setup.location.directory is not None:
        held += [p.read_bytes() for p in sorted(setup.location.directory.rglob("*")) if p.is_file()]
    for rows in (await full_snapshot(setup)).values():
        for row in rows:
            for value in row:
                if isinstance(value, bytes | bytearray | memoryview):
                    held.append(bytes(value))
                elif isinstance(value, str):
                    held.append(value.encode())
    return b"\n".join(held)


def wire_json(data: bytes) -> Any:
    return parse_canonical_json(data)


# -- used by several escrow test modules ------------------------------------------

CONSIGN = str(Path(sys.executable).parent / "consign")


def environment(setup: EscrowSetup, factory: TransportFactory, amqp_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSIGN_")}
    if setup.location.database is not None:  # nothing on disk: the URL is enough
        env["CONSIGN_ESCROW_DB"] = setup.location.database
    else:
        env["CONSIGN_ESCROW_DIR"] = str(setup.directory)
    env.update(
        CONSIGN_ESCROW_PASSPHRASE=ESCROW_PASS.decode(),
        CONSIGN_AMQP_URL=amqp_url,
        CONSIGN_QUEUE_PREFIX=factory.prefix,
        CONSIGN_DELIVERY_LIMIT=str(TEST_DELIVERY_LIMIT),
    )
    return env


async def releases(setup: EscrowSetup) -> tuple[int, int]:
    """(rows in `releases`, the sum of the receivers' release counts)."""

    async def job(tx: Tx) -> tuple[int, int]:
        rows = await tx.fetchval("SELECT COUNT(*) FROM releases")
        counted = await tx.fetchval("SELECT SUM(releases) FROM deposit_receivers")
        return int(rows), int(counted or 0)

    return await setup.run(job)


async def replies(agent: Agent, count: int) -> dict[str, list[bytes]]:
    """Read `count` replies from the inbox, by the request id they answer."""
    found: dict[str, list[bytes]] = collections.defaultdict(list)
    got = 0
    while got < count:
        received = await agent.receive(WAIT)
        assert received is not None, f"only {got} of {count} replies came"
        in_reply_to = getattr(received.body, "in_reply_to", None)
        if in_reply_to is not None:
            found[in_reply_to].append(received.raw)
            got += 1
    return found

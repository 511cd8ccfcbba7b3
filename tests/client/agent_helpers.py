"""Helpers for the agent tests: a throwaway escrow with registered parties, the
real escrow worker that a test can stop and start again, and the escrow's keys
for forging replies.

`Forger` signs messages with the escrow's real key (or anyone's), so a test can
put into an agent's inbox what a broken or hostile escrow would send.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from broker import (
    Inbox,
    Message,
    Transport,
    new_envelope,
    sign_envelope,
)
from broker.messages import (
    MessageType,
)
from broker.pki.identity import Identity
from broker.pki.profile import fingerprint, load_certificate
from escrow_worker import EscrowService, EscrowWorker, init_escrow, open_escrow, register_user
from escrow_worker.ca.authority import load_ca, unseal_private_key

ESCROW_NAME = "acme"
ESCROW_PASS = b"escrow passphrase"
LOG_N = 14


@dataclass
class World:
    """An initialised escrow directory and registered identities."""

    escrow_dir: Path
    identities: dict[str, Identity]

    def forger(self) -> Forger:
        key = unseal_private_key((self.escrow_dir / "signing.key").read_bytes(), ESCROW_PASS)
        assert isinstance(key, Ed25519PrivateKey)
        cert = load_certificate((self.escrow_dir / "signing.pem").read_bytes())
        return Forger(key, fingerprint(cert))


async def make_world(root: Path, names: tuple[str, ...] = ("alice", "bob", "carol")) -> World:
    escrow_dir = root / "escrow"
    now = datetime.now(UTC) - timedelta(minutes=5)
    await init_escrow(escrow_dir, ESCROW_NAME, ESCROW_PASS, now=now, log_n=LOG_N)
    identities: dict[str, Identity] = {}
    async with open_escrow(escrow_dir) as esc:
        ca = await load_ca(esc, ESCROW_PASS)
        for name in names:
            identities[name] = await register_user(
                esc, ca, name, groups=(), now=now, save=lambda _identity: None
            )
    return World(escrow_dir, identities)


@dataclass
class Forger:
    """Signs envelopes as the escrow (or with any key given)."""

    key: Ed25519PrivateKey
    signer: str

    def wire(
        self,
        type: MessageType,
        body: BaseModel,
        *,
        audience: str,
        key: Ed25519PrivateKey | None = None,
        signer: str | None = None,
    ) -> bytes:
        envelope = new_envelope(
            type=type.value,
            body=body.model_dump(mode="json"),
            audience=audience,
            signer=signer or self.signer,
            now=datetime.now(UTC),
        )
        return sign_envelope(envelope, key or self.key).to_wire()

    async def send(
        self,
        transport: Transport,
        to: str,
        type: MessageType,
        body: BaseModel,
        *,
        correlation_id: str | None = None,
        **kw: Any,
    ) -> None:
        wire = self.wire(type, body, audience=to, **kw)
        await transport.publish(
            Inbox(to),
            Message(
                body=wire,
                message_id=uuid.uuid4().hex,
                type=f"{type}.v1",
                correlation_id=correlation_id,
            ),
        )


class WorkerRunner:
    """The real escrow worker for a `World`, which a test can stop and start
    again (requests wait in the queue meanwhile)."""

    def __init__(self, world: World, transport: Transport) -> None:
        self.world = world
        self.transport = transport
        self.service: EscrowService | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WorkerRunner:
        self.service = await EscrowService.open(self.world.escrow_dir, ESCROW_PASS)
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        if self.service is not None:
            await self.service.close()

    async def start(self) -> None:
        assert self.service is not None
        assert self._task is None
        self._stop = asyncio.Event()
        worker = EscrowWorker(self.service, self.transport)
        self._task = asyncio.create_task(worker.run(self._stop))
        await asyncio.sleep(0)

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None

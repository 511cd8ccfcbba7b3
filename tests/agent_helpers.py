"""Helpers for the agent tests: a throwaway escrow with registered parties, the
escrow's keys for forging replies, and a scripted stand-in escrow.

`Forger` signs messages with the escrow's real key (or anyone's), so a test can
put into an agent's inbox what a broken or hostile escrow would send.
`ScriptedEscrow` answers requests from memory the way docs/protocol.md says,
with hooks to drop or alter replies: it tests the agents' side of the protocol
alone; the end-to-end tests run the real `escrow_worker.EscrowWorker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel

from broker import (
    Inbox,
    Message,
    Transport,
    new_envelope,
    open_deposit,
    seal_key_part,
    sign_envelope,
)
from broker.deposit import Deposit, Mode
from broker.messages import (
    DepositBody,
    DepositReceiptBody,
    ErrorBody,
    ErrorCode,
    EventBody,
    EventKind,
    KeyReleaseBody,
    KeyRequestBody,
    LookupBody,
    LookupReplyBody,
    MessageType,
    NotifyBody,
    ReceiverStatus,
    RevokeBody,
    RevokeReplyBody,
    StatusBody,
    StatusReplyBody,
    parse_body,
)
from escrow_worker import (
    EscrowService,
    EscrowWorker,
    Identity,
    Role,
    authenticate_request,
    fingerprint,
    init_escrow,
    load_ca,
    load_escrow_key,
    open_escrow,
    register_user,
)
from escrow_worker._ca import read_certificate
from escrow_worker._directory import current_crl_der, get_user, select_current

ESCROW_NAME = "acme"
ESCROW_PASS = b"escrow passphrase"
LOG_N = 14


@dataclass
class World:
    """An initialised escrow directory and registered identities."""

    escrow_dir: Path
    identities: dict[str, Identity]

    def forger(self) -> Forger:
        key = load_escrow_key(self.escrow_dir, Role.SIGNING, ESCROW_PASS)
        assert isinstance(key, Ed25519PrivateKey)
        cert = read_certificate(self.escrow_dir / "signing.pem")
        return Forger(key, fingerprint(cert))


async def make_world(root: Path, names: tuple[str, ...] = ("alice", "bob", "carol")) -> World:
    escrow_dir = root / "escrow"
    now = datetime.now(UTC) - timedelta(minutes=5)
    await init_escrow(escrow_dir, ESCROW_NAME, ESCROW_PASS, now=now, log_n=LOG_N)
    ca = load_ca(escrow_dir, ESCROW_PASS)
    identities: dict[str, Identity] = {}
    async with open_escrow(escrow_dir) as esc:
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


@dataclass
class _Held:
    deposit: Deposit
    sender: str
    deposited_at: int
    revoked: dict[str, int] = field(default_factory=dict)
    releases: dict[str, int] = field(default_factory=dict)
    denied: dict[str, str] = field(default_factory=dict)


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


class ScriptedEscrow:
    """Answers agents' requests from memory, as docs/protocol.md says.

    `on_reply(request_type, request_id, reply_wire) -> bytes | None` may alter a
    reply or drop it (None); stored replies are re-sent for the same request id.
    """

    def __init__(self, world: World, transport: Transport) -> None:
        self.world = world
        self.transport = transport
        self.forger = world.forger()
        encryption = load_escrow_key(world.escrow_dir, Role.ENCRYPTION, ESCROW_PASS)
        assert isinstance(encryption, X25519PrivateKey)
        self._encryption = encryption
        self.held: dict[str, _Held] = {}
        self.replies: dict[str, tuple[str, bytes]] = {}  # request id -> (inbox, wire)
        self.requests_seen: list[str] = []
        self.on_reply: Callable[[str, str, bytes], bytes | None] | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ScriptedEscrow]:
        await self.transport.declare_escrow_queues()
        task = asyncio.create_task(self._serve())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self) -> None:
        async with open_escrow(self.world.escrow_dir) as esc:
            queue = self.transport.config.escrow_queue
            async with self.transport.consume(queue) as deliveries:
                async for delivery in deliveries:
                    async with delivery.process():
                        await self._handle(esc, delivery.body)

    async def _handle(self, esc: Any, data: bytes) -> None:
        request = await authenticate_request(
            esc.conn, data, audience=ESCROW_NAME, ca=esc.ca_certificate, now=datetime.now(UTC)
        )
        envelope, who = request.envelope, request.sender
        self.requests_seen.append(envelope.request_id)
        if envelope.request_id in self.replies:
            inbox, wire = self.replies[envelope.request_id]
            await self._publish(inbox, wire, envelope.type, envelope.request_id)
            return
        body = parse_body(envelope.type, envelope.version, envelope.body)
        rid = envelope.request_id
        events: list[tuple[str, MessageType, BaseModel]] = []
        reply: BaseModel
        try:
            reply = await self._decide(esc, who, rid, body, events)
        except _Refuse as refusal:
            reply = ErrorBody(
                in_reply_to=rid,
                code=refusal.code,
                message=refusal.message,
                request_type=envelope.type,
                consignment_id=getattr(body, "consignment_id", None),
            )
        kind = _REPLY_TYPE[type(reply)]
        wire = self.forger.wire(kind, reply, audience=who)
        self.replies[rid] = (who, wire)
        await self._publish(who, wire, envelope.type, rid)
        for to, event_type, event in events:
            await self.forger.send(self.transport, to, event_type, event)

    async def _publish(self, inbox: str, wire: bytes, request_type: str, rid: str) -> None:
        if self.on_reply is not None:
            altered = self.on_reply(request_type, rid, wire)
            if altered is None:
                return
            wire = altered
        await self.transport.declare_inbox(inbox)
        await self.transport.publish(
            Inbox(inbox), Message(body=wire, message_id=uuid.uuid4().hex, type="reply.v1")
        )

    async def _decide(
        self,
        esc: Any,
        who: str,
        rid: str,
        body: BaseModel,
        events: list[tuple[str, MessageType, BaseModel]],
    ) -> BaseModel:
        now = int(datetime.now(UTC).timestamp())
        if isinstance(body, LookupBody):
            user = await get_user(esc.conn, body.name)
            if user is None:
                raise _Refuse(ErrorCode.UNKNOWN_USER, f"no user named {body.name!r}")
            at = datetime.now(UTC)
            signing = select_current(user.certificates, Role.SIGNING, at)
            encryption = select_current(user.certificates, Role.ENCRYPTION, at)
            assert signing is not None
            assert encryption is not None
            return LookupReplyBody(
                in_reply_to=rid,
                name=body.name,
                signing_certificate=signing.certificate.public_bytes(Encoding.PEM).decode(),
                encryption_certificate=encryption.certificate.public_bytes(Encoding.PEM).decode(),
                crl=await current_crl_der(esc.conn),
            )
        if isinstance(body, DepositBody):
            deposit = open_deposit(body.sealed_deposit, body.consignment_id, self._encryption)
            if deposit.policy.sender != who:
                raise _Refuse(ErrorCode.NOT_SENDER, "the deposit names another sender")
            held = self.held[deposit.consignment_id] = _Held(deposit, who, now)
            events.append((who, MessageType.EVENT, self._event(held, EventKind.DEPOSITED, now)))
            for r in deposit.policy.receivers:
                notify = NotifyBody(
                    consignment_id=deposit.consignment_id,
                    sender=who,
                    escrow=ESCROW_NAME,
                    deposited_at=now,
                    consignment_digest=deposit.consignment_digest,
                    consignment_size=deposit.consignment_size,
                )
                events.append((r.name, MessageType.NOTIFY, notify))
                events.append(
                    (who, MessageType.EVENT, self._event(held, EventKind.NOTIFIED, now, r.name))
                )
            return DepositReceiptBody(
                in_reply_to=rid,
                consignment_id=deposit.consignment_id,
                sender=who,
                deposited_at=now,
                consignment_digest=deposit.consignment_digest,
                plaintext_commitment=deposit.plaintext_commitment,
                policy_digest=deposit.policy_digest,
                receivers=tuple(r.name for r in deposit.policy.receivers),
            )
        held = self.held.get(getattr(body, "consignment_id", ""))
        if held is None:
            raise _Refuse(ErrorCode.UNKNOWN_CONSIGNMENT, "no such consignment")
        if isinstance(body, KeyRequestBody):
            spec = held.deposit.policy.receiver(who)
            if spec is None:
                raise _Refuse(ErrorCode.NOT_A_RECEIVER, "not a receiver")
            if body.consignment_digest != held.deposit.consignment_digest:
                raise _Refuse(ErrorCode.DIGEST_MISMATCH, "digest mismatch")
            if who in held.revoked:
                held.denied[who] = "revoked"
                events.append(
                    (
                        held.sender,
                        MessageType.EVENT,
                        self._event(held, EventKind.DENIED, now, who, "revoked"),
                    )
                )
                raise _Refuse(ErrorCode.REVOKED, "the sender revoked this consignment")
            release = held.deposit.release_for(who)
            part = release.key_part
            if held.deposit.mode is Mode.SPLIT:
                part = seal_key_part(
                    part,
                    X25519PublicKey.from_public_bytes(spec.encryption_key),
                    held.deposit.consignment_id,
                    held.deposit.policy_digest,
                )
            held.releases[who] = held.releases.get(who, 0) + 1
            events.append(
                (held.sender, MessageType.EVENT, self._event(held, EventKind.RELEASED, now, who))
            )
            return KeyReleaseBody(
                in_reply_to=rid,
                consignment_id=held.deposit.consignment_id,
                mode=held.deposit.mode,
                policy_digest=held.deposit.policy_digest,
                sealed_key_part=part,
                sender=held.sender,
                consignment_digest=held.deposit.consignment_digest,
                released_at=now,
            )
        if who != held.sender:
            raise _Refuse(ErrorCode.NOT_SENDER, "only the sender may do this")
        if isinstance(body, RevokeBody):
            names = body.receivers or tuple(r.name for r in held.deposit.policy.receivers)
            for name in names:
                held.revoked.setdefault(name, now)
                events.append(
                    (
                        held.sender,
                        MessageType.EVENT,
                        self._event(held, EventKind.REVOKED, now, name),
                    )
                )
            return RevokeReplyBody(
                in_reply_to=rid, consignment_id=held.deposit.consignment_id, revoked=tuple(names)
            )
        assert isinstance(body, StatusBody)
        return StatusReplyBody(
            in_reply_to=rid,
            consignment_id=held.deposit.consignment_id,
            sender=held.sender,
            mode=held.deposit.mode,
            deposited_at=held.deposited_at,
            receivers=tuple(
                ReceiverStatus(
                    name=r.name,
                    notified_at=held.deposited_at,
                    releases=held.releases.get(r.name, 0),
                    revoked_at=held.revoked.get(r.name),
                    last_denied=held.denied.get(r.name),
                )
                for r in held.deposit.policy.receivers
            ),
        )

    @staticmethod
    def _event(
        held: _Held,
        kind: EventKind,
        at: int,
        receiver: str | None = None,
        reason: str | None = None,
    ) -> EventBody:
        return EventBody(
            consignment_id=held.deposit.consignment_id,
            kind=kind,
            receiver=receiver,
            reason=reason,
            at=at,
        )


class _Refuse(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_REPLY_TYPE: dict[type[BaseModel], MessageType] = {
    LookupReplyBody: MessageType.LOOKUP_REPLY,
    DepositReceiptBody: MessageType.DEPOSIT_RECEIPT,
    KeyReleaseBody: MessageType.KEY_RELEASE,
    RevokeReplyBody: MessageType.REVOKE_REPLY,
    StatusReplyBody: MessageType.STATUS_REPLY,
    ErrorBody: MessageType.ERROR,
}

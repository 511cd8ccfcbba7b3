"""What sender and receiver agents share: the inbox, signed requests and their
replies, the escrow's certificate and the directory cache.

The inbox is read by one task (the pump): it stores a batch of messages in the
agent's database, commits, acks, then processes what it stored. Processing never
waits on the network: a message that needs a certificate the agent does not
hold yet (the escrow's after a renewal, a chunk sender's) stays in the spool
while a lookup runs in its own task, and is processed again when it returns.
A request is stored (signed bytes, request id) before it is published; until its
reply is stored, waiting re-sends the same bytes, so a lost reply is recovered
and never re-decided. Replies are matched on the signed `in_reply_to`, never on
AMQP properties. This module must never act on a message it did not verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel

from broker.canonical import HEX_ID, NAME
from broker.deposit import ControlAttributes
from broker.envelope import new_envelope, sign_envelope
from broker.errors import DeliveryLost, Unroutable
from broker.messages import (
    ChunkBody,
    ErrorBody,
    EventBody,
    LookupBody,
    LookupReplyBody,
    MessageType,
    NotifyBody,
    parse_body,
)
from broker.pki.identity import Identity
from broker.pki.profile import fingerprint
from broker.transport.base import ESCROW, Delivery, Message, Transport
from client import _agent_verify as verify
from client._agent_files import assemble, check_subject, file_chunk, file_event, file_notify
from client._agent_hints import refusal_error
from client._agent_read import read_events, read_inbox
from client._agent_store import Store
from client._agent_types import (
    Event,
    InboxContents,
    Party,
)
from client._chunks import Assembly
from client.errors import (
    AgentError,
    EscrowRefused,
    NoReply,
    SealError,
    UntrustedCertificate,
    UntrustedMessage,
)

_log = logging.getLogger(__name__)

#: Requests live this long; the escrow accepts up to 15 minutes.
REQUEST_LIFETIME: Final = timedelta(minutes=10)
_BATCH: Final = 32  # inbox messages stored in one transaction
#: Seconds between publishes while no escrow worker has declared its queue.
_NO_QUEUE_RETRY: Final = 0.25
_BIG: Final = 64 * 1024  # messages verified in a worker thread
_UNKNOWN: Final = "unknown"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _hash(wire: bytes) -> str:
    return hashlib.sha256(wire).hexdigest()


class _Deferred(Exception):
    """A message needs a certificate that is being looked up; process it later."""


class Agent:
    """Base of `SenderAgent` and `ReceiverAgent`: see `client.agent`."""

    def __init__(
        self,
        identity: Identity,
        transport: Transport,
        escrow: str,
        state_dir: Path,
        *,
        reply_timeout: float = 30.0,
        resend_after: float = 5.0,
        prefetch: int = 64,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if reply_timeout <= 0 or resend_after <= 0:
            raise ValueError("reply_timeout and resend_after must be > 0")
        self.identity = identity
        self.transport = transport
        self.escrow = escrow
        self.state_dir = Path(state_dir)
        self.reply_timeout = reply_timeout
        self.resend_after = resend_after
        self._prefetch = prefetch
        self._clock = clock or _utcnow
        self._store: Store | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._pump_error: BaseException | None = None
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._lookups: dict[str, asyncio.Task[None]] = {}
        self._checked: set[str] = set()  # names looked up during this session
        self._failed_lookups: dict[str, str] = {}
        self._process_lock = asyncio.Lock()
        self._activity = asyncio.Event()
        self._last_activity = 0.0
        self._escrow_certs: verify.Certificates | None = None
        self._parties: dict[str, verify.Certificates] = {}
        self._deferred: set[int] = set()  # spool rows waiting for a lookup

    # -- life cycle ------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def store(self) -> Store:
        if self._store is None:
            raise AgentError("the agent is not started", "use 'async with agent:' or start()")
        return self._store

    def now(self) -> datetime:
        return self._clock()

    def _ts(self) -> int:
        return int(self.now().timestamp())

    async def start(self) -> None:
        """Open the state, declare the inbox, read it in the background, and make
        sure the escrow's certificate is known. Idempotent."""
        if self._store is not None:
            return
        self._store = await Store.open(self.state_dir)
        try:
            # Only the agent's own inbox: the escrow's queues are the workers' to
            # declare, so an agent's broker account needs no rights on them.
            await self.transport.declare_inbox(self.name)
            await self._load_escrow()
            self._pump_task = asyncio.create_task(self._pump(), name=f"inbox {self.name}")
            await self._process()  # what an earlier run stored but did not process
            if self._escrow_certs is None:
                await self.lookup(self.escrow)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop reading the inbox (unacked messages go back to it) and close the state."""
        tasks = [t for t in (self._pump_task, *self._lookups.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._pump_task = None
        self._lookups.clear()
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the inbox ---------------------------------------------------------------

    async def _pump(self) -> None:
        queue = self.transport.config.inbox_queue(self.name)
        try:
            async with self.transport.consume(queue, prefetch=self._prefetch) as deliveries:
                async for first in deliveries:
                    batch = [first]
                    while len(batch) < _BATCH:
                        try:
                            async with asyncio.timeout(0):
                                batch.append(await anext(deliveries))
                        except (TimeoutError, StopAsyncIteration):
                            break
                    await self._take(batch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # reported to whoever waits next
            _log.exception("the inbox of %s stopped", self.name)
            self._pump_error = exc
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_result(None)

    async def _take(self, batch: list[Delivery]) -> None:
        """Store, commit, ack, then process."""
        await self.store.spool(((_hash(d.body), d.body) for d in batch), self._ts())
        for delivery in batch:
            with contextlib.suppress(DeliveryLost):  # it comes back; stored once
                await delivery.ack()
        self._mark_activity()
        await self._process()

    def _mark_activity(self) -> None:
        self._last_activity = asyncio.get_running_loop().time()
        self._activity.set()

    async def sync(self, *, idle: float = 0.5, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until the inbox has been quiet for `idle` seconds (everything that
        was queued is stored and processed), or `timeout` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._last_activity = max(self._last_activity, loop.time())
        while True:
            self._check_pump()
            quiet_until = self._last_activity + idle
            now = loop.time()
            if now >= quiet_until and not self._lookups:
                break
            if now >= deadline:
                break
            self._activity.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(min(quiet_until, deadline) - now, 0.01)):
                    await self._activity.wait()
        async with self._process_lock:
            pass

    def _check_pump(self) -> None:
        if self._pump_error is not None:
            raise AgentError(
                f"the inbox of {self.name!r} stopped: {self._pump_error}",
                "check the broker connection and start the agent again",
            ) from self._pump_error

    async def _process(self) -> None:
        """Verify and file every stored message that is not waiting for a lookup."""
        async with self._process_lock:
            seqs = await self.store.fetchall("SELECT seq FROM spool ORDER BY seq")
            for item in seqs:
                if item["seq"] in self._deferred:
                    continue  # until a lookup returns
                row = await self.store.fetchone(
                    "SELECT seq, wire_hash, wire, received_at FROM spool WHERE seq = ?",
                    (item["seq"],),
                )
                if row is None:
                    continue
                try:
                    await self._file(row["seq"], row["wire_hash"], row["wire"], row["received_at"])
                except _Deferred:
                    self._deferred.add(row["seq"])
                    continue
                except UntrustedMessage as exc:
                    await self._refuse(row["seq"], row["wire_hash"], row["wire"], exc)
                except UntrustedCertificate as exc:
                    await self._refuse(
                        row["seq"],
                        row["wire_hash"],
                        row["wire"],
                        UntrustedMessage(f"certificate_{exc.reason}", exc.message),
                    )
                except sqlite3.Error:  # the state, not the message: try again later
                    _log.exception("%s cannot store what arrived; will try again", self.name)
                    break
                except Exception as exc:  # never let one message wedge the inbox
                    _log.exception("%s cannot file a message", self.name)
                    await self._refuse(
                        row["seq"],
                        row["wire_hash"],
                        row["wire"],
                        UntrustedMessage("internal", f"the agent could not file it: {exc!r}"),
                    )
        self._mark_activity()

    async def _refuse(self, seq: int, wire_hash: str, wire: bytes, exc: UntrustedMessage) -> None:
        try:
            kind = verify.parse(wire, me=self.name).envelope.type
        except UntrustedMessage:
            kind = _UNKNOWN
        _log.info("%s refused a %s message: %s", self.name, kind, exc.message)
        async with self.store.tx() as conn:
            await conn.execute(
                "INSERT INTO refused (wire_hash, type, reason, message, received_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (wire_hash, kind, exc.reason, exc.message, self._ts()),
            )
            await conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))

    async def _file(self, seq: int, wire_hash: str, wire: bytes, received_at: int) -> None:
        # A chunk is ~1 MB of base64 to decode, re-encode and hash: a worker
        # thread's job, so the event loop never stalls on it.
        big = len(wire) > _BIG
        if big:
            message = await asyncio.to_thread(verify.parse, wire, me=self.name)
        else:
            message = verify.parse(wire, me=self.name)
        kind = message.envelope.type
        if kind in verify.FROM_ESCROW:
            self._verify_escrow_message(message)
        elif kind == MessageType.CHUNK:
            certs, key = self._chunk_signer(message)
            if big:
                await asyncio.to_thread(verify.verify_with, message, certs, key)
            else:
                verify.verify_with(message, certs, key)
        else:
            raise UntrustedMessage("unexpected_type", f"a {kind} message does not belong here")
        body = message.body
        if isinstance(body, EventBody):
            await file_event(self.store, seq, wire_hash, wire, body, received_at)
        elif isinstance(body, NotifyBody):
            await file_notify(self.store, self.escrow, seq, wire, body, received_at)
        elif isinstance(body, ChunkBody):
            assembly = Assembly(self.state_dir / "received", body.consignment_id)
            sender = message.envelope.reply_to
            if await file_chunk(self.store, assembly, seq, sender, body, received_at):
                await assemble(
                    self.store,
                    assembly,
                    body.count,
                    body.total_size,
                    body.consignment_digest,
                    self._ts(),
                )
        else:
            await self._file_reply(seq, wire, message)

    # -- verifying ------------------------------------------------------------

    def _verify_escrow_message(self, message: verify.Unverified) -> None:
        ca, now = self.identity.ca_certificate, self.now()
        # A lookup reply for the escrow's own name carries the certificate that
        # signs it: how the agent learns it, and a fresh CRL, the first time.
        if verify.self_certified_escrow(message, escrow=self.escrow, ca=ca, now=now) is not None:
            return
        certs = self._escrow_certs
        if certs is not None and message.envelope.signer == fingerprint(certs.signing):
            try:
                key = verify.signing_key(certs, ca=ca, now=now, escrow=True)
            except UntrustedCertificate as exc:
                if exc.reason != "crl_stale":
                    raise
                self._need_lookup(self.escrow)  # a fresh CRL, then try again
                raise _Deferred from exc
            verify.verify_with(message, certs, key)
            return
        if self.escrow not in self._checked:
            self._need_lookup(self.escrow)  # the escrow may have a new certificate
            raise _Deferred
        raise UntrustedMessage(
            "not_from_escrow",
            f"a {message.envelope.type} message is not signed by escrow {self.escrow!r}",
        )

    def _chunk_signer(
        self, message: verify.Unverified
    ) -> tuple[verify.Certificates, Ed25519PublicKey]:
        """The checked certificates and key of the chunk's claimed sender."""
        sender = message.envelope.reply_to
        if not sender:
            raise UntrustedMessage("malformed", "a consignment chunk names no sender")
        if sender in self._failed_lookups:
            raise UntrustedMessage(
                "unknown_sender",
                f"a consignment chunk claims to come from {sender!r}: "
                f"{self._failed_lookups[sender]}",
            )
        certs = self._parties.get(sender)
        if certs is None or (
            message.envelope.signer != fingerprint(certs.signing) and sender not in self._checked
        ):
            self._need_lookup(sender)
            raise _Deferred
        try:
            key = verify.signing_key(
                certs, ca=self.identity.ca_certificate, now=self.now(), escrow=False
            )
        except UntrustedCertificate as exc:
            if exc.reason != "crl_stale" or sender in self._checked:
                raise
            self._need_lookup(sender)  # a fresh CRL, then try again
            raise _Deferred from exc
        return certs, key

    def _need_lookup(self, name: str) -> None:
        if name in self._lookups:
            return

        async def run() -> None:
            try:
                await self.lookup(name)
                self._failed_lookups.pop(name, None)
            except (EscrowRefused, UntrustedMessage, UntrustedCertificate) as exc:
                self._failed_lookups[name] = exc.message
                self._checked.add(name)
            except NoReply as exc:
                self._failed_lookups[name] = exc.message
            finally:
                self._lookups.pop(name, None)
                self._deferred.clear()  # try them again with what the lookup brought
            await self._process()

        self._lookups[name] = asyncio.create_task(run(), name=f"lookup {name}")

    # -- filing ------------------------------------------------------------------

    async def _file_reply(self, seq: int, wire: bytes, message: verify.Unverified) -> None:
        envelope, body = message.envelope, message.body
        in_reply_to = str(getattr(body, "in_reply_to", ""))
        request = await self.store.fetchone(
            "SELECT type, subject, reply_type FROM requests WHERE request_id = ?", (in_reply_to,)
        )
        if request is None:
            raise UntrustedMessage(
                "unexpected_reply",
                f"a {envelope.type} message answers request {in_reply_to}, which this agent "
                "never sent",
            )
        if envelope.type not in verify.REPLIES.get(MessageType(request["type"]), frozenset()):
            raise UntrustedMessage(
                "unexpected_reply",
                f"a {envelope.type} message cannot answer a {request['type']} request",
            )
        check_subject(MessageType(request["type"]), request["subject"], body)
        if isinstance(body, LookupReplyBody):
            certs = verify.certificates(
                body.name, body.signing_certificate, body.encryption_certificate, body.crl
            )
        else:
            certs = None
        async with self.store.tx() as conn:
            if request["reply_type"] is None:
                await conn.execute(
                    "UPDATE requests SET reply_type = ?, reply_body = ?, reply_wire = ?,"
                    " replied_at = ? WHERE request_id = ?",
                    (envelope.type, json.dumps(envelope.body), wire, self._ts(), in_reply_to),
                )
                if certs is not None:
                    await self._cache_certs(conn, certs)
            await conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))
        if certs is not None:
            self._remember(certs)
        waiter = self._waiters.get(in_reply_to)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _cache_certs(self, conn: Any, certs: verify.Certificates) -> None:
        await conn.execute(
            "INSERT OR REPLACE INTO directory (name, signing_certificate, encryption_certificate,"
            " crl, fetched_at) VALUES (?, ?, ?, ?, ?)",
            (
                certs.name,
                verify.pem(certs.signing),
                verify.pem(certs.encryption),
                verify.crl_der(certs.crl),
                self._ts(),
            ),
        )

    def _remember(self, certs: verify.Certificates) -> None:
        self._checked.add(certs.name)
        if certs.name == self.escrow:
            self._escrow_certs = certs
        else:
            self._parties[certs.name] = certs

    async def _load_escrow(self) -> None:
        rows = await self.store.fetchall("SELECT * FROM directory")
        for row in rows:
            try:
                certs = verify.certificates(
                    row["name"],
                    row["signing_certificate"],
                    row["encryption_certificate"],
                    row["crl"],
                )
            except UntrustedMessage:
                continue
            if certs.name == self.escrow:
                self._escrow_certs = certs
            else:
                self._parties[certs.name] = certs
        if self._escrow_certs is not None:
            try:
                verify.signing_key(
                    self._escrow_certs, ca=self.identity.ca_certificate, now=self.now(), escrow=True
                )
            except UntrustedCertificate:
                self._escrow_certs = None  # stale CRL or renewed: look it up again

    # -- chunks ------------------------------------------------------------------

    # -- requests ----------------------------------------------------------------

    async def request(
        self,
        type: MessageType,
        body: BaseModel,
        *,
        subject: str,
        reuse: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> tuple[str, BaseModel, bytes, str]:
        """Send a signed request to the escrow and wait for its verified reply.

        Returns (reply type, reply body, signed reply bytes, request id); an
        `error` reply raises `EscrowRefused`. With `reuse`, the latest request of
        this type and subject is answered from its stored reply, or re-sent with
        the same bytes, before a new one is made.
        """
        self._check_pump()
        if reuse:
            row = await self.store.fetchone(
                "SELECT request_id, wire, expires_at, reply_type FROM requests"
                " WHERE type = ? AND subject = ? ORDER BY rowid DESC LIMIT 1",
                (type.value, subject),
            )
            if row is not None and row["reply_type"] not in (None, MessageType.ERROR):
                return await self._answer(row["request_id"])
            if row is not None and row["reply_type"] is None:
                # Same bytes again: the escrow answers from its stored reply if it
                # decided, and decides now if it never saw them.
                expired = row["expires_at"] <= self._ts()
                try:
                    await self._wait(row["request_id"], row["wire"], timeout, publish_first=True)
                    return await self._answer(row["request_id"])
                except EscrowRefused:
                    if not expired:
                        raise
        envelope = new_envelope(
            type=type.value,
            body=body.model_dump(mode="json"),
            audience=self.escrow,
            signer=self.identity.signer,
            now=self.now(),
            reply_to=self.name,
            lifetime=REQUEST_LIFETIME,
        )
        wire = sign_envelope(envelope, self.identity.signing_key).to_wire()
        await self.store.add_request(
            request_id=envelope.request_id,
            type=type.value,
            subject=subject,
            wire=wire,
            issued_at=envelope.issued_at,
            expires_at=envelope.expires_at,
        )
        await self._wait(envelope.request_id, wire, timeout, publish_first=True)
        return await self._answer(envelope.request_id)

    async def _answer(self, request_id: str) -> tuple[str, BaseModel, bytes, str]:
        row = await self.store.reply_of(request_id)
        assert row is not None
        body = parse_body(row["reply_type"], 1, json.loads(row["reply_body"]))
        if isinstance(body, ErrorBody):
            raise refusal_error(body)
        return row["reply_type"], body, row["reply_wire"], request_id

    async def _wait(
        self,
        request_id: str,
        wire: bytes,
        timeout: float | None,  # noqa: ASYNC109
        *,
        publish_first: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.reply_timeout if timeout is None else timeout)
        waiter = self._waiters.setdefault(request_id, loop.create_future())
        interval = self.resend_after
        since = self._ts()
        unsent = False  # the escrow's queue did not exist yet at the last publish
        try:
            if publish_first:
                unsent = not await self._publish(request_id, wire)
            while await self.store.reply_of(request_id) is None:
                self._check_pump()
                left = deadline - loop.time()
                if left <= 0:
                    waited = self.reply_timeout if timeout is None else timeout
                    if unsent:
                        raise self._no_worker(request_id, waited)
                    raise await self._no_reply(request_id, waited, since)
                try:
                    async with asyncio.timeout(min(_NO_QUEUE_RETRY if unsent else interval, left)):
                        await asyncio.shield(waiter)
                except TimeoutError:
                    if loop.time() < deadline:
                        if not unsent:
                            interval *= 2
                        unsent = not await self._publish(request_id, wire)  # the same bytes
                else:
                    waiter = self._waiters[request_id] = loop.create_future()
        finally:
            self._waiters.pop(request_id, None)

    def _no_worker(self, request_id: str, waited: float) -> AgentError:
        return AgentError(
            f"no escrow worker has started on this broker within {waited:g} s: the escrow's "
            f"work queue {self.transport.config.escrow_queue!r} does not exist "
            f"(request {request_id} is kept)",
            "start one (consign escrow worker) with the same CONSIGN_QUEUE_PREFIX, then ask again",
        )

    async def _no_reply(self, request_id: str, waited: float, since: int) -> NoReply:
        hint = (
            "is an escrow worker running, and is this identity registered at that escrow "
            "(an escrow of another CA refuses it, and its answer cannot be verified here; "
            "see `consign id show`)? "
            "the request is kept: ask again and the same request is sent again"
        )
        refused = await self.store.fetchall(
            "SELECT message FROM refused WHERE received_at >= ? ORDER BY seq DESC", (since,)
        )
        if refused:
            hint = (
                f"{len(refused)} message(s) were refused meanwhile, the last: "
                f"{refused[0]['message']}; {hint}"
            )
        return NoReply(
            f"no reply from escrow {self.escrow!r} within {waited:g} s (request {request_id})",
            hint,
            request_id=request_id,
        )

    async def _publish(self, request_id: str, wire: bytes) -> bool:
        """Publish a stored request; False if the escrow's queue does not exist yet."""
        row = await self.store.fetchone(
            "SELECT type FROM requests WHERE request_id = ?", (request_id,)
        )
        kind = row["type"] if row is not None else "request"
        try:
            await self.transport.publish(
                ESCROW, Message(body=wire, message_id=request_id, type=f"{kind}.v1")
            )
        except Unroutable:
            # No worker has declared the escrow's queues yet; agents do not declare
            # them (their broker accounts need no rights there): try again shortly.
            _log.info("request %s: no escrow work queue yet; waiting for a worker", request_id)
            return False
        async with self.store.tx() as conn:
            await conn.execute(
                "UPDATE requests SET sent = sent + 1 WHERE request_id = ?", (request_id,)
            )
        return True

    # -- directory -----------------------------------------------------------------

    async def lookup(self, name: str) -> Party:
        """Ask the escrow's directory for `name`'s certificates and check them
        against the CA and the CRL (the escrow's own for the escrow's name)."""
        require_name(name)
        _, body, _, _ = await self.request(MessageType.LOOKUP, LookupBody(name=name), subject=name)
        assert isinstance(body, LookupReplyBody)
        certs = verify.certificates(
            name, body.signing_certificate, body.encryption_certificate, body.crl
        )
        ca, now = self.identity.ca_certificate, self.now()
        escrow = name == self.escrow
        signing = verify.signing_key(certs, ca=ca, now=now, escrow=escrow)
        encryption = verify.encryption_key(certs, ca=ca, now=now, escrow=escrow)
        self._remember(certs)
        return Party(name, signing, encryption, fingerprint(certs.signing))

    async def escrow_party(self) -> Party:
        """The escrow's checked certificates (looked up when not known or stale)."""
        certs = self._escrow_certs
        if certs is not None:
            ca, now = self.identity.ca_certificate, self.now()
            try:
                signing = verify.signing_key(certs, ca=ca, now=now, escrow=True)
                encryption = verify.encryption_key(certs, ca=ca, now=now, escrow=True)
                return Party(self.escrow, signing, encryption, fingerprint(certs.signing))
            except UntrustedCertificate:
                pass
        return await self.lookup(self.escrow)

    # -- what arrived --------------------------------------------------------------

    async def events(self, consignment_id: str | None = None) -> list[Event]:
        """Every verified escrow event kept so far (oldest first)."""
        return await read_events(self.store, consignment_id)

    async def inbox(self) -> InboxContents:
        """What arrived so far: notifications, consignments, events, refusals."""
        return await read_inbox(self.store)


def is_consignment_id(value: str) -> bool:
    return bool(HEX_ID.match(value))


def require_consignment_id(value: str) -> str:
    """`value` if it is a consignment id, else an `AgentError` saying so (before
    anything is signed or sent)."""
    if is_consignment_id(value):
        return value
    if is_consignment_id(value.lower()):
        hint = f"consignment ids are lowercase: {value.lower()}"
    else:
        hint = "copy the id that `consign seal` printed (or `consign inbox` lists)"
    raise AgentError(f"{value!r} is not a consignment id (32 lowercase hex digits)", hint)


def require_name(value: str) -> str:
    """`value` if it can be a registered user's name, else an `AgentError`."""
    if NAME.match(value):
        return value
    raise AgentError(
        f"{value!r} is not a user name",
        "a name starts with a letter or digit and has at most 128 letters, digits "
        "and . _ @ + - (consign escrow users lists them)",
    )


def check_release_window(attributes: ControlAttributes | None, *, now: int) -> None:
    """Refuse to seal what nobody could ever open: a release window already over
    at `now` (the escrow would refuse every request as expired)."""
    if attributes is None or attributes.not_after is None or attributes.not_after > now:
        return
    when = datetime.fromtimestamp(attributes.not_after, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise SealError(
        f"the release window is already over (not after {when}): "
        "nobody could ever open this consignment",
        "give a later --not-after, or none; nothing was sealed or deposited",
    )

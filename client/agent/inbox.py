"""An agent's inbox: reading it, and verifying and filing what arrives.

The inbox is read by one task (the pump): it stores a batch of messages in the
agent's database, commits, acks, then processes what it stored. Processing never
waits on the network: a message that needs a certificate the agent does not
hold yet (the escrow's after a renewal, a chunk sender's) stays in the spool
while a lookup runs in its own task, and is processed again when it returns.
A reply is filed only if it answers a request this agent stored, about what that
request asked; replies are matched on the signed `in_reply_to`, never on AMQP
properties. A reply that decided nothing (`verify.NOT_DECISIONS`) is kept
beside its request and never settles it. This module must never act on a message it did not verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
from typing import TYPE_CHECKING, Final

from broker.errors import DeliveryLost, DiskFull, full_disk
from broker.messages import ChunkBody, EventBody, LookupReplyBody, MessageType, NotifyBody
from broker.transport.base import Delivery
from client.agent import attest, verify
from client.agent.arrival import CHUNK_TYPE, Arrivals
from client.agent.directory import Directory, NeedLookup
from client.agent.store import DirectoryEntry, Filing, StoreError
from client.errors import (
    AgentError,
    EscrowRefused,
    NoReply,
    UntrustedCertificate,
    UntrustedMessage,
)

if TYPE_CHECKING:
    from client.agent.core import Agent

_log = logging.getLogger(__name__)

_BATCH: Final = 32  # inbox messages stored in one transaction
_CHUNK_GROUP: Final = 8  # chunks verified, written and listed together
_BIG: Final = 64 * 1024  # messages verified in a worker thread
_FILE_PAGE: Final = 32  # stored messages read, and events filed, together
_UNKNOWN: Final = "unknown"


def _hash(wire: bytes) -> str:
    return hashlib.sha256(wire).hexdigest()


class Inbox:
    """The inbox of `agent`: its pump, the processing of what it stored, the
    lookups that processing waits for, and the futures of replies awaited."""

    def __init__(self, agent: Agent, directory: Directory, *, prefetch: int) -> None:
        self._agent = agent
        self._directory = directory
        self._prefetch = prefetch
        self._pump_task: asyncio.Task[None] | None = None
        self._pump_error: BaseException | None = None
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._lookups: dict[str, asyncio.Task[None]] = {}
        self._process_lock = asyncio.Lock()
        self._activity = asyncio.Event()
        self._last_activity = 0.0
        self._deferred: set[int] = set()  # spool rows waiting for a lookup
        self._arrivals = Arrivals(agent, directory)
        self._busy = 0  # batches being taken

    def _ts(self) -> int:
        return int(self._agent.now().timestamp())

    # -- the pump ----------------------------------------------------------------

    def start(self) -> None:
        name = self._agent.name
        self._pump_task = asyncio.create_task(self._pump(), name=f"inbox {name}")

    async def stop(self) -> None:
        """Stop the pump and the lookups (unacked messages go back to the queue)."""
        tasks = [t for t in (self._pump_task, *self._lookups.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._pump_task = None
        self._lookups.clear()

    async def _pump(self) -> None:
        agent = self._agent
        queue = agent.transport.config.inbox_queue(agent.name)
        try:
            async with agent.transport.consume(queue, prefetch=self._prefetch) as deliveries:
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
            _log.exception("the inbox of %s stopped", agent.name)
            self._pump_error = exc
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_result(None)

    async def _take(self, batch: list[Delivery]) -> None:
        """Store (chunks in place, the rest in the spool), commit, ack, then process."""
        self._busy += 1  # `settle` waits for it, however long it takes
        try:
            await self._take_batch(batch)
        finally:
            self._busy -= 1
            self._mark_activity()

    async def _take_batch(self, batch: list[Delivery]) -> None:
        chunks = [d for d in batch if d.type == CHUNK_TYPE]
        rest = [d for d in batch if d.type != CHUNK_TYPE]
        for start in range(0, len(chunks), _CHUNK_GROUP):  # bounds the memory a batch takes
            rest += await self._arrivals.take(chunks[start : start + _CHUNK_GROUP])
        if rest:
            await self._agent.store.spool(((_hash(d.body), d.body) for d in rest), self._ts())
        for delivery in batch:
            with contextlib.suppress(DeliveryLost):  # it comes back; stored once
                await delivery.ack()
        self._mark_activity()
        await self.process()

    def _mark_activity(self) -> None:
        self._last_activity = asyncio.get_running_loop().time()
        self._activity.set()

    def check(self) -> None:
        """Raise `AgentError` (`DiskFull` for want of space) if the pump stopped."""
        error = self._pump_error
        if isinstance(error, OSError | sqlite3.OperationalError) and full_disk(error):
            raise DiskFull(
                f"no space left to keep what arrives in the inbox of {self._agent.name!r} "
                f"({error}); nothing was acked that was not kept",
                "free some space (`consign gc` removes what is no longer needed), then run "
                "the command again: the rest is still queued",
            ) from error
        if self._pump_error is not None:
            raise AgentError(
                f"the inbox of {self._agent.name!r} stopped: {self._pump_error}",
                "check the broker connection and start the agent again",
            ) from self._pump_error

    async def settle(self, *, idle: float, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until the inbox has been quiet for `idle` seconds and no lookup
        runs, or `timeout` has passed; then until processing is done."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._last_activity = max(self._last_activity, loop.time())
        while True:
            self.check()
            quiet_until = self._last_activity + idle
            now = loop.time()
            if now >= quiet_until and not self._lookups and not self._busy:
                break
            if now >= deadline:
                break
            self._activity.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(min(quiet_until, deadline) - now, 0.01)):
                    await self._activity.wait()
        async with self._process_lock:
            pass

    # -- replies awaited ----------------------------------------------------------

    def waiter(self, request_id: str, *, renew: bool = False) -> asyncio.Future[None]:
        """A future done when a reply to `request_id` is filed (or the pump stops);
        `renew` replaces one that is done."""
        future = asyncio.get_running_loop().create_future()
        if renew:
            self._waiters[request_id] = future
            return future
        return self._waiters.setdefault(request_id, future)

    def forget(self, request_id: str) -> None:
        self._waiters.pop(request_id, None)

    # -- processing ---------------------------------------------------------------

    async def process(self) -> None:
        """Verify and file every stored message that is not waiting for a lookup.
        Events and notifications (most of what arrives) are verified one by one
        and filed together, one transaction per page of the spool, and always
        before anything stored after them is filed."""
        store = self._agent.store
        async with self._process_lock:
            after, more = 0, True
            while more:
                rows = await store.spooled_page(after, _FILE_PAGE)
                more = len(rows) == _FILE_PAGE
                pending: list[Filing] = []
                for row in rows:
                    after = seq = row["seq"]
                    if seq in self._deferred:
                        continue  # until a lookup returns
                    wire_hash, wire = row["wire_hash"], row["wire"]
                    try:
                        await self._file(seq, wire_hash, wire, row["received_at"], pending)
                    except NeedLookup as need:
                        self._lookup(need.name)
                        self._deferred.add(seq)
                        continue
                    except UntrustedMessage as exc:
                        await self._refuse(seq, wire_hash, wire, exc)
                        continue
                    except UntrustedCertificate as exc:
                        reason = f"certificate_{exc.reason}"
                        why = UntrustedMessage(reason, exc.message)
                        await self._refuse(seq, wire_hash, wire, why)
                        continue
                    except StoreError:  # the state, not the message: try again later
                        _log.exception(
                            "%s cannot store what arrived; will try again", self._agent.name
                        )
                        more = False
                        break
                    except Exception as exc:  # never let one message wedge the inbox
                        _log.exception("%s cannot file a message", self._agent.name)
                        why = UntrustedMessage("internal", f"the agent could not file it: {exc!r}")
                        await self._refuse(seq, wire_hash, wire, why)
                        continue
                try:
                    await self._file_pending(pending)
                except StoreError:  # they stay in the spool, filed next time
                    _log.exception("%s cannot store what arrived; will try again", self._agent.name)
                    more = False
        self._mark_activity()

    async def _refuse(self, seq: int, wire_hash: str, wire: bytes, exc: UntrustedMessage) -> None:
        try:
            kind = verify.parse(wire, me=self._agent.name).envelope.type
        except UntrustedMessage:
            kind = _UNKNOWN
        _log.info("%s refused a %s message: %s", self._agent.name, kind, exc.message)
        await self._agent.store.refuse(seq, wire_hash, kind, exc.reason, exc.message, self._ts())

    def _lookup(self, name: str) -> None:
        """Look `name` up in a task of its own, then process the deferred messages."""
        if name in self._lookups:
            return

        async def run() -> None:
            directory = self._directory
            try:
                await self._agent.lookup(name)
                directory.failed.pop(name, None)
            except (EscrowRefused, UntrustedMessage, UntrustedCertificate) as exc:
                directory.failed[name] = exc.message
                directory.checked.add(name)
            except NoReply as exc:
                directory.failed[name] = exc.message
            finally:
                self._lookups.pop(name, None)
                self._deferred.clear()  # try them again with what the lookup brought
            await self.process()

        self._lookups[name] = asyncio.create_task(run(), name=f"lookup {name}")

    # -- filing -------------------------------------------------------------------

    async def _file_pending(self, pending: list[Filing]) -> None:
        if pending:
            filings = list(pending)
            pending.clear()  # on failure they are still in the spool
            await self._agent.store.file(filings)

    async def _file(
        self, seq: int, wire_hash: str, wire: bytes, received_at: int, pending: list[Filing]
    ) -> None:
        """Verify a stored message and file it; an event or a notification goes
        to `pending`, filed with the others (and before any other message)."""
        # A chunk is ~1 MB of base64 to decode, re-encode and hash: a worker
        # thread's job, so the event loop never stalls on it.
        me = self._agent.name
        big = len(wire) > _BIG
        if big:
            message = await asyncio.to_thread(verify.parse, wire, me=me)
        else:
            message = verify.parse(wire, me=me)
        kind = message.envelope.type
        if kind in verify.FROM_ESCROW:
            self._directory.check_escrow_message(message)
        elif kind == MessageType.CHUNK:
            certs, key = self._directory.chunk_signer(message)
            if big:
                await asyncio.to_thread(verify.verify_with, message, certs, key)
            else:
                verify.verify_with(message, certs, key)
        else:
            raise UntrustedMessage("unexpected_type", f"a {kind} message does not belong here")
        body = message.body
        if isinstance(body, EventBody):
            # A receipt or co-signature it carries must verify on its own.
            attest.check_event(body, ca=self._directory.ca, crl=self._directory.crl())
            pending.append(Filing(seq, wire_hash, wire, body, received_at))
            return
        if isinstance(body, NotifyBody):
            escrow = self._agent.escrow
            if body.escrow != escrow:
                raise UntrustedMessage(
                    "wrong_escrow", f"a notification names escrow {body.escrow!r}, not {escrow!r}"
                )
            pending.append(Filing(seq, wire_hash, wire, body, received_at))
            return
        await self._file_pending(pending)  # what came before it, first
        if isinstance(body, ChunkBody):
            await self._arrivals.file(seq, message.envelope.reply_to, body)
        else:
            await self._file_reply(seq, wire, message)

    async def _file_reply(self, seq: int, wire: bytes, message: verify.Unverified) -> None:
        envelope, body = message.envelope, message.body
        in_reply_to = str(getattr(body, "in_reply_to", ""))
        request = await self._agent.store.request(in_reply_to)
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
        verify.check_subject(MessageType(request["type"]), request["subject"], body)
        if not verify.decides(body):
            # Decided nothing (perhaps about a forged copy of the request): kept
            # beside it, never as its reply; the agent asks again with the same bytes.
            code = str(getattr(body, "code", ""))
            await self._agent.store.note_nondecision(
                seq, in_reply_to, code, envelope.body, wire, self._ts()
            )
            self._wake(in_reply_to)
            return
        certs = entry = None
        if isinstance(body, LookupReplyBody):
            certs = verify.certificates(
                body.name, body.signing_certificate, body.encryption_certificate, body.crl
            )
            signing, encryption = verify.pem(certs.signing), verify.pem(certs.encryption)
            entry = DirectoryEntry(certs.name, signing, encryption, verify.crl_der(certs.crl))
        await self._agent.store.file_reply(
            seq, in_reply_to, envelope.type, envelope.body, wire, self._ts(), entry
        )
        if certs is not None:
            self._directory.remember(certs)
        self._wake(in_reply_to)

    def _wake(self, request_id: str) -> None:
        waiter = self._waiters.get(request_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

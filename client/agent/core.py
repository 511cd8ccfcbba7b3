"""What sender and receiver agents share: their life cycle, signed requests to the
escrow and waiting for the replies, and the lookups of the escrow's directory.

A request is stored (signed bytes, request id) before it is published; until a
reply that decides it is stored, waiting re-sends the same bytes, so a lost reply
is recovered and never re-decided, and a reply that decided nothing (perhaps
about a forged copy) settles nothing. The inbox (`inbox.py`) files the replies and wakes whoever
waits; the directory (`directory.py`) holds the certificates the agent checked.
This module must never use a reply the inbox did not verify and file.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from broker.attest import Statement, StatementKind
from broker.envelope import new_envelope, sign_envelope
from broker.errors import Unroutable
from broker.lifecycle import Resource
from broker.messages import (
    CosignBody,
    ErrorBody,
    ErrorCode,
    LookupBody,
    LookupReplyBody,
    MessageType,
    ReceiptBody,
    parse_body,
)
from broker.pki.identity import Identity
from broker.transport.base import ESCROW, Message, Transport
from client.agent import attest, verify
from client.agent.chunks import reclaim
from client.agent.directory import Directory
from client.agent.hints import refusal_error, undecided_error
from client.agent.history import History, fetch_history
from client.agent.inbox import Inbox
from client.agent.inputs import require_name
from client.agent.store import Store
from client.agent.store.database import record
from client.agent.types import Collected, Event, InboxContents, Party
from client.errors import AgentError, EscrowRefused, NoReply

_log = logging.getLogger(__name__)

#: Requests live this long; the escrow accepts up to 15 minutes.
REQUEST_LIFETIME: Final = timedelta(minutes=10)
#: Seconds between publishes while no escrow worker has declared its queue.
_NO_QUEUE_RETRY: Final = 0.25
#: Seconds without a reply before the agent says it is waiting (`notice`).
NOTICE_AFTER: Final = 5.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


#: The message that carries a signed statement of each kind to the escrow.
_STATEMENTS: dict[StatementKind, tuple[MessageType, type[ReceiptBody] | type[CosignBody]]] = {
    StatementKind.RECEIPT: (MessageType.RECEIPT, ReceiptBody),
    StatementKind.AGREEMENT: (MessageType.COSIGN, CosignBody),
}


class Agent(Resource):
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
        prefetch: int = 16,
        clock: Callable[[], datetime] | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        """`notice` is told, in words, when the escrow keeps the agent waiting
        (the command line prints it on stderr)."""
        if reply_timeout <= 0 or resend_after <= 0:
            raise ValueError("reply_timeout and resend_after must be > 0")
        self.identity = identity
        self.transport = transport
        self.escrow = escrow
        self.state_dir = Path(state_dir)
        self.reply_timeout = reply_timeout
        self.resend_after = resend_after
        self._clock = clock or _utcnow
        self.notice = notice
        self._store: Store | None = None
        self._directory = Directory(escrow, identity.ca_certificate, self.now)
        self._inbox = Inbox(self, self._directory, prefetch=prefetch)

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

    async def _attest(
        self, kind: StatementKind, cid: str, digest: str, policy_digest: bytes
    ) -> tuple[Statement, BaseModel | None]:
        """Sign a statement of `kind` (a receipt or an agreement) about the
        consignment and send it: the statement, and the escrow's reply, or None
        when the escrow already holds one from this party (`already_signed`)."""
        statement, signature = attest.sign(
            self.identity.signing_key,
            kind=kind,
            signer=self.name,
            consignment_id=cid,
            consignment_digest=digest,
            policy_digest=policy_digest,
            now=self._ts(),
        )
        message, model = _STATEMENTS[kind]
        try:
            _, body, _, _ = await self.request(
                message,
                model(consignment_id=cid, statement=statement, signature=signature),
                subject=cid,
                reuse=True,
            )
        except EscrowRefused as exc:
            if exc.code != ErrorCode.ALREADY_SIGNED:
                raise
            return statement, None
        return statement, body

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
            self._directory.load(await self._store.directory())
            self._inbox.start()
            await self._inbox.process()  # what an earlier run stored but did not process
            if not self._directory.knows_escrow:
                await self.lookup(self.escrow)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop reading the inbox (unacked messages go back to it) and close the state."""
        await self._inbox.stop()
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()

    async def sync(self, *, idle: float = 0.5, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until the inbox has been quiet for `idle` seconds (everything that
        was queued is stored and processed), or `timeout` has passed."""
        await self._inbox.settle(idle=idle, timeout=timeout)

    # -- what arrived --------------------------------------------------------------

    async def events(self, consignment_id: str | None = None) -> list[Event]:
        """Every verified escrow event kept so far (oldest first)."""
        return await self.store.events(consignment_id)

    async def follow(
        self, consignment_id: str | None = None, *, stop: asyncio.Event | None = None,
        poll: float = 0.2, replay: bool = False,
    ) -> AsyncIterator[Event]:  # fmt: skip
        """Every verified escrow event as it arrives (no polling of the escrow:
        the inbox is read all along), until `stop` is set; with `replay`, those
        kept before first."""
        last = 0
        if not replay:
            kept = await self.store.events_after(0)
            last = kept[-1][0] if kept else 0
        while stop is None or not stop.is_set():
            self._inbox.check()
            # What another process of this agent (a `consign seal` beside a
            # `consign events --follow`) stored in the spool and left unfiled.
            await self._inbox.process()
            for seq, row in await self.store.events_after(last):
                last = seq
                if consignment_id is None or row["consignment_id"] == consignment_id:
                    yield record(Event, row)
            try:
                async with asyncio.timeout(poll):
                    await (stop.wait() if stop is not None else asyncio.sleep(poll))
            except TimeoutError:
                pass

    async def inbox(self, *, everything: bool = True) -> InboxContents:
        """What arrived so far: notifications, consignments, events, refusals;
        not `everything`: only consignments not opened yet and the events and
        refusals not listed before (they are marked listed)."""
        return await self.store.inbox(everything=everything)

    async def gc(self, *, older_than: int | None = None) -> Collected:
        """Reclaim space: remove the files of failed consignments, of those
        complete but unopened for more than `older_than` seconds (if given),
        and whatever an interrupted arrival left; then compact the database."""
        now = self._ts()
        before = None if older_than is None else now - older_than
        files = await self.store.collect(before, now)
        receiving = await self.store.receiving()
        removed = await asyncio.to_thread(reclaim, self.state_dir / "received", files, receiving)
        db_before, db_after = await self.store.compact()
        return Collected(len(removed), sum(removed), db_before, db_after)

    # -- the directory -------------------------------------------------------------

    async def lookup(self, name: str) -> Party:
        """Ask the escrow's directory for `name`'s certificates and check them
        against the CA and the CRL (the escrow's own for the escrow's name)."""
        require_name(name)
        _, body, _, _ = await self.request(MessageType.LOOKUP, LookupBody(name=name), subject=name)
        assert isinstance(body, LookupReplyBody)
        return self._directory.party(name, body)

    async def history(self, consignment_id: str) -> History:
        """The escrow's signed log entries about a consignment this agent is a
        party of (`client.agent.history`)."""
        return await fetch_history(self, consignment_id)

    async def escrow_party(self) -> Party:
        """The escrow's checked certificates (looked up when not known or stale)."""
        return self._directory.escrow_party() or await self.lookup(self.escrow)

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
        self._inbox.check()
        if reuse:
            row = await self.store.latest_request(type.value, subject)
            if row is not None and row["reply_type"] not in (None, MessageType.ERROR):
                return await self._answer(row["request_id"])
            if row is not None and row["reply_type"] is None and not await self._burnt(row):
                # Same bytes again: the escrow answers from its stored reply if it
                # decided, and decides now if it never saw them.
                expired = row["expires_at"] <= self._ts()
                try:
                    await self._wait(row["request_id"], row["wire"], timeout)
                    return await self._answer(row["request_id"])
                except EscrowRefused as exc:
                    # Expired and never decided (`stale`), or its id taken by
                    # another signer (`replayed`): only a new request can be decided.
                    if not (expired or exc.code == ErrorCode.REPLAYED):
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
        await self._wait(envelope.request_id, wire, timeout)
        return await self._answer(envelope.request_id)

    async def _burnt(self, row: Any) -> bool:
        """Whether the escrow said `replayed` to this request: another signer's
        decision holds its id, so these bytes can never be decided."""
        last = await self.store.nondecision(row["request_id"])
        return last is not None and last["code"] == ErrorCode.REPLAYED

    async def _undecided(self, request_id: str) -> ErrorBody | None:
        """The last reply to the request that decided nothing, if one came."""
        row = await self.store.nondecision(request_id)
        if row is None:
            return None
        body = parse_body(MessageType.ERROR, 1, json.loads(row["body"]))
        assert isinstance(body, ErrorBody)
        return body

    async def _answer(self, request_id: str) -> tuple[str, BaseModel, bytes, str]:
        row = await self.store.reply_of(request_id)
        assert row is not None
        body = parse_body(row["reply_type"], 1, json.loads(row["reply_body"]))
        if isinstance(body, ErrorBody):
            raise refusal_error(body)
        return row["reply_type"], body, row["reply_wire"], request_id

    async def _wait(self, request_id: str, wire: bytes, timeout: float | None) -> None:  # noqa: ASYNC109
        """Publish the stored request and wait for a reply that decides it,
        publishing the same bytes again, less and less often, until it comes or
        time is up.

        A reply that decided nothing (docs/protocol.md, "Decisions") never ends
        the wait by itself: it may answer a forged copy of the request. The same
        bytes go out again at once (the escrow answers them with its stored
        decision, or decides now). Only one the same bytes would get again
        (`verify.FINAL_FOR_THESE_BYTES`: stale, replayed, malformed,
        unknown_type) ends the wait early; at the deadline, the last one is what
        is raised. Either way the request stays open."""
        loop = asyncio.get_running_loop()
        waited = self.reply_timeout if timeout is None else timeout
        deadline = loop.time() + waited
        waiter = self._inbox.waiter(request_id)
        interval = self.resend_after
        since = self._ts()
        await self.store.forget_nondecision(request_id)  # what an earlier wait saw
        seen: ErrorBody | None = None
        unsent = True

        def say_waiting() -> None:
            if self.notice is not None:
                why = "no worker has started yet" if unsent else "no worker answered yet"
                self.notice(f"waiting for escrow {self.escrow!r} ({why}; up to {waited:g} s)")

        noticing = loop.call_later(NOTICE_AFTER, say_waiting)
        try:
            # unsent: the escrow's queue did not exist yet at the last publish
            unsent = not await self._publish(request_id, wire)
            while await self.store.reply_of(request_id) is None:
                self._inbox.check()
                undecided = await self._undecided(request_id)
                if undecided is not None and undecided.code in verify.FINAL_FOR_THESE_BYTES:
                    raise undecided_error(undecided)
                left = deadline - loop.time()
                if left <= 0:
                    if undecided is not None:
                        raise undecided_error(undecided)
                    if unsent:
                        raise self._no_worker(request_id, waited)
                    raise await self._no_reply(request_id, waited, since)
                if undecided is not None and undecided != seen:
                    seen = undecided  # decided nothing: ask again, the same bytes
                    unsent = not await self._publish(request_id, wire)
                try:
                    async with asyncio.timeout(min(_NO_QUEUE_RETRY if unsent else interval, left)):
                        await asyncio.shield(waiter)
                except TimeoutError:
                    if loop.time() < deadline:
                        if not unsent:
                            interval *= 2
                        unsent = not await self._publish(request_id, wire)  # the same bytes
                else:
                    waiter = self._inbox.waiter(request_id, renew=True)
        finally:
            noticing.cancel()
            self._inbox.forget(request_id)

    def _no_worker(self, request_id: str, waited: float) -> AgentError:
        return AgentError(
            f"no escrow worker has started on this broker within {waited:g} s: the escrow's "
            f"work queue {self.transport.config.escrow_queue!r} does not exist "
            f"(request {request_id} is kept)",
            "start one (consign escrow worker) with the same CONSIGN_QUEUE_PREFIX, then ask again",
            code="no_worker",
        )

    async def _no_reply(self, request_id: str, waited: float, since: int) -> NoReply:
        hint = (
            "is an escrow worker running, and is this identity registered at that escrow "
            "(an escrow of another CA refuses it, and its answer cannot be verified here; "
            "see `consign id show`)? "
            "the request is kept: ask again and the same request is sent again"
        )
        refused = await self.store.refusals_since(since)
        if refused:
            hint = (
                f"{len(refused)} message(s) were refused meanwhile, the last: {refused[0]}; {hint}"
            )
        return NoReply(
            f"no reply from escrow {self.escrow!r} within {waited:g} s (request {request_id})",
            hint,
            request_id=request_id,
        )

    async def _publish(self, request_id: str, wire: bytes) -> bool:
        """Publish a stored request; False if the escrow's queue does not exist yet."""
        row = await self.store.request(request_id)
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
        await self.store.published(request_id)
        return True

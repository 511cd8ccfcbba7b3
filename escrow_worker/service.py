"""`EscrowService`: what an escrow does with one request, without the transport.

`handle(body)` runs steps 1-5 of docs/protocol.md ("What a worker does with one
request") on the bytes of one message and returns an `Outcome`: dead-letter it,
or the signed reply and the events to publish. `EscrowWorker` (`worker.py`)
publishes them and acks. The service holds the escrow's keys, its master
keyring and two database connections: one for reads outside any transaction,
one for the single write transaction of each request (serialised here; across
processes by SQLite's BEGIN IMMEDIATE).

A decision is taken once per request id: the reply is stored in the same
transaction as the state change and the outbox, and any later delivery of the
same signed bytes gets the stored reply again. This module must never log a
message body, a key or a passphrase, and never act on an unsigned field.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

import aiosqlite
from cryptography import x509

from broker import (
    MAX_ENVELOPE_BYTES,
    BrokerError,
    Envelope,
    Inbox,
    Message,
    Requeue,
    SignedEnvelope,
)
from broker.errors import CertificateRejected
from broker.messages import ErrorCode, UnknownMessage, parse_body
from broker.pki.checks import require_aware
from broker.pki.profile import fingerprint
from broker.sqlite import transaction
from escrow_worker.ca.authority import ServiceKeys, load_service_keys
from escrow_worker.ca.directory import escrow_name
from escrow_worker.errors import EscrowError, RequestReason, RequestRejected
from escrow_worker.handlers import HANDLERS
from escrow_worker.handlers.auth import (
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_SKEW,
    VerifiedRequest,
    authenticate_request,
    check_times,
)
from escrow_worker.handlers.common import Context, Notice, Result
from escrow_worker.replies import Outcome, Outgoing, Replies, Who, outbox_message
from escrow_worker.state import replay, store
from escrow_worker.state.db import open_db
from escrow_worker.state.masterkey import Vault, adopt_keyring, ensure_keyring
from escrow_worker.state.paths import EscrowPaths

__all__ = ["EscrowService"]

_log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EscrowService:
    """The escrow's request handling. Open with `await EscrowService.open(...)`."""

    def __init__(
        self,
        *,
        escrow_dir: Path,
        name: str,
        keys: ServiceKeys,
        vault: Vault,
        read: aiosqlite.Connection,
        write: aiosqlite.Connection,
        clock: Callable[[], datetime],
        max_skew: timedelta = DEFAULT_MAX_SKEW,
        max_lifetime: timedelta = DEFAULT_MAX_LIFETIME,
        max_request_bytes: int = MAX_ENVELOPE_BYTES,
    ) -> None:
        self._dir = escrow_dir
        self._name = name
        self._keys = keys
        self._ca = keys.ca_certificate
        self._encryption_key = keys.encryption_key
        self._replies = Replies(keys.signing_key, fingerprint(keys.signing_certificate))
        self._vault = vault
        self._read = read
        self._write = write
        self._write_lock = asyncio.Lock()
        #: Outbox ids waiting for `mark_sent`'s next transaction.
        self._to_mark: list[int] = []
        self._clock = clock
        self._max_skew = max_skew
        self._max_lifetime = max_lifetime
        self._max_request_bytes = max_request_bytes
        self._closed = False

    # -- life cycle ---------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        escrow_dir: Path,
        passphrase: bytes,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> EscrowService:
        """Load the CA certificate, the escrow's signing and encryption keys, the
        master keyring (created on first use) and open the database.

        Raises `EscrowError` (e.g. `IdentityFileError("wrong_passphrase")`)."""
        clock = clock if clock is not None else _utcnow
        require_aware(clock())
        paths = EscrowPaths(escrow_dir)
        keys = await load_service_keys(escrow_dir, passphrase)
        keyring = await asyncio.to_thread(ensure_keyring, escrow_dir, passphrase, now=clock())
        write = await open_db(paths.db)
        try:
            read = await open_db(paths.db)
        except BaseException:
            await write.close()
            raise
        try:
            await adopt_keyring(write, keyring)
            name = await escrow_name(read)
        except BaseException:
            await write.close()
            await read.close()
            raise
        return cls(
            escrow_dir=escrow_dir,
            name=name,
            keys=keys,
            vault=Vault(escrow_dir, passphrase, keyring),
            read=read,
            write=write,
            clock=clock,
        )

    async def close(self) -> None:
        """Close the database connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        async with self._write_lock:
            await self._write.close()
        await self._read.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def name(self) -> str:
        """The escrow's name: the audience of requests, the `escrow` of policies."""
        return self._name

    @property
    def escrow_dir(self) -> Path:
        return self._dir

    @property
    def ca_certificate(self) -> x509.Certificate:
        return self._ca

    @property
    def signing_certificate(self) -> x509.Certificate:
        return self._keys.signing_certificate

    @property
    def encryption_certificate(self) -> x509.Certificate:
        """Agents seal deposits to this certificate's key (after checking it)."""
        return self._keys.encryption_certificate

    def now(self) -> datetime:
        now = self._clock()
        require_aware(now)
        return now

    # -- the steps ----------------------------------------------------------------

    async def handle(self, data: bytes) -> Outcome:
        """Steps 1-5 for the bytes of one delivery. Never raises for bad input;
        raises `Requeue` when the database is busy (try the delivery again)."""
        try:
            return await self._handle(data)
        except sqlite3.OperationalError as exc:
            raise Requeue(f"the escrow database is busy ({exc})") from exc

    async def _handle(self, data: bytes) -> Outcome:
        now = self.now()
        # 1. Size and parse; what cannot be parsed cannot be answered.
        if len(data) > self._max_request_bytes:
            return Outcome(dead_letter=True, decision="dead-letter:oversize")
        try:
            signed = SignedEnvelope.from_wire(data)
            claimed = signed.unverified()
        except BrokerError:
            return Outcome(dead_letter=True, decision="dead-letter:malformed")
        # 2. Authenticate, but leave freshness until a stored reply was looked for.
        try:
            request = await authenticate_request(
                self._read,
                data,
                audience=self._name,
                ca=self._ca,
                now=now,
                max_skew=self._max_skew,
                max_lifetime=self._max_lifetime,
                check_freshness=False,
            )
        except (RequestRejected, CertificateRejected) as exc:
            return self._unauthenticated(claimed, exc, now)
        envelope = request.envelope
        base = Who(
            request_id=envelope.request_id, request_type=envelope.type, requester=request.sender
        )
        if envelope.reply_to != request.sender:
            reply = self._replies.error(
                envelope,
                ErrorCode.UNAUTHENTICATED,
                f"reply_to must be your own name {request.sender!r}",
                to=request.sender,
                now=now,
                detail="reply_to",
            )
            return Outcome(False, reply, decision="refused:reply_to", **base)
        # 3. Answered before: the same bytes from the same signer get the same reply.
        digest = hashlib.sha256(signed.payload).hexdigest()
        stored = await store.find_request(self._read, envelope.request_id)
        if stored is not None:
            return await self._again(self._read, stored, request, digest, now)
        # 4. Freshness.
        try:
            check_times(envelope, now=now, max_skew=self._max_skew, max_lifetime=self._max_lifetime)
        except RequestRejected as exc:
            code = ErrorCode.MALFORMED if exc.reason is RequestReason.MALFORMED else ErrorCode.STALE
            reply = self._replies.error(
                envelope, code, exc.message, to=request.sender, now=now, detail=exc.reason.value
            )
            return Outcome(False, reply, decision=f"refused:{exc.reason.value}", **base)
        # The body must be one of the requests this escrow answers.
        handler = HANDLERS.get((envelope.type, envelope.version))
        if handler is None:
            reply = self._replies.error(
                envelope,
                ErrorCode.UNKNOWN_TYPE,
                f"the escrow does not answer {envelope.type!r} version {envelope.version}",
                to=request.sender,
                now=now,
            )
            return Outcome(False, reply, decision="refused:unknown_type", **base)
        try:
            body = parse_body(envelope.type, envelope.version, envelope.body)
        except UnknownMessage as exc:
            reply = self._replies.error(
                envelope, ErrorCode.MALFORMED, str(exc), to=request.sender, now=now
            )
            return Outcome(False, reply, decision="refused:malformed", **base)
        # 5. One transaction: record, decide, change state, store reply and outbox.
        try:
            async with self._write_lock, transaction(self._write) as conn:
                stored = await store.find_request(conn, envelope.request_id)
                if stored is not None:  # another worker answered it meanwhile
                    return await self._again(conn, stored, request, digest, now)
                try:
                    await replay.check_and_record(conn, request.replay_key(self._max_skew), now=now)
                except RequestRejected as exc:
                    reply = self._replies.error(
                        envelope, ErrorCode.REPLAYED, exc.message, to=request.sender, now=now
                    )
                    return Outcome(False, reply, decision="refused:replayed", **base)
                context = Context(
                    conn=conn,
                    escrow_name=self._name,
                    ca=self._ca,
                    encryption_key=self._encryption_key,
                    vault=self._vault,
                    request=request,
                    body=body,
                    now=now,
                )
                result = await handler(context)
                reply, events = await self._store_result(conn, request, digest, result, now)
        except EscrowError as exc:
            # Rolled back: nothing is stored, so the same request may be tried again.
            _log.error("request %s failed inside the escrow: %s", envelope.request_id, exc.message)
            reply = self._replies.error(
                envelope,
                ErrorCode.INTERNAL,
                "the escrow could not process the request; send it again later",
                to=request.sender,
                now=now,
            )
            return Outcome(False, reply, decision="failed:internal", **base)
        decision = "ok" if result.decision == "ok" else f"refused:{result.decision}"
        return Outcome(False, reply, events, decision=decision, stored=True, **base)

    def _unauthenticated(
        self, claimed: Envelope, exc: RequestRejected | CertificateRejected, now: datetime
    ) -> Outcome:
        """Answer to the claimed inbox, which nothing vouches for: never declared."""
        base = Who(request_id=claimed.request_id, request_type=claimed.type, requester="?")
        decision = f"unauthenticated:{exc.reason.value}"
        try:
            Inbox(claimed.reply_to)
        except BrokerError:
            return Outcome(False, None, decision=decision, **base)
        reply = self._replies.error(
            claimed,
            ErrorCode.UNAUTHENTICATED,
            exc.message,
            to=claimed.reply_to,
            now=now,
            detail=exc.reason.value,
            declare=False,
        )
        return Outcome(False, reply, decision=decision, **base)

    async def _again(
        self,
        conn: aiosqlite.Connection,
        stored: store.StoredRequest,
        request: VerifiedRequest,
        digest: str,
        now: datetime,
    ) -> Outcome:
        envelope = request.envelope
        base = Who(
            request_id=envelope.request_id, request_type=envelope.type, requester=request.sender
        )
        if stored.signer != envelope.signer or stored.request_sha256 != digest:
            reply = self._replies.error(
                envelope,
                ErrorCode.REPLAYED,
                f"request id {envelope.request_id} was already used for another request",
                to=request.sender,
                now=now,
            )
            return Outcome(False, reply, decision="refused:replayed", **base)
        message = Message(
            body=stored.reply,
            message_id=stored.reply_id,
            type=stored.reply_type,
            correlation_id=stored.request_id,
        )
        unsent = await store.unsent_for(conn, stored.request_id)
        events = tuple(outbox_message(row) for row in unsent)
        return Outcome(
            False,
            Outgoing(stored.signer_name, message),
            events,
            decision=f"resent:{stored.decision}",
            stored=True,
            **base,
        )

    async def _store_result(
        self,
        conn: aiosqlite.Connection,
        request: VerifiedRequest,
        digest: str,
        result: Result,
        now: datetime,
    ) -> tuple[Outgoing, tuple[Outgoing, ...]]:
        envelope = request.envelope
        t = int(now.timestamp())
        reply = self._replies.sign(
            result.reply_type,
            result.reply,
            audience=request.sender,
            now=now,
            correlation_id=envelope.request_id,
        )
        await store.insert_request(
            conn,
            store.StoredRequest(
                request_id=envelope.request_id,
                signer=envelope.signer,
                signer_name=request.sender,
                type=envelope.type,
                request_sha256=digest,
                decision=result.decision,
                reply_id=reply.message_id,
                reply_type=reply.type,
                reply=reply.body,
            ),
            consignment_id=result.consignment_id,
            now=t,
        )
        events = []
        for notice in result.notices:
            events.append(await self._enqueue(conn, envelope.request_id, notice, now))
        return Outgoing(request.sender, reply), tuple(events)

    async def _enqueue(
        self, conn: aiosqlite.Connection, request_id: str, notice: Notice, now: datetime
    ) -> Outgoing:
        message = self._replies.sign(
            notice.type,
            notice.body,
            audience=notice.destination,
            now=now,
            correlation_id=request_id,
        )
        outbox_id = await store.add_outbox(
            conn,
            request_id,
            notice.destination,
            message.message_id,
            message.type,
            message.body,
            now=int(now.timestamp()),
        )
        return Outgoing(notice.destination, message, outbox_id=outbox_id)

    # -- the outbox -----------------------------------------------------------------

    async def mark_sent(self, outbox_ids: Iterable[int]) -> None:
        """Record that these outbox messages were published (confirmed)."""
        ids = list(outbox_ids)
        if not ids:
            return
        # Under load many requests wait for the write lock at once: whoever gets
        # it marks every id queued so far in one transaction (one commit, not
        # one each). Ours are committed when we hold the lock, by us or earlier.
        self._to_mark.extend(ids)
        async with self._write_lock:
            batch, self._to_mark = self._to_mark, []
            if not batch:
                return
            try:
                async with transaction(self._write) as conn:
                    await store.mark_sent(conn, batch, now=int(self.now().timestamp()))
            except sqlite3.OperationalError as exc:
                # Not marked: they are published again later, with the same message ids.
                _log.warning("could not mark %d outbox messages sent: %s", len(batch), exc)

    async def prune_seen(self) -> int:
        """Forget request ids and nonces whose envelopes expired (plus the clock
        skew): the freshness check refuses those envelopes anyway, and stored
        replies are kept. Returns how many were forgotten."""
        async with self._write_lock, transaction(self._write) as conn:
            return await replay.prune(conn, now=self.now())

    async def pending_outbox(
        self, *, older_than: timedelta = timedelta(seconds=30), limit: int = 500
    ) -> Sequence[Outgoing]:
        """Outbox messages still unsent `older_than` after they were stored, e.g.
        because a worker died after its commit and the request never came back."""
        before = int((self.now() - older_than).timestamp())
        return [outbox_message(row) for row in await store.unsent_before(self._read, before, limit)]

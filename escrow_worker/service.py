"""`EscrowService`: what an escrow does with one request, without the transport.

`handle(body)` runs steps 1-5 of docs/protocol.md ("What a worker does with one
request") on the bytes of one message and returns an `Outcome`: dead-letter it,
or the signed reply and the events to publish. `EscrowWorker` (`worker.py`)
publishes them and acks. The service holds the escrow's keys, its master
keyring and its store (`state`: SQLite in the escrow directory, or PostgreSQL).

Steps 2-5 of one request are ONE store job, so one transaction and, on SQLite,
one hand-off to the store's thread: authenticate, look for a stored reply,
check freshness and replay, decide, store the signed reply and the outbox. A
decision is taken once per request id: the reply is stored in the same
transaction as the state change and the outbox, and any later delivery of the
same signed bytes gets the stored reply again. The envelope is parsed once, the
body once, the reply signed once. This module must never log a message body, a
key or a passphrase, and never act on an unsigned field.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography import x509

from broker import (
    MAX_ENVELOPE_BYTES,
    BrokerError,
    Envelope,
    Message,
    Requeue,
    SignedEnvelope,
)
from broker.errors import CertificateRejected
from broker.messages import ErrorCode, UnknownMessage, parse_body
from broker.pki.checks import require_aware
from broker.pki.profile import fingerprint
from broker.txlog import SignedHead
from escrow_worker import faults
from escrow_worker.ca.authority import ServiceKeys, load_service_keys
from escrow_worker.ca.directory import certificate_by_fingerprint, escrow_name
from escrow_worker.ca.notary import HeadSigner, sign_current_head
from escrow_worker.errors import EscrowError, RequestReason, RequestRejected
from escrow_worker.handlers import HANDLERS, expiry, journal
from escrow_worker.handlers.auth import (
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_SKEW,
    VerifiedRequest,
    authenticate_request,
    check_times,
)
from escrow_worker.handlers.common import Context, Notice, Result
from escrow_worker.replies import Outcome, Outgoing, Replies, Who, outbox_message
from escrow_worker.state import records, replay
from escrow_worker.state.base import Store, StoreBusy, Tx
from escrow_worker.state.location import Location
from escrow_worker.state.masterkey import KeyringStale, Vault, adopt_keyring, ensure_keyring

__all__ = ["EscrowService"]

_log = logging.getLogger(__name__)


#: Outbox ids marked sent by a request's job once this many are waiting (one
#: statement for them all; the worker marks the rest whenever it goes idle).
#: A worker that dies publishes at most these again, with the same message ids.
_MARKS_AT_ONCE = 32


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EscrowService:
    """The escrow's request handling. Open with `await EscrowService.open(...)`."""

    def __init__(
        self,
        *,
        location: Location,
        store: Store,
        name: str,
        keys: ServiceKeys,
        vault: Vault,
        clock: Callable[[], datetime],
        max_skew: timedelta = DEFAULT_MAX_SKEW,
        max_lifetime: timedelta = DEFAULT_MAX_LIFETIME,
        max_request_bytes: int = MAX_ENVELOPE_BYTES,
    ) -> None:
        self._location = location
        self._store = store
        self._name = name
        self._keys = keys
        self._ca = keys.ca_certificate
        self._encryption_key = keys.encryption_key
        self._replies = Replies(keys.signing_key, fingerprint(keys.signing_certificate))
        self._vault = vault
        #: Outbox ids published since the last job: marked sent by the next one.
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
        where: Location | Path | str,
        passphrase: bytes,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> EscrowService:
        """Open the escrow at `where` (its directory, a postgresql:// URL, or a
        `Location`): its store, the CA certificate, the escrow's signing and
        encryption keys and the master keyring (created on first use).

        Raises `EscrowError` (e.g. `IdentityFileError("wrong_passphrase")`)."""
        clock = clock if clock is not None else _utcnow
        require_aware(clock())
        location = Location.of(where)
        location.require_initialised()
        db = await location.open_store()
        try:
            keystore = location.keystore(db)
            keys = await load_service_keys(keystore, passphrase)
            keyring = await ensure_keyring(keystore, passphrase, now=clock())
            await adopt_keyring(db, keyring)
            name = await db.run(escrow_name)
        except BaseException:
            await db.close()
            raise
        return cls(
            location=location,
            store=db,
            name=name,
            keys=keys,
            vault=Vault(keystore, passphrase, keyring),
            clock=clock,
        )

    async def close(self) -> None:
        """Finish what the store has queued and close it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.flush_marks()
        await self._store.close()

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
    def location(self) -> Location:
        return self._location

    @property
    def store(self) -> Store:
        return self._store

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
        raises `Requeue` when the store is busy or unreachable (try again)."""
        now = self.now()
        # 1. Size and parse, once; what cannot be parsed cannot be answered.
        if len(data) > self._max_request_bytes:
            return Outcome(dead_letter=True, decision="dead-letter:oversize")
        try:
            signed = SignedEnvelope.from_wire(data)
            claimed = signed.unverified()
        except BrokerError:
            return Outcome(dead_letter=True, decision="dead-letter:malformed")
        marks: list[int] = []
        if len(self._to_mark) >= _MARKS_AT_ONCE:
            marks, self._to_mark = self._to_mark, []
        try:
            for _ in range(2):
                try:

                    async def job(tx: Tx) -> Outcome:
                        outcome = await self._decide(tx, signed, claimed, now)
                        faults.reach("decided")  # reliability tests: before the commit
                        if marks:
                            await records.mark_sent(tx, marks, now=int(now.timestamp()))
                        return outcome

                    return await self._store.run(job)
                except KeyringStale:  # a rotation happened: load the new keyring
                    await self._vault.reload()
            raise EscrowError("the master keyring does not hold the current key")
        except StoreBusy as exc:
            self._to_mark.extend(marks)
            raise Requeue(exc.message) from exc
        except EscrowError as exc:
            # Rolled back: nothing is stored, so the same request may be tried again.
            self._to_mark.extend(marks)
            _log.error("request %s failed inside the escrow: %s", claimed.request_id, exc.message)
            reply = self._replies.error(
                claimed,
                ErrorCode.INTERNAL,
                "the escrow could not process the request; send it again later",
                to=claimed.reply_to,
                now=now,
            )
            who = Who(request_id=claimed.request_id, request_type=claimed.type, requester="?")
            return Outcome(False, reply, decision="failed:internal", **who)

    async def _decide(
        self, tx: Tx, signed: SignedEnvelope, claimed: Envelope, now: datetime
    ) -> Outcome:
        """Steps 2-5, inside one transaction. Awaits nothing but `tx`."""
        # Two workers with the same request wait for each other (PostgreSQL).
        await tx.lock(claimed.request_id)
        # 2. Authenticate, but leave freshness until a stored reply was looked for.
        try:
            request = await authenticate_request(
                tx,
                (signed, claimed),
                audience=self._name,
                ca=self._ca,
                now=now,
                max_skew=self._max_skew,
                max_lifetime=self._max_lifetime,
                check_freshness=False,
            )
        except (RequestRejected, CertificateRejected) as exc:
            return await self._unauthenticated(tx, claimed, exc, now)
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
        stored = await records.find_request(tx, envelope.request_id)
        if stored is not None:
            return await self._again(tx, stored, request, digest, now)
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
        # 5. Record, decide, change state, store the reply and the outbox.
        try:
            await replay.check_and_record(tx, request.replay_key(self._max_skew), now=now)
        except RequestRejected as exc:
            reply = self._replies.error(
                envelope, ErrorCode.REPLAYED, exc.message, to=request.sender, now=now
            )
            return Outcome(False, reply, decision="refused:replayed", **base)
        context = Context(
            tx=tx,
            escrow_name=self._name,
            ca=self._ca,
            encryption_key=self._encryption_key,
            vault=self._vault,
            request=request,
            body=body,
            now=now,
        )
        result = await handler(context)
        reply, events = await self._store_result(tx, signed, request, digest, result, now)
        decision = "ok" if result.decision == "ok" else f"refused:{result.decision}"
        return Outcome(False, reply, events, decision=decision, stored=True, **base)

    async def _unauthenticated(
        self, tx: Tx, claimed: Envelope, exc: RequestRejected | CertificateRejected, now: datetime
    ) -> Outcome:
        """A request that failed authentication decided nothing, and nothing about
        it goes where the request says: its `reply_to` (and anything in it) is an
        attacker's to choose. When the signer it claims is a certificate this
        escrow issued, that party, and only it, is told (a copy of its request
        forged in flight, or its own misconfiguration); the error names no
        decision, so its agent keeps waiting for the real answer."""
        base = Who(request_id=claimed.request_id, request_type=claimed.type, requester="?")
        decision = f"unauthenticated:{exc.reason.value}"
        record = await certificate_by_fingerprint(tx, claimed.signer)
        if record is None:
            return Outcome(False, None, decision=f"{decision}:unanswered", **base)
        reply = self._replies.error(
            claimed,
            ErrorCode.UNAUTHENTICATED,
            exc.message,
            to=record.name,
            now=now,
            detail=exc.reason.value,
        )
        return Outcome(False, reply, decision=decision, **base)

    async def _again(
        self,
        tx: Tx,
        stored: records.StoredRequest,
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
        unsent = await records.unsent_for(tx, stored.request_id)
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
        tx: Tx,
        signed: SignedEnvelope,
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
        await records.insert_request(
            tx,
            records.StoredRequest(
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
        tx.log(
            journal.request_item(
                signed, request, result, reply_id=reply.message_id, reply_body=reply.body, at=t
            )
        )
        events = []
        for notice in result.notices:
            events.append(await self._enqueue(tx, envelope.request_id, notice, now))
        return Outgoing(request.sender, reply), tuple(events)

    async def _enqueue(self, tx: Tx, request_id: str, notice: Notice, now: datetime) -> Outgoing:
        message = self._replies.sign(
            notice.type,
            notice.body,
            audience=notice.destination,
            now=now,
            correlation_id=request_id,
        )
        outbox_id = await records.add_outbox(
            tx,
            request_id,
            notice.destination,
            message.message_id,
            message.type,
            message.body,
            now=int(now.timestamp()),
        )
        tx.log(journal.message_item(notice, message.message_id, request_id, int(now.timestamp())))
        return Outgoing(notice.destination, message, outbox_id=outbox_id)

    # -- the outbox -----------------------------------------------------------------

    def mark_sent(self, outbox_ids: Iterable[int]) -> None:
        """Record that these outbox messages were published (confirmed). They are
        marked in the store by a request's job once `_MARKS_AT_ONCE` wait (no
        transaction of their own under load), by the worker when it goes idle,
        or by the sweep; if this worker dies first, they are published again,
        with the same message ids."""
        self._to_mark.extend(outbox_ids)

    async def flush_marks(self) -> None:
        """Mark in the store what `mark_sent` was told (the worker does it when it
        stops and before each sweep)."""
        marks, self._to_mark = self._to_mark, []
        if not marks:
            return
        now = int(self.now().timestamp())

        async def job(tx: Tx) -> None:
            await records.mark_sent(tx, marks, now=now)

        try:
            await self._store.run(job)
        except EscrowError as exc:
            _log.warning("could not mark %d outbox messages sent: %s", len(marks), exc.message)

    async def prune_seen(self) -> int:
        """Forget request ids and nonces whose envelopes expired (plus the clock
        skew): the freshness check refuses those envelopes anyway, and stored
        replies are kept. Returns how many were forgotten."""
        now = self.now()

        async def job(tx: Tx) -> int:
            return await replay.prune(tx, now=now)

        return await self._store.run(job)

    async def expire_due(self) -> Sequence[Outgoing]:
        """Put one `expired` event per receiver whose window closed unused in the
        outbox (`handlers.expiry`), each once whichever worker sweeps; return
        them to publish."""
        now = self.now()

        async def job(tx: Tx) -> list[Outgoing]:
            due = await expiry.expire_due(tx, now=int(now.timestamp()))
            return [await self._enqueue(tx, rid, notice, now) for rid, notice in due]

        return await self._store.run(job)

    async def sign_log_head(self, *, only_if_grown: bool = False) -> SignedHead | None:
        """Sign the transaction log's current head and keep it (`ca.notary`)."""
        signer = HeadSigner(self._name, self._keys.signing_key, self._keys.signing_certificate)
        return await sign_current_head(
            self._store, signer, now=self.now(), only_if_grown=only_if_grown
        )

    async def pending_outbox(
        self, *, older_than: timedelta = timedelta(seconds=30), limit: int = 500
    ) -> Sequence[Outgoing]:
        """Outbox messages still unsent `older_than` after they were stored, e.g.
        because a worker died after its commit and the request never came back."""
        await self.flush_marks()
        before = int((self.now() - older_than).timestamp())

        async def job(tx: Tx) -> list[records.OutboxRow]:
            return await records.unsent_before(tx, before, limit)

        return [outbox_message(row) for row in await self._store.run(job)]

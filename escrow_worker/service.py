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
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from broker import (
    BrokerError,
    Envelope,
    Message,
    Requeue,
    SignedEnvelope,
)
from broker.errors import CertificateRejected
from broker.messages import ErrorCode, UnknownMessage, parse_body
from broker.pki.checks import require_aware
from escrow_worker import faults
from escrow_worker.ca.authority import load_service_keys
from escrow_worker.ca.directory import certificate_by_fingerprint, escrow_name
from escrow_worker.errors import EscrowError, RequestReason, RequestRejected
from escrow_worker.handlers import HANDLERS, journal
from escrow_worker.handlers.auth import (
    VerifiedRequest,
    authenticate_request,
    check_times,
)
from escrow_worker.handlers.common import Context, Result
from escrow_worker.outbox import MARKS_AT_ONCE, OutboxService, utcnow
from escrow_worker.replies import Outcome, Outgoing, Who, outbox_message
from escrow_worker.state import records, replay
from escrow_worker.state.base import StoreBusy, Tx
from escrow_worker.state.location import Location
from escrow_worker.state.masterkey import KeyringStale, Vault, adopt_keyring, ensure_keyring

__all__ = ["EscrowService"]

_log = logging.getLogger(__name__)


class EscrowService(OutboxService):
    """The escrow's request handling. Open with `await EscrowService.open(...)`."""

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
        clock = clock if clock is not None else utcnow
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
        if len(self._to_mark) >= MARKS_AT_ONCE:
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
        if envelope.reply_to != request.sender:
            return self._refused(
                request,
                ErrorCode.UNAUTHENTICATED,
                f"reply_to must be your own name {request.sender!r}",
                now,
                "reply_to",
                detailed=True,
            )
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
            return self._refused(request, code, exc.message, now, exc.reason.value, detailed=True)
        # The body must be one of the requests this escrow answers.
        handler = HANDLERS.get((envelope.type, envelope.version))
        if handler is None:
            what = f"the escrow does not answer {envelope.type!r} version {envelope.version}"
            return self._refused(request, ErrorCode.UNKNOWN_TYPE, what, now, "unknown_type")
        try:
            body = parse_body(envelope.type, envelope.version, envelope.body)
        except UnknownMessage as exc:
            return self._refused(request, ErrorCode.MALFORMED, str(exc), now, "malformed")
        # 5. Record, decide, change state, store the reply and the outbox.
        try:
            await replay.check_and_record(tx, request.replay_key(self._max_skew), now=now)
        except RequestRejected as exc:
            return self._refused(request, ErrorCode.REPLAYED, exc.message, now, "replayed")
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
        return Outcome(False, reply, events, decision=decision, stored=True, **_who(request))

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

    def _refused(
        self,
        request: VerifiedRequest,
        code: ErrorCode,
        message: str,
        now: datetime,
        why: str,
        *,
        detailed: bool = False,
    ) -> Outcome:
        """An authenticated request refused before any decision: a signed error
        to its sender, recorded as `refused:<why>` (with `detailed`, `why` is
        also the error's detail)."""
        envelope = request.envelope
        reply = self._replies.error(
            envelope, code, message, to=request.sender, now=now, detail=why if detailed else None
        )
        return Outcome(False, reply, decision=f"refused:{why}", **_who(request))

    async def _again(
        self,
        tx: Tx,
        stored: records.StoredRequest,
        request: VerifiedRequest,
        digest: str,
        now: datetime,
    ) -> Outcome:
        envelope = request.envelope
        if stored.signer != envelope.signer or stored.request_sha256 != digest:
            used = f"request id {envelope.request_id} was already used for another request"
            return self._refused(request, ErrorCode.REPLAYED, used, now, "replayed")
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
            **_who(request),
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
        for item in journal.batch_items(signed, request, result, reply_id=reply.message_id, at=t):
            tx.log(item)
        events = []
        for notice in result.notices:
            events.append(await self._enqueue(tx, envelope.request_id, notice, now))
        return Outgoing(request.sender, reply), tuple(events)


def _who(request: VerifiedRequest) -> Who:
    envelope = request.envelope
    return Who(request_id=envelope.request_id, request_type=envelope.type, requester=request.sender)

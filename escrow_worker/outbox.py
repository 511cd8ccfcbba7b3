"""`OutboxService`: what the escrow keeps besides deciding requests: its keys,
clock and store, the outbox (messages stored in a decision's transaction,
marked sent once published) and the sweeps every worker runs (unsent outbox
messages, expired request ids, windows that closed unused, signed log heads,
the worker's heartbeat).

`EscrowService` (`service.py`) builds on it and adds the request steps. This
module must never log a message body, a key or a passphrase.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509

from broker import MAX_ENVELOPE_BYTES
from broker.lifecycle import Resource
from broker.pki.checks import require_aware
from broker.pki.profile import fingerprint
from broker.txlog import SignedHead
from escrow_worker.ca.authority import ServiceKeys
from escrow_worker.ca.notary import HeadSigner, sign_current_head
from escrow_worker.errors import EscrowError
from escrow_worker.handlers import expiry, journal
from escrow_worker.handlers.auth import DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SKEW
from escrow_worker.handlers.common import Notice
from escrow_worker.replies import Outgoing, Replies, outbox_message
from escrow_worker.state import heartbeats, records, replay
from escrow_worker.state.base import Store, Tx
from escrow_worker.state.location import Location
from escrow_worker.state.masterkey import Vault

__all__ = ["MARKS_AT_ONCE", "OutboxService", "utcnow"]

_log = logging.getLogger("escrow_worker.service")

#: Outbox ids marked sent by a request's job once this many are waiting (one
#: statement for them all; the worker marks the rest whenever it goes idle).
#: A worker that dies publishes at most these again, with the same message ids.
MARKS_AT_ONCE = 32


def utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxService(Resource):
    """The escrow's keys, clock, store and outbox; see the module docstring."""

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

    async def close(self) -> None:
        """Finish what the store has queued and close it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.flush_marks()
        await self._store.close()

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

    # -- the outbox -----------------------------------------------------------------

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

    def mark_sent(self, outbox_ids: Iterable[int]) -> None:
        """Record that these outbox messages were published (confirmed). They are
        marked in the store by a request's job once `MARKS_AT_ONCE` wait (no
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

    async def heartbeat(self, beat: heartbeats.Heartbeat) -> None:
        """Write a worker's heartbeat row (`state.heartbeats`)."""

        async def job(tx: Tx) -> None:
            await heartbeats.beat(tx, beat)

        await self._store.run(job)

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

"""`EscrowWorker`: consumes the escrow work queue and runs `EscrowService` on
every request, up to `prefetch` at once.

Per delivery, inside `Delivery.process()` (the one place that settles it):
steps 1-5 are the service's; then 6. publish the reply and the outbox with
publisher confirms and mark the outbox sent; 7. ack. An unparseable delivery is
rejected to the dead-letter queue; a transient broker or database failure
requeues it, and its next delivery gets the stored reply. Any other failure is
logged and dead-lettered: the worker keeps serving. A background sweep publishes
outbox messages left unsent by a worker that died after its commit (or that
the broker refused), prunes the replay table of expired request ids, and tells
senders of receivers' windows that closed unused (`expired` events, each once
whichever worker sweeps).

Several workers, in one process or many, may consume the same queue. This module
must never log a message body, and never ack before the reply is confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Mapping, Sequence

from broker import BrokerError, Deliveries, Delivery, Inbox, Transport
from broker.errors import PublishRefused, TopologyError, Unroutable
from escrow_worker import faults
from escrow_worker.replies import Outcome, Outgoing
from escrow_worker.service import EscrowService
from escrow_worker.state.heartbeats import Heartbeat
from escrow_worker.undelivered import Undelivered

__all__ = ["EscrowWorker"]

_log = logging.getLogger(__name__)


class EscrowWorker:
    """Serves the escrow work queue of `transport` with `service`.

    ``await worker.run(stop)`` declares the escrow queues and consumes until
    `stop` is set (or the transport closes); requests in progress then finish
    before it returns. Cancelling `run` returns unfinished deliveries to the queue.
    """

    def __init__(
        self,
        service: EscrowService,
        transport: Transport,
        *,
        prefetch: int = 32,
        sweep_interval: float = 30.0,
    ) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        faults.check()  # CONSIGN_TEST_KILL_AT, for the reliability tests only
        self._service = service
        self._transport = transport
        self._prefetch = prefetch
        self._sweep_interval = sweep_interval
        self._declared: set[str] = set()
        self._publishing: set[int] = set()
        self._busy = 0  # lanes handling a delivery right now
        #: Deliveries settled so far (answered, dead-lettered or requeued).
        self.processed = 0
        #: This worker's id in its heartbeats (`state.heartbeats`), random per worker.
        self.worker_id = secrets.token_hex(8)
        self._started: int | None = None
        self._undelivered = Undelivered(transport)

    @property
    def undelivered(self) -> Mapping[str, int]:
        """The metric of messages no inbox took: inbox queue name -> count."""
        return self._undelivered.counts

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop if stop is not None else asyncio.Event()
        await self._transport.declare_escrow_queues()
        await self._beat()
        sweeper = asyncio.create_task(self._sweep(stop))
        queue = self._transport.config.escrow_queue
        try:
            async with self._transport.consume(queue, prefetch=self._prefetch) as deliveries:
                _log.info("escrow %r serving %s", self._service.name, queue)
                # `prefetch` lanes, each taking the next delivery when it is done
                # with one: no task or future per delivery. Stopping the
                # consumer ends every lane once its request is finished.
                lanes = [asyncio.create_task(self._lane(deliveries)) for _ in range(self._prefetch)]
                stopper = asyncio.create_task(self._stop_when(stop, deliveries))
                try:
                    await asyncio.gather(*lanes)
                finally:
                    stopper.cancel()
                    for lane in lanes:
                        lane.cancel()
                    await asyncio.gather(stopper, *lanes, return_exceptions=True)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await self._service.flush_marks()
            await self._beat(stopped=True)
        _log.info("escrow %r stopped serving %s", self._service.name, queue)

    @staticmethod
    async def _stop_when(stop: asyncio.Event, deliveries: Deliveries) -> None:
        await stop.wait()
        deliveries.stop()

    async def _lane(self, deliveries: Deliveries) -> None:
        async for delivery in deliveries:
            self._busy += 1
            try:
                await self._process(delivery)
            finally:
                self._busy -= 1
            if self._busy == 0:  # idle: record what was published meanwhile
                await self._service.flush_marks()

    async def _process(self, delivery: Delivery) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome: Outcome | None = None
        faults.reach("received")
        async with delivery.process():
            outcome = await self._service.handle(delivery.body)
            if outcome.dead_letter:
                await delivery.reject(requeue=False)
            else:
                faults.reach("committed")
                await self._publish([o for o in (outcome.reply,) if o is not None], outcome.events)
                faults.reach("replied")
        self.processed += 1
        elapsed = (loop.time() - started) * 1000
        if outcome is None:
            _log.info("%s: not answered (%.1f ms)", delivery.message_id, elapsed)
        else:
            _log.info(
                "%s %s from %s: %s (%.1f ms)",
                outcome.request_id or delivery.message_id,
                outcome.request_type or "-",
                outcome.requester or "-",
                outcome.decision,
                elapsed,
            )

    async def _publish(self, replies: Sequence[Outgoing], events: Sequence[Outgoing]) -> None:
        """Publish everything concurrently; mark what was confirmed; then raise the
        first failure, if any (a transient one requeues the delivery)."""
        # An event this worker is publishing already (the same request delivered
        # twice at once) is not published twice by it; other workers may, and the
        # message id is what agents deduplicate on.
        mine = [e for e in events if e.outbox_id not in self._publishing]
        ids = {e.outbox_id for e in mine if e.outbox_id is not None}
        self._publishing |= ids
        try:
            items = [*replies, *mine]
            results = await asyncio.gather(*(self._send(o) for o in items), return_exceptions=True)
            self._service.mark_sent(
                o.outbox_id
                for o, result in zip(items, results, strict=True)
                if result is True and o.outbox_id is not None
            )
        finally:
            self._publishing -= ids
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _send(self, outgoing: Outgoing) -> bool:
        """Publish one message; False if no inbox took it. Nothing is dropped
        silently: see `escrow_worker.undelivered` (kept, logged once, counted)."""
        if outgoing.declare:
            await self._declare(outgoing.destination)
        try:
            await self._transport.publish(Inbox(outgoing.destination), outgoing.message)
        except (Unroutable, PublishRefused) as exc:
            await self._undelivered.failed(outgoing, exc)
            return False
        self._undelivered.delivered(outgoing.destination)
        return True

    async def _declare(self, identity: str) -> None:
        """Declare a registered party's inbox once per worker, so that nothing the
        escrow sends it (a notification above all) is lost before it connects.
        If the broker refuses, the message is published all the same (the inbox
        may exist, bound, with other arguments) and declaring is tried next time."""
        if identity in self._declared:
            return
        try:
            await self._transport.declare_inbox(identity)
        except TopologyError as exc:
            self._undelivered.misdeclared(identity, exc)
            return
        self._declared.add(identity)

    async def _beat(self, *, stopped: bool = False) -> None:
        """Write this worker's heartbeat; a failure is logged, never raised (the
        worker keeps serving; the console shows it stale)."""
        now = int(self._service.now().timestamp())
        if self._started is None:
            self._started = now
        beat = Heartbeat(
            self.worker_id, socket.gethostname(), os.getpid(), self._started, now,
            self.processed, now if stopped else None,
        )  # fmt: skip
        try:
            await self._service.heartbeat(beat)
        except Exception as exc:  # bookkeeping must never stop the worker
            _log.warning("heartbeat not written: %s", exc)

    async def _sweep(self, stop: asyncio.Event) -> None:
        """Write the heartbeat, publish outbox messages that stayed unsent (a
        worker died after its commit), forget the request ids of expired
        envelopes, report windows that closed unused, and sign the transaction
        log's head if it grew."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._sweep_interval):
                    await stop.wait()
            if stop.is_set():
                return
            await self._beat()
            try:
                pending = await self._service.pending_outbox()
                if pending:
                    _log.info("publishing %d outbox messages left unsent", len(pending))
                    await self._publish((), pending)
                if forgotten := await self._service.prune_seen():
                    _log.info("forgot %d expired request ids", forgotten)
                if expired := await self._service.expire_due():
                    _log.info(
                        "%d receivers' windows closed unused: telling the senders", len(expired)
                    )
                    await self._publish((), expired)
                await self._service.sign_log_head(only_if_grown=True)
            except (BrokerError, OSError) as exc:
                _log.warning("outbox sweep failed: %s", exc)
            except Exception:
                _log.exception("outbox sweep failed")

"""A received message and the iterator over a consumer's deliveries.

`Delivery` is settled once (`ack()`, `reject()`, or by `process()`); `Deliveries`
is what `Transport.consume()` yields. Implementations subclass `Delivery` and
`_Consumer`. Must never import `client` or `escrow_worker`.
"""

from __future__ import annotations

import abc
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Self

from broker.errors import (
    BrokerError,
    DeliveryLost,
    TransportError,
)
from broker.transport.deadletter import DeadLetter

if TYPE_CHECKING:
    from broker.transport.base import Transport

_log = logging.getLogger("broker.transport.base")


class Requeue(BrokerError):
    """Raise inside `Delivery.process()` to put the message back for another try.

    For transient trouble (a database busy, a dependency down). The broker counts
    the return: past `delivery_limit` the message goes to the dead-letter queue.
    """

    def __init__(self, message: str = "requeue for another try", hint: str | None = None) -> None:
        super().__init__(message, hint)


class Delivery(abc.ABC):
    """One received message, to be settled once: `ack()` or `reject()`.

    Prefer `process()`, which settles in one place. A delivery not settled before
    its consumer closes is returned to its queue and delivered again.
    """

    __slots__ = (
        "_settled",
        "body",
        "correlation_id",
        "dead_letter",
        "headers",
        "message_id",
        "queue",
        "redelivered",
        "type",
    )

    def __init__(
        self,
        *,
        queue: str,
        body: bytes,
        message_id: str | None,
        correlation_id: str | None,
        type: str | None,
        headers: Mapping[str, str],
        redelivered: bool,
        dead_letter: DeadLetter | None,
    ) -> None:
        self.queue = queue
        self.body = body
        self.message_id = message_id
        self.correlation_id = correlation_id
        self.type = type
        self.headers = headers
        #: True when the broker delivered this message before (to anyone).
        self.redelivered = redelivered
        #: Set on messages read from the dead-letter queue.
        self.dead_letter = dead_letter
        self._settled = False

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} queue={self.queue!r} message_id={self.message_id!r} "
            f"type={self.type!r} size={len(self.body)} redelivered={self.redelivered}>"
        )

    @property
    def settled(self) -> bool:
        return self._settled

    async def ack(self) -> None:
        """Remove the message from its queue: it has been handled.

        Raises `DeliveryLost` if its channel closed first (it will come back).
        """
        self._begin_settle()
        await self._ack()

    async def reject(self, *, requeue: bool = False) -> None:
        """Dead-letter the message, or with `requeue=True` return it for another try."""
        self._begin_settle()
        await self._reject(requeue)

    def _begin_settle(self) -> None:
        if self._settled:
            raise RuntimeError(f"{self!r} is already settled")
        # Settled even if sending the ack fails: the broker then takes it back anyway.
        self._settled = True

    @contextlib.asynccontextmanager
    async def process(self) -> AsyncIterator[None]:
        """Settle the delivery according to how the block ends.

        - normal exit: ack (unless the block settled it itself);
        - `Requeue`, or a transient `TransportError` (e.g. the reply could not be
          published): return it for another try, bounded by the delivery limit;
        - any other exception: log it and reject without requeue, to the
          dead-letter queue. The exception is NOT re-raised, so a consumer loop
          keeps serving the next message;
        - cancellation (or KeyboardInterrupt): return it and re-raise.
        """
        try:
            yield
        except Requeue as exc:
            _log.info("requeueing %r: %s", self, exc)
            await self._settle_quietly(requeue=True)
        except TransportError as exc:
            if exc.transient:
                _log.warning("requeueing %r after a transient error: %s", self, exc)
                await self._settle_quietly(requeue=True)
            else:
                _log.exception("dead-lettering %r", self)
                await self._settle_quietly(requeue=False)
        except Exception:
            _log.exception("dead-lettering %r: its handler failed", self)
            await self._settle_quietly(requeue=False)
        except BaseException:
            await self._settle_quietly(requeue=True)
            raise
        else:
            if not self._settled:
                try:
                    await self.ack()
                except DeliveryLost as exc:
                    _log.warning("ack for %r lost; it will be redelivered: %s", self, exc)

    async def _settle_quietly(self, *, requeue: bool) -> None:
        if self._settled:
            return
        try:
            await self.reject(requeue=requeue)
        except DeliveryLost as exc:
            _log.warning("reject for %r lost; it will be redelivered: %s", self, exc)

    @abc.abstractmethod
    async def _ack(self) -> None: ...

    @abc.abstractmethod
    async def _reject(self, requeue: bool) -> None: ...


class _Consumer(abc.ABC):
    """What an implementation provides behind `Transport.consume()`."""

    @abc.abstractmethod
    async def next(self) -> Delivery | None:
        """The next delivery within the prefetch bound; None once stopped.

        Must be safe to cancel: a cancelled call loses no message.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Make `next()` return None from now on (the transport is closing)."""

    def end(self) -> None:
        """Make `next()` return None from now on, the consumer itself staying
        open until `close()` (its user has had enough)."""
        self.stop()

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consuming; every unsettled delivery goes back to the queue."""


class Deliveries:
    """Async iterator over one consumer's deliveries (see `Transport.consume`).

    Ends when the transport closes. Cancelling a pending `__anext__` (e.g. with
    `asyncio.timeout`) loses nothing and the iterator stays usable.
    """

    def __init__(self, transport: Transport, consumer: _Consumer) -> None:
        self._transport = transport
        self._consumer = consumer

    def __aiter__(self) -> Self:
        return self

    def stop(self) -> None:
        """End the iteration for every task iterating: each gets StopAsyncIteration
        at its next step (a delivery it holds is its own to settle). Leaving the
        `consume` block then cancels the consumer as usual."""
        self._consumer.end()

    async def __anext__(self) -> Delivery:
        while True:
            delivery = await self._consumer.next()
            if delivery is None:
                raise StopAsyncIteration
            if await self._transport._admit(delivery):
                return delivery

"""The expiry sweep's decisions: which receivers' windows closed unused, each
claimed once, and the `expired` event for its sender.

Run by the workers' sweep (`EscrowService.expire_due`, inside one store job that
also signs the events and puts them in the outbox). A receiver's window closes
at its `closes_at` (`decide.window_closes`: its own or the policy-wide
`not_after`, or `ask_within_seconds` after its notification, whichever is
first); a key is still released at exactly that second, so it is reported one
second later at the earliest. Only receivers with no release and not revoked
are reported, and each only once: `state.attestations.mark_expired` claims it
in the same transaction, so two workers sweeping at once (either backend)
never both report it. This module must never send or sign anything.
"""

from __future__ import annotations

from broker.canonical import iso_utc
from broker.messages import EventBody, EventKind, MessageType
from escrow_worker.handlers.common import Notice
from escrow_worker.state import attestations, records
from escrow_worker.state.base import Tx

#: Receivers reported per sweep (the next sweep takes the rest).
SWEEP_LIMIT = 500


async def expire_due(tx: Tx, *, now: int, limit: int = SWEEP_LIMIT) -> list[tuple[str, Notice]]:
    """(the deposit's request id, the `expired` event) for each receiver whose
    window closed before `now` unused, claimed in this transaction."""
    out: list[tuple[str, Notice]] = []
    for closed in await attestations.closed_unused(tx, now=now, limit=limit):
        if not await attestations.mark_expired(tx, closed.consignment_id, closed.receiver, now=now):
            continue  # another worker claimed it meanwhile
        row = await records.get_deposit(tx, closed.consignment_id)
        assert row is not None  # a receiver row has its deposit
        attributes = row.policy.attributes_for(closed.receiver)
        which = "not_after" if attributes.not_after == closed.closes_at else "ask_within"
        body = EventBody(
            consignment_id=closed.consignment_id,
            kind=EventKind.EXPIRED,
            receiver=closed.receiver,
            reason=f"{which}: the window closed at {iso_utc(closed.closes_at)} with no release",
            at=now,
        )
        out.append((closed.deposit_request_id, Notice(closed.sender, MessageType.EVENT, body)))
    return out

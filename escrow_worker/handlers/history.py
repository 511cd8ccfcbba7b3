"""`history`: a party of a consignment gets the transaction log's entries about
it, in a reply the escrow signs (docs/log.md; docs/protocol.md, "History").

The sender and the co-signers get every entry about the consignment; a
receiver gets those that name it (the deposit, its notification, its own
requests and what was decided about them). The reply also states the log's
size and head hash at that moment, so it doubles as a signed head. Read-only:
this handler changes nothing but what every decided request adds (its own
log entry, appended after the page is read).
"""

from __future__ import annotations

import json

from broker.messages import (
    HISTORY_PAGE,
    ErrorCode,
    HistoryBody,
    HistoryEntry,
    HistoryReplyBody,
    MessageType,
)
from broker.txlog import entry_hash, genesis
from escrow_worker.handlers.common import Context, Result, refuse
from escrow_worker.handlers.decide import Denial
from escrow_worker.state import records, txlog

__all__ = ["handle_history"]


async def handle_history(ctx: Context) -> Result:
    assert isinstance(ctx.body, HistoryBody)
    cid = ctx.body.consignment_id
    row = await records.get_deposit(ctx.tx, cid)
    if row is None:
        unknown = Denial(ErrorCode.UNKNOWN_CONSIGNMENT, "no consignment with this id is deposited")
        return refuse(ctx, unknown, consignment_id=cid)
    everything = ctx.requester == row.sender or ctx.requester in row.policy.attributes.cosigners
    receivers = {r.name for r in row.policy.receivers}
    if not everything and ctx.requester not in receivers:
        outsider = Denial(
            ErrorCode.NOT_ALLOWED,
            "only the sender, a receiver or a co-signer of a consignment gets its history",
        )
        return refuse(ctx, outsider, consignment_id=cid)
    where = txlog.Filter(
        consignment=cid,
        party=None if everything else ctx.requester,
        after=ctx.body.after,
        limit=HISTORY_PAGE + 1,
    )
    found = await txlog.find(ctx.tx, where)
    page = found[:HISTORY_PAGE]
    head = await txlog.head(ctx.tx)
    size, last = head if head is not None else (0, genesis(ctx.escrow_name))
    reply = HistoryReplyBody(
        in_reply_to=ctx.request_id,
        consignment_id=cid,
        entries=tuple(HistoryEntry(entry=json.loads(e), hash=entry_hash(e)) for e in page),
        complete=len(found) <= HISTORY_PAGE,
        log_size=size,
        log_head=last,
    )
    return Result(MessageType.HISTORY_REPLY, reply, (), cid)

"""A consignment's history, as the escrow's transaction log holds it: every
entry about it that the asking party may see (docs/protocol.md, "History";
docs/log.md). Each page is a reply the escrow signed; each entry's hash is
checked against the entry as received, so what is kept is proof on its own.
This module must never accept an entry whose hash does not match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.messages import HistoryBody, HistoryReplyBody, MessageType
from broker.txlog import Entry
from client.agent.inputs import require_consignment_id
from client.errors import UntrustedMessage

if TYPE_CHECKING:
    from client.agent.core import Agent

__all__ = ["History", "fetch_history"]

#: Pages fetched at most (100 entries each) before giving up on a history.
MAX_PAGES = 100


@dataclass(frozen=True)
class History:
    """The entries about one consignment, oldest first; the log's size and head
    hash when the last page was answered; and every signed reply (the proof)."""

    consignment_id: str
    entries: tuple[Entry, ...]
    log_size: int
    log_head: str
    signed_replies: tuple[bytes, ...]


async def fetch_history(agent: Agent, consignment_id: str) -> History:
    require_consignment_id(consignment_id)
    entries: list[Entry] = []
    replies: list[bytes] = []
    after = 0
    for _ in range(MAX_PAGES):
        _, body, signed, _ = await agent.request(
            MessageType.HISTORY,
            HistoryBody(consignment_id=consignment_id, after=after),
            subject=consignment_id,
        )
        assert isinstance(body, HistoryReplyBody)
        if body.consignment_id != consignment_id:
            raise UntrustedMessage(
                "wrong_consignment", "the escrow's history reply is for another consignment"
            )
        for item in body.entries:
            try:
                entry = Entry.from_json(item.entry)
            except ValueError as exc:
                raise UntrustedMessage("malformed", f"a history entry is invalid: {exc}") from None
            if entry.hash != item.hash or entry.consignment != consignment_id or entry.seq <= after:
                raise UntrustedMessage(
                    "malformed", f"history entry {entry.seq} does not match its hash or order"
                )
            entries.append(entry)
            after = entry.seq
        replies.append(signed)
        if body.complete or not body.entries:
            return History(
                consignment_id, tuple(entries), body.log_size, body.log_head, tuple(replies)
            )
    raise UntrustedMessage("malformed", "the escrow's history does not end")

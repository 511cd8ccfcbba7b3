"""Batch requests from an agent: many items of one kind in `batch` requests of
at most `BATCH_LIMIT` items and a bounded size each, and the check of every
result against the item it answers.

A batch is a request like any other (`Agent.request`: stored before it is
published, the same bytes sent again until a reply decides it); its items are
stored by the caller before (`store/batches.py`), so a run resumed after a crash
sends the same items and gets their recorded answers. A result is used only if
it answers its item: same id, a reply type that answers the kind, `in_reply_to`
the item's id, and about the consignment (and digest) the item named. This
module must never use a result it did not check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel

from broker.canonical import canonical_json
from broker.messages import (
    BATCH_LIMIT,
    BatchBody,
    BatchItem,
    BatchKind,
    BatchReplyBody,
    MessageType,
    UnknownMessage,
    parse_body,
)
from client.agent import verify
from client.errors import UntrustedMessage

if TYPE_CHECKING:
    from client.agent.core import Agent

__all__ = ["Item", "ask", "batches"]

#: Bytes of item bodies per batch: well under the 1 MiB envelope (base64 and
#: the envelope's own fields add about a third).
_MAX_ITEM_BYTES: Final = 600 * 1024


@dataclass(frozen=True)
class Item:
    """One item to send: its id, its body, and what its reply must be about
    (the subject a request of its kind alone would have)."""

    id: str
    body: dict[str, Any]
    subject: str


def batches(items: Sequence[Item], limit: int = BATCH_LIMIT) -> list[list[Item]]:
    """`items` cut into batches of at most `limit` items and `_MAX_ITEM_BYTES`."""
    out: list[list[Item]] = []
    size = 0
    for item in items:
        length = len(canonical_json(item.body)) + 64
        if not out or len(out[-1]) >= limit or size + length > _MAX_ITEM_BYTES:
            out.append([])
            size = 0
        out[-1].append(item)
        size += length
    return out


async def ask(
    agent: Agent, kind: BatchKind, items: Sequence[Item]
) -> dict[str, tuple[MessageType, BaseModel]]:
    """Send one batch and return each item's checked result, by item id (an
    `error` body is a result like any other). The whole batch refused (an
    `error` reply) raises `EscrowRefused`."""
    subject = (
        "batch:"
        + hashlib.sha256(
            canonical_json({"kind": kind.value, "ids": [i.id for i in items]})
        ).hexdigest()
    )
    body = BatchBody(kind=kind, items=tuple(BatchItem(id=i.id, body=i.body) for i in items))
    _, reply, _, _ = await agent.request(MessageType.BATCH, body, subject=subject, reuse=True)
    assert isinstance(reply, BatchReplyBody)
    return check_results(kind, items, reply)


def check_results(
    kind: BatchKind, items: Sequence[Item], reply: BatchReplyBody
) -> dict[str, tuple[MessageType, BaseModel]]:
    """Every result, checked against its item (`UntrustedMessage` if one does
    not answer it: the escrow's signed reply is then not used at all)."""
    if reply.kind is not kind or [r.id for r in reply.results] != [i.id for i in items]:
        raise UntrustedMessage(
            "unexpected_reply", "the escrow's batch reply does not answer the batch's items"
        )
    request_type = MessageType(kind.value)
    checked: dict[str, tuple[MessageType, BaseModel]] = {}
    for item, result in zip(items, reply.results, strict=True):
        try:
            body = parse_body(result.type, 1, result.body)
        except UnknownMessage as exc:
            raise UntrustedMessage("unexpected_reply", f"a batch result: {exc}") from None
        type_ = MessageType(result.type)
        if (
            type_ not in verify.REPLIES[request_type]
            or getattr(body, "in_reply_to", None) != item.id
        ):
            raise UntrustedMessage(
                "unexpected_reply", f"the batch result for item {item.id} does not answer it"
            )
        verify.check_subject(request_type, item.subject, body)
        checked[item.id] = (type_, body)
    return checked


def dumps(body: BaseModel) -> str:
    return json.dumps(body.model_dump(mode="json"), sort_keys=True)

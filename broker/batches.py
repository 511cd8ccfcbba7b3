"""The bodies of `batch` and `batch-reply`: many requests of one kind (deposits,
key requests or revocations) in one signed message, and one result per item.

A batch is authenticated once and decided in one transaction; each item keeps
an id of its own, recorded like a request id, so an item is idempotent on its
own (docs/protocol.md, "Batches"). Each item's body is validated by the
escrow as the body of a request of the batch's kind, one item at a time, so a
malformed item fails alone. This module holds no logic beyond validation.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "BATCH_LIMIT",
    "BatchBody",
    "BatchItem",
    "BatchKind",
    "BatchReplyBody",
    "BatchResult",
]

#: The most items one `batch` may carry (a batch is also bounded by the
#: envelope's size limit, `CONSIGN_MAX_MESSAGE_SIZE`).
BATCH_LIMIT: Final = 256

_REQUEST_ID: Final = r"^[A-Za-z0-9_-]{16,64}$"


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BatchKind(StrEnum):
    """The requests a batch may carry: one kind per batch."""

    DEPOSIT = "deposit"
    KEY_REQUEST = "key-request"
    REVOKE = "revoke"


class BatchItem(_Body):
    """One request inside a batch: an id of its own (recorded like a request id,
    so the item is idempotent on its own) and the body of a request of the
    batch's kind (checked item by item: a malformed one fails alone)."""

    id: str = Field(pattern=_REQUEST_ID)
    body: dict[str, Any]


class BatchBody(_Body):
    """Many requests of one kind, authenticated once, decided in one transaction,
    answered by one `batch-reply` with a result per item."""

    kind: BatchKind
    items: tuple[BatchItem, ...] = Field(min_length=1, max_length=BATCH_LIMIT)

    @field_validator("items", mode="before")
    @classmethod
    def _within_limit(cls, items: Any) -> Any:
        if isinstance(items, list | tuple) and len(items) > BATCH_LIMIT:
            raise ValueError(
                f"a batch carries at most {BATCH_LIMIT} items, this one {len(items)}: split it"
            )
        return items

    @model_validator(mode="after")
    def _distinct_ids(self) -> BatchBody:
        ids = [item.id for item in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("every item of a batch has an id of its own")
        return self


class BatchResult(_Body):
    """The answer to one item: the body of the reply a request of the batch's
    kind would get alone (`in_reply_to` is the item's id), and its type."""

    id: str = Field(pattern=_REQUEST_ID)
    type: Literal["deposit-receipt", "key-release", "revoke-reply", "error"]
    body: dict[str, Any]


class BatchReplyBody(_Body):
    """One result per item of the batch, in the batch's order."""

    in_reply_to: str = Field(pattern=_REQUEST_ID)
    kind: BatchKind
    results: tuple[BatchResult, ...]

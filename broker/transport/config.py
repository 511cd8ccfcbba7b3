"""Names and limits of the transport, and the message to publish.

`TransportConfig` derives every queue and exchange name from one prefix; the
destinations (`ESCROW`, `Inbox(identity)`) and `Message` check their values when
built, so a bad name or an oversize header fails at the caller, before any I/O.
See `broker.transport.base` for the topology. Pure: must never do I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from broker.canonical import NAME, NAME_RULE
from broker.errors import (
    InvalidName,
)

_MiB: Final = 1024 * 1024
DEFAULT_PREFETCH: Final = 16

# Prefixes and queue names end up in queue names and routing keys (at most 255
# bytes in AMQP); a conservative alphabet keeps them printable and unambiguous.
# Identities follow the one name rule of `broker.canonical`.
_QUEUE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,119}")
_SHORTSTR_MAX = 255  # AMQP short strings: message id, correlation id, type


def _check_name(kind: str, value: str) -> str:
    """Return `value` if it can be part of a queue name, else raise `InvalidName`."""
    if kind == "identity":
        if isinstance(value, str) and NAME.fullmatch(value):
            return value
        raise InvalidName(f"invalid {kind} {value!r}", hint=f"use {NAME_RULE}")
    if not isinstance(value, str) or not _QUEUE_PART.fullmatch(value):
        raise InvalidName(
            f"invalid {kind} {value!r}",
            hint="use 1-120 characters from A-Z a-z 0-9 . _ @ + -, starting with a letter or digit",
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    """Names and limits shared by every transport.

    `prefix` isolates one deployment (or one test) from another on the same broker.
    Changing `delivery_limit` or `max_queue_length` for queues that already exist
    fails with `TopologyError`: RabbitMQ cannot change a queue's arguments.
    """

    prefix: str = "consign"
    #: The escrow work queue; empty means ``{prefix}.escrow.requests``.
    escrow_queue: str = ""
    #: A message returned (requeued, or its consumer gone) more often than this is
    #: dead-lettered, so at most `delivery_limit + 1` deliveries happen.
    delivery_limit: int = 5
    #: Largest body accepted on publish and on receipt, in bytes.
    max_message_size: int = 1 * _MiB
    #: Messages a queue holds before the broker refuses publishes (`PublishRefused`);
    #: None for no limit. RabbitMQ quorum queues apply it approximately (one over).
    max_queue_length: int | None = None
    #: Upper bound for `consume(prefetch=...)`.
    max_prefetch: int = 1000
    #: Seconds a publish may wait for the broker's confirm (`PublishTimeout`).
    publish_timeout: float = 30.0

    def __post_init__(self) -> None:
        _check_name("prefix", self.prefix)
        if self.escrow_queue:
            _check_name("escrow queue name", self.escrow_queue)
        else:
            object.__setattr__(self, "escrow_queue", f"{self.prefix}.escrow.requests")
        if self.delivery_limit < 0:
            raise ValueError("delivery_limit must be >= 0")
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be >= 1")
        if self.max_queue_length is not None and self.max_queue_length < 1:
            raise ValueError("max_queue_length must be >= 1 or None")
        if self.max_prefetch < 1:
            raise ValueError("max_prefetch must be >= 1")
        if self.publish_timeout <= 0:
            raise ValueError("publish_timeout must be > 0")

    @property
    def inbox_exchange(self) -> str:
        return f"{self.prefix}.inbox"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dead-letters"

    def inbox_queue(self, identity: str) -> str:
        return f"{self.prefix}.inbox.{_check_name('identity', identity)}"


@dataclass(frozen=True, slots=True)
class EscrowQueue:
    """Destination: the escrow's work queue."""

    def __str__(self) -> str:
        return "the escrow work queue"


ESCROW: Final = EscrowQueue()


@dataclass(frozen=True, slots=True)
class Inbox:
    """Destination: the inbox of one agent identity."""

    identity: str

    def __post_init__(self) -> None:
        _check_name("identity", self.identity)

    def __str__(self) -> str:
        return f"the inbox of {self.identity!r}"


Destination: TypeAlias = EscrowQueue | Inbox


def _check_shortstr(what: str, value: str) -> None:
    if not value or len(value.encode()) > _SHORTSTR_MAX:
        raise ValueError(f"{what} must be 1-{_SHORTSTR_MAX} bytes of UTF-8")


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message to publish. `message_id` is what handlers deduplicate on."""

    body: bytes
    message_id: str
    #: Message type with its version, e.g. ``"escrow.deposit.v1"``.
    type: str
    correlation_id: str | None = None
    #: Application headers. Names starting with ``x-`` belong to the broker.
    headers: Mapping[str, str] = field(default_factory=dict)
    persistent: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.body, bytes):
            raise TypeError("body must be bytes")
        _check_shortstr("message_id", self.message_id)
        _check_shortstr("type", self.type)
        if self.correlation_id is not None:
            _check_shortstr("correlation_id", self.correlation_id)
        headers = dict(self.headers)
        for key, value in headers.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError("headers must map str to str")
            if not key or key[:2].lower() == "x-":
                raise ValueError(f"header name {key!r} is empty or reserved for the broker")
        object.__setattr__(self, "headers", headers)

"""The RabbitMQ topology of one deployment, as data: every exchange, queue,
argument and binding, and who declares it.

This is the one place the declarations are written down in code; the AMQP
transport declares exactly these, the in-process broker mirrors them, and the
AsyncAPI document (`broker.schema`) and docs/protocol.md ("Queues") are made
from or checked against them. RabbitMQ refuses (406 PRECONDITION_FAILED) to
re-declare a queue with any other argument, so a party that declares a queue
with exactly these arguments has checked that it exists as documented.

Pure data and functions: this module must never do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from broker.transport.base import TransportConfig

__all__ = [
    "Binding",
    "Declarer",
    "ExchangeSpec",
    "QueueSpec",
    "Topology",
    "dead_letter_queue_arguments",
    "inbox_spec",
    "topology",
    "work_queue_arguments",
]

Declarer = Literal["worker", "agent", "worker and agent"]


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: Literal["direct", "fanout"]
    declared_by: Declarer
    purpose: str
    durable: bool = True
    auto_delete: bool = False


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any]
    declared_by: Declarer
    purpose: str
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False


@dataclass(frozen=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str
    declared_by: Declarer


@dataclass(frozen=True)
class Topology:
    exchanges: tuple[ExchangeSpec, ...]
    queues: tuple[QueueSpec, ...]
    bindings: tuple[Binding, ...]


def work_queue_arguments(config: TransportConfig) -> dict[str, Any]:
    """The arguments of the escrow work queue and of every inbox.

    At-least-once dead-lettering keeps a message in its queue until the
    dead-letter queue has confirmed it; RabbitMQ applies it only together with
    ``x-overflow: reject-publish`` (it accepts the declaration without, and then
    dead-letters at most once)."""
    arguments: dict[str, Any] = {
        "x-queue-type": "quorum",
        "x-delivery-limit": config.delivery_limit,
        "x-dead-letter-exchange": config.dead_letter_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    if config.max_queue_length is not None:
        arguments["x-max-length"] = config.max_queue_length
    return arguments


def dead_letter_queue_arguments() -> dict[str, Any]:
    """The dead-letter queue has no limit and dead-letters nowhere: nothing
    leaves it but by the operator."""
    return {"x-queue-type": "quorum"}


_INBOX_PURPOSE = "the inbox of one identity: replies, events, notifications, consignment chunks"


def inbox_spec(config: TransportConfig, identity: str) -> QueueSpec:
    """The inbox of `identity` as it must be declared."""
    name = config.inbox_queue(identity)
    return QueueSpec(name, work_queue_arguments(config), "worker and agent", _INBOX_PURPOSE)


def topology(config: TransportConfig, identity: str = "{name}") -> Topology:
    """Everything declared for `config`; inbox names use `identity` (a placeholder
    by default, for documents)."""
    inbox_name = f"{config.prefix}.inbox.{identity}"
    exchanges = (
        ExchangeSpec(
            config.inbox_exchange,
            "direct",
            "worker and agent",
            "routes to the inbox whose identity is the routing key",
        ),
        ExchangeSpec(
            config.dead_letter_exchange,
            "fanout",
            "worker and agent",
            "where the work queue and the inboxes dead-letter",
        ),
    )
    queues = (
        QueueSpec(
            config.escrow_queue,
            work_queue_arguments(config),
            "worker",
            "requests to the escrow; every worker consumes it (competing consumers)",
        ),
        QueueSpec(inbox_name, work_queue_arguments(config), "worker and agent", _INBOX_PURPOSE),
        QueueSpec(
            config.dead_letter_queue,
            dead_letter_queue_arguments(),
            "worker and agent",
            "what was dead-lettered; the operator reads it",
        ),
    )
    bindings = (
        Binding(config.inbox_exchange, inbox_name, identity, "worker and agent"),
        # Fanout ignores the key; the transport binds with the queue's name.
        Binding(
            config.dead_letter_exchange,
            config.dead_letter_queue,
            config.dead_letter_queue,
            "worker and agent",
        ),
    )
    return Topology(exchanges, queues, bindings)

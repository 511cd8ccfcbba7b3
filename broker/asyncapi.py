"""The AsyncAPI 3.0 document of the escrow protocol, made from the topology
(`broker.transport.topology`) and the message types (`broker.messages`).

Channels are the work queue and the inboxes (with the exchange that routes to
them, the queue arguments as ``x-arguments``), and the dead-letter queue;
operations say who sends and who receives what; every message's payload is the
signed envelope's wire form, and ``x-body`` points at the schema of the body
inside it (docs/schemas/). docs/asyncapi.json holds the output;
`tools/protocol_docs.py` writes it and a test fails when it differs.

Pure: this module must never do I/O.
"""

from __future__ import annotations

from typing import Any, Final

from broker.messages import MESSAGE_TYPES, MessageType
from broker.schema import body_schema_name
from broker.transport.base import TransportConfig
from broker.transport.topology import Topology, topology

__all__ = ["ASYNCAPI_VERSION", "REPLIES", "asyncapi_document"]

ASYNCAPI_VERSION: Final = "3.0.0"
_AMQP_BINDING: Final = "0.3.0"
_SCHEMAS: Final = "schemas/"

#: Which reply answers which request (an `error` may answer any of them).
REPLIES: Final = {
    MessageType.LOOKUP: MessageType.LOOKUP_REPLY,
    MessageType.DEPOSIT: MessageType.DEPOSIT_RECEIPT,
    MessageType.KEY_REQUEST: MessageType.KEY_RELEASE,
    MessageType.REVOKE: MessageType.REVOKE_REPLY,
    MessageType.STATUS: MessageType.STATUS_REPLY,
    MessageType.RECEIPT: MessageType.RECEIPT_REPLY,
    MessageType.COSIGN: MessageType.COSIGN_REPLY,
    MessageType.AGREEMENT: MessageType.AGREEMENT_REPLY,
    MessageType.BATCH: MessageType.BATCH_REPLY,
    MessageType.HISTORY: MessageType.HISTORY_REPLY,
}
_REQUESTS: Final = tuple(REPLIES)
_FROM_ESCROW: Final = (*REPLIES.values(), MessageType.ERROR, MessageType.EVENT, MessageType.NOTIFY)


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _message(type_: MessageType, version: int) -> dict[str, Any]:
    signer = "the sender's agent" if type_ is MessageType.CHUNK else "the escrow"
    if type_ in _REQUESTS:
        signer = "the requesting agent"
    return {
        "name": type_.value,
        "title": f"{type_.value} v{version}",
        "summary": f"envelope type {type_.value!r}, version {version}, signed by {signer}",
        "contentType": "application/json",
        "payload": {"$ref": f"{_SCHEMAS}wire.schema.json"},
        "x-envelope": {"$ref": f"{_SCHEMAS}envelope.schema.json"},
        "x-body": {"$ref": f"{_SCHEMAS}{body_schema_name(type_.value, version)}"},
        "correlationId": {
            "description": "the AMQP correlation_id: the request id a reply answers (unsigned;"
            " match on the signed body's in_reply_to)",
            "location": "$message.header#/correlation_id",
        },
        "bindings": {
            "amqp": {
                "contentEncoding": "identity",
                "messageType": f"{type_.value}.v{version}",
                "bindingVersion": _AMQP_BINDING,
            }
        },
    }


def _queue_channel(
    top: Topology, prefix: str, name: str, address: str, description: str
) -> dict[str, Any]:
    queue = next(q for q in top.queues if q.name == name)
    arguments = {
        key: value.replace(f"{prefix}.", "{prefix}.", 1) if isinstance(value, str) else value
        for key, value in queue.arguments.items()
    }
    return {
        "address": address,
        "description": f"{description} Declared by: {queue.declared_by}.",
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": address,
                    "durable": queue.durable,
                    "exclusive": queue.exclusive,
                    "autoDelete": queue.auto_delete,
                    "vhost": "/",
                },
                "x-arguments": arguments,
                "bindingVersion": _AMQP_BINDING,
            }
        },
    }


def asyncapi_document(config: TransportConfig | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for `config` (the defaults: prefix ``consign``,
    delivery limit 5); `{prefix}` and `{name}` are channel parameters."""
    config = config if config is not None else TransportConfig()
    top = topology(config, "{name}")
    prefix = config.prefix
    messages = {MessageType(t).value: _message(MessageType(t), v) for (t, v) in MESSAGE_TYPES}
    inbox_exchange = next(e for e in top.exchanges if e.name == config.inbox_exchange)
    requests = _queue_channel(
        top,
        prefix,
        config.escrow_queue,
        config.escrow_queue.replace(prefix, "{prefix}", 1),
        "The escrow work queue; agents publish to it through the default exchange with the"
        " queue's name as routing key, mandatory, persistent.",
    )
    requests["messages"] = {t.value: _ref("messages", t.value) for t in _REQUESTS}
    inbox = _queue_channel(
        top,
        prefix,
        f"{prefix}.inbox.{{name}}",
        "{prefix}.inbox.{name}",
        f"The inbox of the identity `name`, bound to the direct exchange"
        f" {{prefix}}.inbox ({inbox_exchange.type}, durable) with routing key `name`;"
        " publishers publish to that exchange, mandatory, persistent.",
    )
    inbox["messages"] = {
        t.value: _ref("messages", t.value) for t in (*_FROM_ESCROW, MessageType.CHUNK)
    }
    dead = _queue_channel(
        top,
        prefix,
        config.dead_letter_queue,
        "{prefix}.dead-letters",
        "Bound to the fanout exchange {prefix}.dlx, where the work queue and the inboxes"
        " dead-letter; read by the operator (`consign escrow dead-letters`).",
    )
    dead["messages"] = {t.value: _ref("messages", t.value) for t in MessageType}
    parameters = {
        "prefix": {"default": "consign", "description": "CONSIGN_QUEUE_PREFIX"},
        "name": {"description": "an identity name (docs/identity.md)"},
    }
    for channel in (requests, inbox, dead):
        used = [p for p in parameters if "{" + p + "}" in channel["address"]]
        channel["parameters"] = {p: parameters[p] for p in used}

    def operation(action: str, channel: str, types: tuple[MessageType, ...], summary: str) -> Any:
        return {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{t.value}"} for t in types],
            "bindings": {
                "amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": _AMQP_BINDING}
                if action == "send"
                else {"ack": True, "bindingVersion": _AMQP_BINDING}
            },
        }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Consignment escrow protocol",
            "version": "1",
            "description": "Agents and escrow workers over RabbitMQ; docs/protocol.md is the"
            " prose. Every message is a signed envelope (docs/identity.md); nothing unsigned"
            " (AMQP properties, headers) is acted on.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "any RabbitMQ 3.10 or later (quorum queues)",
            }
        },
        "channels": {"escrowRequests": requests, "inbox": inbox, "deadLetters": dead},
        "operations": {
            "sendRequest": operation(
                "send", "escrowRequests", _REQUESTS, "an agent sends a signed request"
            ),
            "receiveRequest": operation(
                "receive", "escrowRequests", _REQUESTS, "escrow workers compete for requests"
            ),
            "sendToInbox": operation(
                "send",
                "inbox",
                (*_FROM_ESCROW, MessageType.CHUNK),
                "the escrow sends replies, events and notifications; a sender's agent sends"
                " consignment chunks",
            ),
            "receiveInbox": operation(
                "receive",
                "inbox",
                (*_FROM_ESCROW, MessageType.CHUNK),
                "an agent reads its own inbox, storing each message before it acks",
            ),
            "readDeadLetters": operation(
                "receive", "deadLetters", tuple(MessageType), "the operator inspects"
            ),
        },
        "components": {"messages": messages},
    }

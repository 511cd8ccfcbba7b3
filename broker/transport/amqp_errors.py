"""How the AMQP transport turns aio-pika and aiormq failures into `broker.errors`.

Every exception of those libraries is wrapped here, with a message that says in
words what failed (never the library's repr alone) and a hint where one helps.
A refused declaration (406 PRECONDITION_FAILED: the queue exists with other
arguments; 403 ACCESS_REFUSED) is a `TopologyError` naming the queue and, for an
inbox, the arguments docs/protocol.md gives. This module must never put a
broker password in a message: URLs are shown without credentials.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import aiormq
from aio_pika.exceptions import ChannelInvalidStateError
from yarl import URL

from broker.errors import (
    ConnectionFailed,
    PublishRefused,
    PublishTimeout,
    QueueNotFound,
    TopologyError,
    TransportError,
    Unroutable,
)

__all__ = [
    "LINK_ERRORS",
    "connect_failed",
    "declaration_refused",
    "publish_errors",
    "where",
    "wrapped",
]

# What a dropped connection or a closed channel looks like from aio-pika/aiormq.
LINK_ERRORS = (aiormq.exceptions.AMQPError, ChannelInvalidStateError, OSError)


def where(url: str) -> str:
    """The URL without credentials, for messages and logs."""
    parsed = URL(url)
    return str(parsed.with_user(None).with_password(None)) if parsed.host else "<invalid url>"


def _arguments(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(arguments.items()))


def declaration_refused(
    queue: str, exc: BaseException, arguments: dict[str, Any], *, inbox: bool
) -> TopologyError:
    """A queue that exists with other arguments than `arguments`, in words."""
    said = str(exc).split(" - ", 1)[-1]
    what = "the inbox" if inbox else "the queue"
    hint = (
        f"it must be a durable quorum queue with exactly {_arguments(arguments)}"
        " (docs/protocol.md, Queues); every agent and worker of one deployment must use the"
        " same CONSIGN_QUEUE_PREFIX and CONSIGN_DELIVERY_LIMIT. If the queue holds nothing"
        f" you need, delete it (rabbitmqctl delete_queue {queue}) and start again"
    )
    return TopologyError(
        f"{what} {queue!r} exists on RabbitMQ with other arguments than the protocol's"
        f" (RabbitMQ: {said})",
        hint=hint,
    )


@contextlib.contextmanager
def wrapped(doing: str, *, declaring: bool = False) -> Iterator[None]:
    """Turn aio-pika/aiormq exceptions raised while `doing` into `TransportError`s.

    With `declaring`, a refused access is a `TopologyError` like a refused
    declaration, so the caller can tell "this queue cannot be declared" from a
    broken connection."""
    try:
        yield
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        raise QueueNotFound(f"{doing}: it does not exist", hint="declare it first") from exc
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise TopologyError(
            f"{doing}: it exists with other arguments ({exc})",
            hint="use the same delivery limit and queue length, or another prefix",
        ) from exc
    except aiormq.exceptions.ChannelAccessRefused as exc:
        kind = TopologyError if declaring else TransportError
        raise kind(
            f"{doing}: access refused ({exc})", hint="check the RabbitMQ user's permissions"
        ) from exc
    except (*LINK_ERRORS, TimeoutError) as exc:
        raise ConnectionFailed(f"{doing}: {exc!r}", hint="is RabbitMQ running?") from exc


@contextlib.contextmanager
def publish_errors(what: str, timeout: float) -> Iterator[None]:
    """Turn a failed publish of `what` (with confirms, `mandatory`) into the
    `TransportError` that says why: unroutable, refused, unconfirmed, or the link."""
    try:
        yield
    except aiormq.exceptions.PublishError as exc:
        raise Unroutable(
            f"{what} is unroutable: no queue is bound for it",
            hint="is the receiving side's queue declared?",
        ) from exc
    except aiormq.exceptions.DeliveryError as exc:
        raise PublishRefused(f"RabbitMQ refused {what} ({exc})") from exc
    except TimeoutError as exc:
        raise PublishTimeout(
            f"no confirm for {what} within {timeout} s",
            hint="the broker may be overloaded or blocked; publishing again is safe",
        ) from exc
    except LINK_ERRORS as exc:
        raise ConnectionFailed(f"publishing {what} failed: {exc!r}") from exc


def connect_failed(url: str, exc: BaseException, timeout: float) -> ConnectionFailed:
    """Why connecting failed, in words: never the library's repr."""
    parsed = URL(url)
    port = parsed.port or (5671 if parsed.scheme == "amqps" else 5672)
    place = f"{parsed.host}:{port}" if parsed.host else where(url)
    if isinstance(exc, aiormq.exceptions.InvalidFrameError) and "Connection.Close" in str(exc):
        # RabbitMQ closes the connection instead of opening it: the vhost.
        vhost = parsed.path[1:] or "/"
        return ConnectionFailed(
            f"RabbitMQ at {place} refused the vhost {vhost!r} "
            "(missing, or no permission for this user)",
            hint="check the vhost at the end of the URL (amqp://user:pass@host:5672/ is the "
            "default vhost '/'); `rabbitmqctl list_vhosts` and `list_permissions` show them",
        )
    causes = [exc, exc.__cause__, exc.__context__]
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        reason = "connection refused"
        hint = "is RabbitMQ running there, and are the host and port in the URL right?"
    elif any(isinstance(c, socket.gaierror) for c in causes):
        reason = f"unknown host {parsed.host!r}"
        hint = "check the host name in the URL"
    elif isinstance(exc, TimeoutError):
        reason = f"no answer within {timeout:g} s"
        hint = "is the host reachable, and is RabbitMQ listening on that port?"
    elif isinstance(exc, ValueError):
        reason = "the URL is not valid"
        hint = "write it as amqp://user:password@host:5672/vhost"
    else:
        cause = next((c for c in causes if isinstance(c, OSError) and c.strerror), None)
        reason = str(cause.strerror).lower() if cause is not None else type(exc).__name__
        hint = "is RabbitMQ running, and is the URL right?"
    return ConnectionFailed(f"cannot connect to RabbitMQ at {place}: {reason}", hint=hint)

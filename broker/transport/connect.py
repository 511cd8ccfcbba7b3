"""`connect_transport`: a transport for a URL; AMQP's module is imported only
when an amqp:// URL asks for it."""

from __future__ import annotations

from broker.errors import BrokerError
from broker.transport.base import Transport, TransportConfig
from broker.transport.memory import InProcessTransport

_MEMORY_URL = "memory://"


def connect_transport(url: str | None, config: TransportConfig | None = None) -> Transport:
    """A transport for `url`, not yet started: use ``async with connect_transport(url) as t``.

    ``None`` or ``memory://`` gives a fresh `InProcessTransport` (the embedded
    default; share it, or its `broker`, between the parts of one process);
    ``amqp://`` or ``amqps://`` an `AmqpTransport`.
    """
    if url is None or url == _MEMORY_URL:
        return InProcessTransport(config)
    scheme = url.partition("://")[0].lower()
    if scheme in ("amqp", "amqps"):
        from broker.transport.amqp import AmqpTransport

        return AmqpTransport(url, config)
    raise BrokerError(
        f"unsupported transport URL scheme {scheme!r}",
        hint="use memory:// (in-process) or amqp://user:password@host:5672/",
    )

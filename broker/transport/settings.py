"""Configuration from the environment (pydantic-settings), shared by the escrow
worker and the agents, so both sides of one deployment agree on the broker.

| variable | meaning | default |
| --- | --- | --- |
| CONSIGN_AMQP_URL | RabbitMQ URL; empty or `memory://` for the in-process transport | empty |
| CONSIGN_QUEUE_PREFIX | prefix of every queue and exchange name | consign |
| CONSIGN_DELIVERY_LIMIT | deliveries of one message before it is dead-lettered | 5 |
| CONSIGN_MAX_MESSAGE_SIZE | largest message body, bytes | 1048576 |

`BrokerSettings.from_env()` reads them and turns a bad value into a `BrokerError`
naming the variable. This module must never hold secrets; passphrases are read
where they are used, and a bad value is never echoed for CONSIGN_AMQP_URL (it may
hold a password).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.errors import BrokerError
from broker.transport.base import TransportConfig

__all__ = ["BrokerSettings"]


class BrokerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSIGN_", extra="ignore")

    amqp_url: str = ""
    queue_prefix: str = "consign"
    delivery_limit: int = Field(default=5, ge=0)
    max_message_size: int = Field(default=1 << 20, ge=1024)

    @classmethod
    def from_env(cls) -> Self:
        """The settings from the environment; a bad value raises `BrokerError`
        saying which variable and what is wrong with it."""
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = str(first["loc"][0]) if first["loc"] else ""
            variable = f"CONSIGN_{field.upper()}"
            given = first.get("input")
            shown = "" if field == "amqp_url" else f" (got {given!r})"
            default = cls.model_fields[field].default if field in cls.model_fields else None
            raise BrokerError(
                f"{variable}: {first['msg'][:1].lower()}{first['msg'][1:]}{shown}",
                f"fix {variable} or unset it to use the default ({default})",
            ) from exc

    @property
    def url(self) -> str | None:
        """The transport URL for `broker.connect_transport` (None: in-process)."""
        return self.amqp_url or None

    def transport_config(self) -> TransportConfig:
        return TransportConfig(
            prefix=self.queue_prefix,
            delivery_limit=self.delivery_limit,
            max_message_size=self.max_message_size,
        )

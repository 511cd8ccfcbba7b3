"""The root command group's error handling: the one place the CLI catches errors.

Only the three packages' base errors are caught (ClientError, EscrowError,
BrokerError): each prints "error: ..." and, when known, "hint: ..." on stderr and
exits 1 (every error gets a hint line, a generic one if the raiser gave none).
Usage errors stay click's (exit 2). Anything else is a bug and must
never be swallowed here.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from broker.errors import BrokerError
from client.errors import ClientError
from escrow_worker.errors import EscrowError


class ConsignGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        # The AMQP client logs connection chatter (e.g. a channel closed while an
        # agent shuts down) as warnings; a command reports what matters itself.
        for noisy in ("aiormq", "aio_pika"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        try:
            return super().invoke(ctx)
        except (ClientError, EscrowError, BrokerError) as exc:
            click.echo(f"error: {exc.message}", err=True)
            hint = exc.hint or "see `consign COMMAND --help` for what the command needs"
            click.echo(f"hint: {hint}", err=True)
            ctx.exit(1)

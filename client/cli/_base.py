"""The root command group's error handling: the one place the CLI catches errors.

Only the three packages' base errors are caught (ClientError, EscrowError,
BrokerError): each prints "error: ..." and, when known, "hint: ..." on stderr and
exits 1 (every error gets a hint line, a generic one if the raiser gave none).
Usage errors stay click's (exit 2). A pydantic ValidationError that got past
the checks at the boundary is reported the same way, in one line (input that
does not fit a message or setting must never end in a traceback). Anything else
is a bug and must never be swallowed here.
"""

from __future__ import annotations

import logging
from typing import Any

import click
from pydantic import ValidationError

from broker.errors import BrokerError
from client.errors import ClientError
from escrow_worker.errors import EscrowError


class ConsignGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        # The AMQP client logs connection chatter (e.g. a channel closed while an
        # agent shuts down) as warnings; a command reports what matters itself.
        for noisy in ("aiormq", "aio_pika"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        # aiormq logs a failed connect as an error before raising it; the
        # transport raises it as ConnectionFailed, in words, so once is enough.
        logging.getLogger("aiormq.connection").addFilter(_not_connect_failures)
        try:
            return super().invoke(ctx)
        except (ClientError, EscrowError, BrokerError) as exc:
            click.echo(f"error: {exc.message}", err=True)
            hint = exc.hint or "see `consign COMMAND --help` for what the command needs"
            click.echo(f"hint: {hint}", err=True)
            ctx.exit(1)
        except ValidationError as exc:
            click.echo(f"error: {describe_invalid(exc)}", err=True)
            click.echo(
                "hint: check the names, ids and values given; "
                "see `consign COMMAND --help` for what the command needs",
                err=True,
            )
            ctx.exit(1)


def describe_invalid(exc: ValidationError) -> str:
    """One line for a ValidationError: the first problem, where, and with what."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    given = first.get("input")
    shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
    field = f"{where}: " if where else ""
    return f"invalid {exc.title}: {field}{first['msg']}{shown}"


def _not_connect_failures(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("error when creating transport")

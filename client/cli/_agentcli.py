"""What the agent commands (seal, send, inbox, open, revoke, status, events)
share: the options that say who you are and where the broker is, starting an
agent for one command, and the values times and durations take.

Which identity: `--as NAME`, or the only one in `--home` (CONSIGN_HOME). Its
passphrase: CONSIGN_IDENTITY_PASSPHRASE or `--passphrase-file`, never an
argument. The broker: `--amqp-url` or CONSIGN_AMQP_URL. The escrow's name: `--escrow`
(CONSIGN_ESCROW), else the CA certificate's ("NAME CA"). This module must never
print a secret and never catch errors (the root group reports them).
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from cryptography.x509.oid import NameOID

from broker import BrokerSettings, connect_transport
from broker.console import IDENTITY_PASSPHRASE_ENV, read_passphrase, say
from broker.pki.identity import Identity
from client.agent.core import Agent
from client.cli.options import home_option, passphrase_option
from client.errors import AgentError
from client.home import IdentityHome, load_identity

A = TypeVar("A", bound=Agent)
F = TypeVar("F", bound=Callable[..., Any])

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class AgentOptions:
    as_name: str | None
    home: Path
    passphrase_file: Path | None
    amqp_url: str | None
    escrow: str | None
    timeout: float


def agent_options(f: F) -> F:
    """The options every agent command takes, gathered into `opts: AgentOptions`."""
    options = [
        click.option(
            "--as", "as_name", metavar="NAME", help="Act as this identity [default: the only one]."
        ),
        home_option("identities and agent state"),
        passphrase_option,
        click.option(
            "--amqp-url",
            envvar="CONSIGN_AMQP_URL",
            metavar="URL",
            help="RabbitMQ, e.g. amqp://user:pass@host:5672/ [env CONSIGN_AMQP_URL].",
        ),
        click.option(
            "--escrow",
            envvar="CONSIGN_ESCROW",
            metavar="NAME",
            help="The escrow's name [env CONSIGN_ESCROW; default: from your CA certificate].",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0.1),
            default=30.0,
            show_default=True,
            help="Seconds to wait for the escrow's reply.",
        ),
    ]

    @functools.wraps(f)  # keeps the options and arguments declared below this one
    def gather(**kwargs: Any) -> Any:
        opts = AgentOptions(
            as_name=kwargs.pop("as_name"),
            home=kwargs.pop("home"),
            passphrase_file=kwargs.pop("passphrase_file"),
            amqp_url=kwargs.pop("amqp_url"),
            escrow=kwargs.pop("escrow"),
            timeout=kwargs.pop("timeout"),
        )
        return f(opts=opts, **kwargs)

    wrapped: Any = gather
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


def escrow_name(identity: Identity, given: str | None) -> str:
    """`given`, or the name in the CA certificate ("NAME CA")."""
    if given:
        return given
    names = identity.ca_certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else ""
    if not cn.endswith(" CA"):
        raise AgentError(
            "cannot tell the escrow's name from your CA certificate",
            "give it with --escrow NAME or CONSIGN_ESCROW",
        )
    return cn[: -len(" CA")]


def state_dir(home: Path, name: str) -> Path:
    return home.expanduser() / "agents" / name


def load(opts: AgentOptions) -> tuple[Identity, str, Path]:
    """(identity, escrow name, agent state directory) for the options given."""
    home = IdentityHome(opts.home)
    name = home.resolve(opts.as_name)
    passphrase = read_passphrase(opts.passphrase_file, IDENTITY_PASSPHRASE_ENV, "identity")
    identity = load_identity(home.identity_path(name), passphrase)
    return identity, escrow_name(identity, opts.escrow), state_dir(opts.home, name)


def broker_url(given: str | None) -> str:
    url = given or BrokerSettings.from_env().url
    if not url or url == "memory://":
        raise AgentError(
            "no broker to reach the escrow through",
            "set CONSIGN_AMQP_URL or pass --amqp-url amqp://user:pass@host:5672/ "
            "(`consign demo` runs everything in one process without one)",
        )
    return url


@asynccontextmanager
async def running(opts: AgentOptions, kind: type[A]) -> AsyncIterator[A]:
    """An agent of `kind` for these options, started, on a started transport."""
    # The environment first: a bad setting needs no passphrase to be reported.
    settings = BrokerSettings.from_env()
    url = broker_url(opts.amqp_url)
    # In a thread: the passphrase's key derivation takes a while, and the
    # event loop must stay free to act on Ctrl-C meanwhile.
    identity, escrow, directory = await asyncio.to_thread(load, opts)
    async with (
        connect_transport(url, settings.transport_config()) as transport,
        kind(
            identity, transport, escrow, directory, reply_timeout=opts.timeout, notice=say
        ) as agent,
    ):
        yield agent


# -- values ----------------------------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Timestamp(click.ParamType[int, Any]):
    """ISO 8601 (UTC if no zone is given) or Unix seconds, as whole Unix seconds.

    The escrow holds whole seconds: a time with a fraction is rounded `"up"`
    (for a not-before: never released early) or `"down"` (for a not-after:
    never released late). Times before 1970 are refused (Unix seconds are not
    negative in a policy)."""

    name = "TIME"

    def __init__(self, rounding: Literal["up", "down"]) -> None:
        self.rounding = rounding

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{text!r} is neither ISO 8601 (2030-01-31T12:00Z) nor Unix seconds")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if when < _EPOCH:
            self.fail(f"{text!r} is before 1970-01-01T00:00:00Z")
        since = when - _EPOCH
        seconds = since.days * 86400 + since.seconds
        return seconds + 1 if self.rounding == "up" and since.microseconds else seconds


class Duration(click.ParamType[int, Any]):
    """Seconds, or a number with s, m, h or d."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        match = _DURATION.match(str(value).strip())
        if match is None or int(match.group(1)) == 0:
            self.fail(f"{value!r} is not a duration like 90, 90s, 15m, 2h or 7d")
        return int(match.group(1)) * _UNITS[match.group(2)]

"""Options several `consign` commands share, defined once so that their
names, environment variables and help read the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from broker.console import IDENTITY_PASSPHRASE_ENV
from client.home import DEFAULT_HOME

F = TypeVar("F", bound=Callable[..., Any])


def home_option(what: str) -> Callable[[F], F]:
    """`--home` (CONSIGN_HOME): where a user's `what` live."""
    return click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="CONSIGN_HOME",
        default=str(DEFAULT_HOME),
        show_default=True,
        help=f"Where your {what} live [env CONSIGN_HOME].",
    )


#: `--passphrase-file`: the identity passphrase (else CONSIGN_IDENTITY_PASSPHRASE).
passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"File holding the identity passphrase [else env {IDENTITY_PASSPHRASE_ENV}].",
)

#: `--into DIR`: where `batch open` and `receive` open each consignment.
into_option = click.option(
    "--into",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Each consignment is opened into INTO/<consignment id>.",
)

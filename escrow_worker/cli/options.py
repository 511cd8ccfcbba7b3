"""Options only the escrow's commands take: the escrow directory and its passphrase."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

# The name of an environment variable, not a secret.
ESCROW_PASSPHRASE_ENV = "CONSIGN_ESCROW_PASSPHRASE"  # noqa: S105


def _need_escrow_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    if value is None:
        raise click.UsageError(
            "which escrow? set CONSIGN_ESCROW_DIR to the escrow data directory, "
            "or pass --escrow-dir DIR",
            ctx,
        )
    return value


escrow_dir_option = click.option(
    "--escrow-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CONSIGN_ESCROW_DIR",
    callback=_need_escrow_dir,
    help="Escrow data directory [env CONSIGN_ESCROW_DIR; required].",
)


def escrow_passphrase_option(*names: str) -> Callable[[F], F]:
    return click.option(
        *names,
        "escrow_passphrase_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"File holding the escrow passphrase [else env {ESCROW_PASSPHRASE_ENV}].",
    )

"""Options only the escrow's commands take: which escrow (`--escrow-dir` or
`--db`) and its passphrase."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from escrow_worker.state.location import Location

F = TypeVar("F", bound=Callable[..., Any])

# The name of an environment variable, not a secret.
ESCROW_PASSPHRASE_ENV = "CONSIGN_ESCROW_PASSPHRASE"  # noqa: S105


def escrow_location(f: F) -> F:
    """`--escrow-dir` and `--db`: which escrow. Passes `location: Location`.

    SQLite in the escrow directory by default; with `--db` (CONSIGN_ESCROW_DB) a
    PostgreSQL database holds everything, and no directory is needed."""

    @click.option(
        "--db",
        "db_url",
        metavar="URL",
        envvar="CONSIGN_ESCROW_DB",
        help="postgresql://user@host:5432/db for workers on several hosts "
        "[env CONSIGN_ESCROW_DB; default: SQLite in --escrow-dir].",
    )
    @click.option(
        "--escrow-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="CONSIGN_ESCROW_DIR",
        help="Escrow data directory [env CONSIGN_ESCROW_DIR; required unless --db].",
    )
    @functools.wraps(f)
    def wrapper(*args: Any, escrow_dir: Path | None, db_url: str | None, **kwargs: Any) -> Any:
        if escrow_dir is None and not db_url:
            raise click.UsageError(
                "which escrow? set CONSIGN_ESCROW_DIR to the escrow data directory "
                "(or pass --escrow-dir DIR), or CONSIGN_ESCROW_DB to its PostgreSQL "
                "database (or pass --db URL)"
            )
        return f(*args, location=Location(escrow_dir, db_url or None), **kwargs)

    return wrapper  # type: ignore[return-value]


def escrow_passphrase_option(*names: str) -> Callable[[F], F]:
    return click.option(
        *names,
        "escrow_passphrase_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"File holding the escrow passphrase [else env {ESCROW_PASSPHRASE_ENV}].",
    )

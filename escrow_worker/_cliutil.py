"""Small helpers shared by the `consign` command modules: `--json` output,
status lines, passphrases, the clock, and running a coroutine.

stdout carries data only (text or `--json`); status ("OK ...") goes to stderr.
Passphrases come from an environment variable or a file, never from the command
line. This module must never print a secret, and never catch errors: the root
`consign` group turns the packages' base errors into "error:/hint:" lines.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from escrow_worker._files import read_bytes
from escrow_worker.errors import EscrowError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

# Names of environment variables, not secrets.
ESCROW_PASSPHRASE_ENV = "CONSIGN_ESCROW_PASSPHRASE"  # noqa: S105
IDENTITY_PASSPHRASE_ENV = "CONSIGN_IDENTITY_PASSPHRASE"  # noqa: S105


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")(f)


def emit(data: Mapping[str, Any] | list[Any], as_json: bool, text: str | None = None) -> None:
    """Print data on stdout: JSON, or `text` (default: "key: value" lines)."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if text is None:
        assert isinstance(data, Mapping)
        text = "\n".join(f"{k}: {_plain(v)}" for k, v in data.items())
    if text:
        click.echo(text)


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)


def status(message: str) -> None:
    click.echo(message, err=True)


def read_passphrase(path: Path | None, env: str, what: str) -> bytes:
    """From `path` (one trailing newline dropped) or else the variable `env`."""
    if path is not None:
        data = read_bytes(path, f"{what} passphrase file", limit=4096)
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
    else:
        data = os.environ.get(env, "").encode("utf-8")
    if not data:
        raise EscrowError(
            f"no {what} passphrase given",
            f"set {env} or pass a passphrase file (never the passphrase itself)",
        )
    return data


def now() -> datetime:
    return datetime.now(UTC)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%SZ")


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

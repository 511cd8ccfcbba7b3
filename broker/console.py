"""What every `consign` command uses to talk to its user (as age's `internal/term`
and `internal/logger` sit below every command).

- stdout carries data only: `emit` prints text or, with `--json`, JSON;
- stderr carries the rest: `say` for "OK ..." and status lines, `progress` for a
  bar on long work (only when stderr is a terminal), and the `error:`/`hint:`
  lines that `ReportingGroup` prints for any `broker.Error`;
- passphrases come from a file or an environment variable (`read_passphrase`),
  never from the command line;
- `run` runs a command's coroutine so that Ctrl-C (SIGINT) or SIGTERM ends it
  within a second: the command is cancelled (what it wrote is rolled back) and
  exits 130 or 143 with one line on stderr, no traceback;
- with `--json`, a failure is also a JSON object on stdout: `{"error": {"kind",
  "code", "message", "hint"}}` (docs/cli.md, "Failures as JSON");
- `now` is the clock, `iso` shows a time.

This module must never print a secret, and never catch an error itself except
in `ReportingGroup` and `run`, the places the CLI turns errors into exit codes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from broker import interrupts
from broker.canonical import iso_utc
from broker.errors import BrokerError, DiskFull, Error, Interrupted, full_disk
from broker.files import read_bytes

__all__ = [
    "IDENTITY_PASSPHRASE_ENV",
    "PROGRESS_THRESHOLD",
    "DiskFull",
    "Interrupted",
    "ReportingGroup",
    "describe_invalid",
    "emit",
    "error_json",
    "iso",
    "json_option",
    "now",
    "progress",
    "read_passphrase",
    "run",
    "say",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

# The name of an environment variable, not a secret.
IDENTITY_PASSPHRASE_ENV = "CONSIGN_IDENTITY_PASSPHRASE"  # noqa: S105
#: Work smaller than this (bytes) gets no progress bar.
PROGRESS_THRESHOLD = 4 << 20

_GENERIC_HINT = "see `consign COMMAND --help` for what the command needs"
#: Where `json_option` notes, for the whole command, that `--json` was given.
_JSON_META = "consign.json"


def json_option(f: F) -> F:
    def note(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.meta[_JSON_META] = True  # meta is shared by the whole command
        return value

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        callback=note,
        help="Print JSON on stdout (a failure too: docs/cli.md).",
    )(f)


def _json_wanted() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(_JSON_META))


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


def say(message: str) -> None:
    """A status line ("OK ...") on stderr."""
    click.echo(message, err=True)


@contextmanager
def progress(label: str, total: int) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr for large work when stderr is a terminal; the
    callback takes (done, total) and may be called from a worker thread."""
    if total < PROGRESS_THRESHOLD or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:

        def step(done: int, _total: int) -> None:
            bar.update(done - bar.pos)

        yield step


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
        raise BrokerError(
            f"no {what} passphrase given",
            f"set {env} or pass a passphrase file (never the passphrase itself)",
        )
    return data


def now() -> datetime:
    return datetime.now(UTC)


def iso(when: datetime | int | None) -> str | None:
    """A time (aware datetime or Unix seconds) as ISO 8601 UTC; None stays None."""
    return None if when is None else iso_utc(when)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine. SIGINT or SIGTERM cancels it (so every
    `async with` unwinds and rolls back) and the command reports `Interrupted`
    (`broker.interrupts`)."""
    try:
        return interrupts.run(coro, lambda signum: _report(Interrupted(signum)))
    except interrupts.Signalled as exc:
        raise Interrupted(exc.signum) from None


# -- errors -------------------------------------------------------------------------


class ReportingGroup(click.Group):
    """A click group that turns our errors into one `error:` and one `hint:` line
    on stderr and exit code 1. Usage errors stay click's (exit 2). A pydantic
    `ValidationError` that got past the checks at the boundary is reported the
    same way, in one line. Anything else is a bug and is never swallowed."""

    def invoke(self, ctx: click.Context) -> Any:
        before = interrupts.raising()
        # The AMQP client logs connection chatter (e.g. a channel closed while an
        # agent shuts down) as warnings; a command reports what matters itself.
        for noisy in ("aiormq", "aio_pika"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        # aiormq logs a failed connect as an error before raising it; the
        # transport raises it as ConnectionFailed, in words, so once is enough.
        logging.getLogger("aiormq.connection").addFilter(_not_connect_failures)
        try:
            return super().invoke(ctx)
        except (interrupts.Signalled, KeyboardInterrupt) as exc:
            signum = exc.signum if isinstance(exc, interrupts.Signalled) else signal.SIGINT
            _report(Interrupted(signum))
            ctx.exit(128 + signum)
        except Interrupted as exc:
            _report(exc)
            ctx.exit(128 + exc.signum)
        except Error as exc:
            _report(exc)
            ctx.exit(1)
        except ValidationError as exc:
            hint = f"check the names, ids and values given; {_GENERIC_HINT}"
            _report(BrokerError(describe_invalid(exc), hint), kind="invalid_input")
            ctx.exit(1)
        except (OSError, sqlite3.OperationalError) as exc:
            full = _disk_full(exc)
            if full is None:
                raise  # a bug: never swallowed
            _report(full)
            ctx.exit(1)
        finally:
            interrupts.restore(before)


def _disk_full(exc: BaseException) -> DiskFull | None:
    if not full_disk(exc):
        return None
    where = getattr(exc, "filename", None)
    return DiskFull(
        f"no space left on the device{f' writing {where}' if where else ''} ({exc}); "
        "what was being written was rolled back",
        "free some space (`consign gc` removes what the agents no longer need), then run "
        "the command again",
    )


def _kind(exc: Error) -> str:
    """The error's family for scripts: its class name in snake case
    (EscrowRefused -> escrow_refused)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def error_json(exc: Error, *, kind: str | None = None) -> dict[str, Any]:
    """What `--json` prints on stdout for a failure. `code` is the precise reason
    where the error has one (an escrow refusal's code, an untrusted message's or
    certificate's reason), else the same as `kind`."""
    family = kind or _kind(exc)
    detail = getattr(exc, "code", None) or getattr(exc, "reason", None)
    code = str(detail.value if hasattr(detail, "value") else detail) if detail else family
    return {
        "error": {
            "kind": family,
            "code": code,
            "message": exc.message,
            "hint": exc.hint or _GENERIC_HINT,
        }
    }


def _report(exc: Error, *, kind: str | None = None) -> None:
    """One `error:` line (and a `hint:` line, but for an interrupt) on stderr;
    with --json, the same as a JSON object on stdout. An interrupt is reported
    once, by the command or by the watchdog that ends it (`broker.interrupts`)."""
    if isinstance(exc, Interrupted) and not interrupts.first_report():
        return
    if _json_wanted():
        click.echo(json.dumps(error_json(exc, kind=kind), indent=2, sort_keys=True))
    click.echo(f"error: {exc.message}", err=True)
    if not isinstance(exc, Interrupted):
        click.echo(f"hint: {exc.hint or _GENERIC_HINT}", err=True)


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

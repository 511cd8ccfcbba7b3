"""The `consign` command line. Kept tiny: it only gathers the commands defined
in other modules (`consign id`, `seal`, `send`, `inbox`, `open`, `revoke`,
`status`, `events`, `gc`, `receipts`, `cosign`, `demo`, `log`, `history`,
`batch`, `receive`) and mounts `consign escrow` lazily, so a user's command never
imports the escrow's package. It must never define commands itself.
"""

from __future__ import annotations

# First, before the commands load: an interrupt while they do ends the program
# at once, with its one line (nothing is written yet). Only when this is the
# `consign` program, not a module a test or an application imports.
import os.path as _path
import sys as _sys

from broker import interrupts as _interrupts

if _path.basename(_sys.argv[0]) == "consign":
    _interrupts.on_startup()

import importlib
from typing import Any as _Any

import click

from broker.console import ReportingGroup as _ReportingGroup
from client.cli.batch import batch as _batch
from client.cli.control import cosign as _cosign
from client.cli.control import receipts as _receipts
from client.cli.demo import demo as _demo
from client.cli.identity import identity as _identity_group
from client.cli.inbox import events as _events
from client.cli.inbox import gc as _gc
from client.cli.inbox import inbox as _inbox
from client.cli.manage import history as _history
from client.cli.manage import revoke as _revoke
from client.cli.manage import status as _status
from client.cli.notary import log as _log
from client.cli.open import open_ as _open
from client.cli.receive import receive as _receive
from client.cli.seal import seal as _seal
from client.cli.send import send as _send

__all__ = ["main"]

#: Mounted on first use: `consign escrow` is the operator's, from `escrow_worker`.
_LAZY = {"escrow": ("escrow_worker.cli", "escrow", "The escrow operator's commands.")}


class _ConsignGroup(_ReportingGroup):
    def invoke(self, ctx: click.Context) -> _Any:
        result = super().invoke(ctx)
        if _path.basename(_sys.argv[0]) == "consign":
            _interrupts.finished()  # done: a late Ctrl-C no longer changes the outcome
        return result

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY and cmd_name not in self.commands:
            module, name, _ = _LAZY[cmd_name]
            command = getattr(importlib.import_module(module), name)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The listing must not import the escrow just to show one help line.
        rows = [
            (name, cmd.get_short_help_str(formatter.width))
            for name, cmd in sorted(self.commands.items())
            if not cmd.hidden
        ]
        rows += [(n, short) for n, (_, _, short) in _LAZY.items() if n not in self.commands]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))


@click.group(cls=_ConsignGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="consignment")
def main() -> None:
    """Consignment: secure transfer of packages through an escrow.

    Exit codes: 0 success, 1 refused or failed (see the error and hint lines on
    stderr), 2 usage error.
    """


for _command in (
    _demo, _seal, _send, _inbox, _open, _revoke, _status, _events, _receipts, _cosign,
    _batch, _receive, _gc,
):  # fmt: skip
    main.add_command(_command)
main.add_command(_identity_group)
main.add_command(_log)
main.add_command(_history)

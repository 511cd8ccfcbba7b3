"""`consign escrow ...`: the operator's commands, one module per group of them:
`setup` (init, register, sign-csr), `directory` (revoke, users, crl, info),
`policy` (the trust policy), `worker` (worker, rotate-master-key, dead-letters),
`log` (the transaction log: verify, show, head, export), `invoice`,
`console` (console, operator: the operators' web console).
`client.cli` mounts this group lazily, so a user's command never imports the
escrow. This module only assembles the group; it must never define a command.
"""

from __future__ import annotations

import click

from escrow_worker.cli.console import COMMANDS as CONSOLE_COMMANDS
from escrow_worker.cli.directory import COMMANDS as DIRECTORY_COMMANDS
from escrow_worker.cli.invoice import COMMANDS as INVOICE_COMMANDS
from escrow_worker.cli.log import COMMANDS as LOG_COMMANDS
from escrow_worker.cli.policy import policy
from escrow_worker.cli.setup import COMMANDS as SETUP_COMMANDS
from escrow_worker.cli.worker import COMMANDS as WORKER_COMMANDS

__all__ = ["escrow"]


@click.group("escrow")
def escrow() -> None:
    """Operate an escrow: its certificate authority, directory, trust policy,
    and the workers that answer requests over RabbitMQ.

    Private keys are sealed under the escrow passphrase, read from
    CONSIGN_ESCROW_PASSPHRASE or a passphrase file, never from the command line.
    """


for _command in (
    *SETUP_COMMANDS, *DIRECTORY_COMMANDS, policy, *WORKER_COMMANDS, *LOG_COMMANDS,
    *INVOICE_COMMANDS, *CONSOLE_COMMANDS,
):  # fmt: skip
    escrow.add_command(_command)

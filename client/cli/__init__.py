"""The `consign` command line. Kept tiny: it only gathers the commands defined
in other modules (`consign id`, `consign escrow`, `seal`, `send`, `inbox`,
`open`, `revoke`, `status`, `events`, `demo`). It must never define commands
itself.
"""

import click

from client.cli._base import ConsignGroup as _ConsignGroup
from client.cli.demo import demo as _demo
from client.cli.identity import identity as _identity_group
from client.cli.inbox import events as _events
from client.cli.inbox import inbox as _inbox
from client.cli.manage import revoke as _revoke
from client.cli.manage import status as _status
from client.cli.open import open_ as _open
from client.cli.seal import seal as _seal
from client.cli.send import send as _send
from escrow_worker.cli import escrow as _escrow_group

__all__ = ["main"]


@click.group(cls=_ConsignGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="consignment")
def main() -> None:
    """Consignment: secure transfer of packages through an escrow.

    Exit codes: 0 success, 1 refused or failed (see the error and hint lines on
    stderr), 2 usage error.
    """


for _command in (_demo, _seal, _send, _inbox, _open, _revoke, _status, _events):
    main.add_command(_command)
main.add_command(_identity_group)
main.add_command(_escrow_group)

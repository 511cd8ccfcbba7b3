"""The `consign` command line. Kept tiny: it only gathers the command groups
defined in other modules (`consign id`, `consign escrow`, later `seal`,
`send`, ...). It must never define commands itself.
"""

import click

from client.cli._base import ConsignGroup as _ConsignGroup
from client.cli.identity import identity as _identity_group
from escrow_worker.cli import escrow as _escrow_group

__all__ = ["main"]


@click.group(cls=_ConsignGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="consignment")
def main() -> None:
    """Consignment: secure transfer of packages through an escrow.

    Exit codes: 0 success, 1 refused or failed (see the error and hint lines on
    stderr), 2 usage error.
    """


main.add_command(_identity_group)
main.add_command(_escrow_group)

"""`consign demo`: the whole story on one machine (see `client.demo`). It must
never leave anything behind: the story runs in a temporary directory.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from broker.console import run, say
from client.demo import run_demo


@click.command()
@click.option(
    "--amqp-url",
    envvar="CONSIGN_AMQP_URL",
    metavar="URL",
    help="Run it over RabbitMQ [env CONSIGN_AMQP_URL; default: in-process, no server].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON on stdout.")
def demo(amqp_url: str | None, as_json: bool) -> None:
    """Show the whole story in one process: an escrow with its worker, alice,
    bob, carol and dave; seal (bob must sign a receipt, dave must co-sign),
    deposit, deliver, request (bob's receipt), held until dave co-signs,
    release, open, the receipt alice holds, revoke, and a request denied after
    revocation.

    Needs no server: it runs on the in-process transport unless a RabbitMQ URL
    is given (then on queues of this run's own, prefixed "consign-demo-",
    whatever CONSIGN_QUEUE_PREFIX says, and deleted at the end: a real escrow
    on the same broker is never touched). Everything else lives in a temporary
    directory removed at the end.
    """
    steps: list[dict[str, str]] = []

    def show(step: str, text: str) -> None:
        steps.append({"step": step, "text": text})
        if not as_json:
            click.echo(f"{step:<9} {text}")

    with tempfile.TemporaryDirectory(prefix="consign-demo-") as tmp:
        result = run(run_demo(Path(tmp), show, amqp_url=amqp_url or None))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "consignment_id": result.consignment_id,
                    "opened": result.opened_text,
                    "denied": result.denied_code,
                    "held": result.held_code,
                    "cosigned_by": list(result.cosigned_by),
                    "receipts": list(result.receipts_verified),
                    "steps": steps,
                },
                indent=2,
            )
        )
    say("OK the demo ran end to end; see README.md for the same over RabbitMQ")

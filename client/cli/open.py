"""`consign open`: open a consignment with the key part the escrow releases.

A thin wrapper around `ReceiverAgent.open`: it must never write a file unless
every check passed (digest, signed release, sender's certificate and signature,
every chunk, the commitment).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from broker.console import emit, iso, json_option, progress, run, say
from client.agent import OpenedConsignment, ReceiverAgent
from client.cli._agentcli import AgentOptions, agent_options, running


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # open() reports it


@click.command("open")
@click.argument("consignment", metavar="FILE_OR_ID")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to open the files into (created if missing).",
)
@click.option(
    "--overwrite", "--force", is_flag=True, help="Replace files that already exist there."
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the consignment file in your agent's state after opening it "
    "(by default it is removed once opened).",
)
@agent_options
@json_option
def open_(
    opts: AgentOptions, consignment: str, output: Path, overwrite: bool, keep: bool, as_json: bool
) -> None:
    """Open a consignment: a FILE, or the ID of one that arrived in your inbox.

    Checks the file's digest, asks the escrow for the key part (a signed
    release, checked against the escrow's certificate), checks the sender's
    certificate and signature, and decrypts into --output. A refusal by the
    escrow (revoked, expired, ...) is reported with its reason. Where the
    sender asked you for a receipt, a signed receipt (the consignment's id,
    digest and policy digest) is sent first, and goes to the sender.
    """

    async def go() -> OpenedConsignment:
        async with running(opts, ReceiverAgent) as agent:
            path = await agent.locate(consignment)
            size = await asyncio.to_thread(_size, path)
            with progress("opening", size) as step:
                return await agent.open(
                    consignment, output, overwrite=overwrite, progress=step, keep=keep
                )

    opened = run(go())
    data = {
        "consignment_id": opened.consignment_id,
        "sender": opened.sender,
        "mode": opened.mode.value,
        "released_at": iso(opened.released_at),
        "directory": str(opened.destination),
        "files": [{"name": f.name, "size": f.size, "mode": f.mode} for f in opened.files],
    }
    text = "\n".join(f"{opened.destination / f.name}  {f.size}" for f in opened.files)
    emit(data, as_json, text)
    if opened.receipt_signed_at is not None:
        say(f"signed and sent the receipt {opened.sender} asked for, before the release")
    say(f"OK opened {len(opened.files)} file(s) from {opened.sender} into {opened.destination}")

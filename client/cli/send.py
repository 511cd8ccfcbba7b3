"""`consign send`: send a consignment to its receivers' inboxes over RabbitMQ, or
write it out for any other channel (`-o`).

A thin wrapper around `SenderAgent.send`. It must never change the file.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import click

from client.agent import SenderAgent, Sent
from client.cli._agentcli import AgentOptions, agent_options, progress, running
from client.consignment import inspect
from client.errors import AgentError
from escrow_worker.cli import emit, json_option, status


@click.command()
@click.argument("consignment", metavar="FILE_OR_ID")
@click.option(
    "--to",
    "receivers",
    multiple=True,
    metavar="NAME",
    help="Send to this receiver (repeatable) [default: those it was sealed for].",
)
@click.option(
    "-o",
    "--file",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the consignment to this file for another channel (mail, FTP, ...) "
    "instead of sending it over the broker.",
)
@agent_options
@json_option
def send(
    opts: AgentOptions,
    consignment: str,
    receivers: tuple[str, ...],
    output: Path | None,
    as_json: bool,
) -> None:
    """Send a consignment (its FILE, or the ID `consign seal` printed) to the
    receivers' inboxes as signed chunks of at most 512 KiB.

    The consignment is useless without the escrow's key part, so it may travel
    by any channel: with -o/--file it is written to a file instead.
    """
    if output is not None:
        _write_out(opts, consignment, output, as_json)
        return

    async def go() -> Sent:
        async with running(opts, SenderAgent) as agent:
            path = await agent.locate(consignment)
            size = (await asyncio.to_thread(path.stat)).st_size
            with progress("sending", size) as step:
                return await agent.send(consignment, to=receivers or None, progress=step)

    sent = asyncio.run(go())
    emit(
        {
            "consignment_id": sent.consignment_id,
            "receivers": list(sent.receivers),
            "chunks": sent.chunks,
            "size": sent.size,
        },
        as_json,
    )
    status(f"OK sent to the inbox of {', '.join(sent.receivers)} in {sent.chunks} chunk(s)")


def _write_out(opts: AgentOptions, consignment: str, output: Path, as_json: bool) -> None:
    if output.exists():
        raise AgentError(f"{output} already exists", "choose another file name")

    async def find() -> Path:
        async with running(opts, SenderAgent) as agent:
            return await agent.locate(consignment)

    path = Path(consignment) if Path(consignment).is_file() else asyncio.run(find())
    cid = inspect(path).consignment_id
    try:
        shutil.copyfile(path, output)
    except OSError as exc:
        raise AgentError(f"cannot write {output}: {exc.strerror}", "check the path") from exc
    emit({"consignment_id": cid, "file": str(output)}, as_json)
    status(f"OK wrote {output}; hand it over by any channel")

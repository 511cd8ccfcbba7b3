"""`consign send`: send a consignment to its receivers' inboxes over RabbitMQ, or
write it out for any other channel (`-o`).

A thin wrapper around `SenderAgent.send`. It must never change the file.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import click

from broker.console import emit, json_option, progress, run, say
from client.agent import SenderAgent, Sent
from client.agent.store import Store
from client.cli._agentcli import AgentOptions, agent_options, running, state_dir
from client.consignment import inspect
from client.errors import AgentError
from client.home import IdentityHome


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
    "--output",
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

    sent = run(go())
    emit(
        {
            "consignment_id": sent.consignment_id,
            "receivers": list(sent.receivers),
            "chunks": sent.chunks,
            "size": sent.size,
        },
        as_json,
        # The same "consignment:" line as seal and status print.
        f"consignment: {sent.consignment_id}\nreceivers: {', '.join(sent.receivers)}\n"
        f"chunks: {sent.chunks}\nsize: {sent.size}",
    )
    say(f"OK sent to the inbox of {', '.join(sent.receivers)} in {sent.chunks} chunk(s)")


def _write_out(opts: AgentOptions, consignment: str, output: Path, as_json: bool) -> None:
    """Copy the consignment file to `output`: no broker, no passphrase needed."""
    if output.exists():
        raise AgentError(f"{output} already exists", "choose another file name")
    path = Path(consignment)
    if not path.is_file():
        path = run(_sealed_file(opts, consignment))
    cid = inspect(path).consignment_id
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, output)
    except OSError as exc:
        raise AgentError(f"cannot write {output}: {exc.strerror}", "check the path") from exc
    text = f"consignment: {cid}\nfile: {output}"
    emit({"consignment_id": cid, "file": str(output)}, as_json, text)
    say(f"OK wrote {output}; hand it over by any channel")


async def _sealed_file(opts: AgentOptions, consignment_id: str) -> Path:
    name = IdentityHome(opts.home).resolve(opts.as_name)
    store = await Store.open(state_dir(opts.home, name))
    try:
        sealed = await store.sealed(consignment_id)
    finally:
        await store.close()
    if sealed is None:
        raise AgentError(
            f"{name!r} sealed no consignment {consignment_id}", "give the consignment file instead"
        )
    return sealed[0]

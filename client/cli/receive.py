"""`consign receive --into DIR`: the unattended receiver. Runs until SIGTERM or
Ctrl-C, reconnecting by itself (the transport's robust connection), opening
each consignment as it arrives into DIR/<consignment id> and, with `--exec`,
running a command per consignment; one log line per consignment on stderr.

A thin wrapper around `ReceiverAgent.serve`: a consignment is handled once its
command exits 0; a command that fails or overruns `--handler-timeout` is run
again later, and after `--max-tries` the consignment is parked with its reason
(`ReceiverAgent.parked` lists them). Across restarts each
consignment is opened once and handed over once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import signal
from pathlib import Path

import click

from broker.console import say
from client.agent import ReceiverAgent
from client.agent.types import OpenedConsignment
from client.agent.unattended import Handler, ServeOptions
from client.cli._agentcli import AgentOptions, agent_options, running
from client.cli.options import into_option

__all__ = ["receive"]


class CommandFailed(Exception):
    """The --exec command exited non-zero."""


def _runner(command: str | None) -> Handler:
    argv = shlex.split(command) if command else []

    async def handle(opened: OpenedConsignment) -> None:
        say(
            f"received {opened.consignment_id} from {opened.sender}: "
            f"{len(opened.files)} file(s) in {opened.destination}"
        )
        if not argv:
            return
        env = dict(os.environ)
        env.update(
            CONSIGN_ID=opened.consignment_id,
            CONSIGN_SENDER=opened.sender,
            CONSIGN_DIR=str(opened.destination),
        )
        process = await asyncio.create_subprocess_exec(
            *argv, str(opened.destination), env=env, stdin=asyncio.subprocess.DEVNULL
        )
        try:
            code = await process.wait()
        except asyncio.CancelledError:
            process.kill()
            await process.wait()
            raise
        if code != 0:
            raise CommandFailed(f"{argv[0]} exited with status {code}")

    return handle


@click.command()
@into_option
@click.option(
    "--exec", "command", metavar="COMMAND",
    help="Run COMMAND DIR per consignment (env CONSIGN_ID, CONSIGN_SENDER, CONSIGN_DIR); "
    "exit status 0 hands it over.",
)  # fmt: skip
@click.option(
    "--handler-timeout", type=click.FloatRange(min=0.1), default=300.0, show_default=True,
    help="Seconds COMMAND may take per consignment.",
)  # fmt: skip
@click.option(
    "--max-tries", type=click.IntRange(min=1), default=5, show_default=True,
    help="Tries per consignment before it is parked.",
)  # fmt: skip
@agent_options
def receive(
    opts: AgentOptions,
    into: Path,
    command: str | None,
    handler_timeout: float,
    max_tries: int,
) -> None:
    """Receive unattended until SIGTERM: open every consignment as it arrives
    into INTO/<id>, and run --exec COMMAND for each."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = ServeOptions(handler_timeout=handler_timeout, max_tries=max_tries)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with running(opts, ReceiverAgent) as agent:
            say(f"OK receiving as {agent.name} into {into} (SIGTERM stops)")
            await agent.serve(_runner(command), into, stop=stop, options=options)
        say("OK stopped")

    asyncio.run(go())

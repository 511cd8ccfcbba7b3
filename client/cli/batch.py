"""`consign batch seal | open | revoke`: many consignments at once, in `batch`
requests to the escrow, with a progress bar on stderr and a result per item.

`--json` prints one result per item on stdout (a list of objects: key, ok,
consignment_id, path, code, message). The exit code is 1 when any item failed,
with a summary on stderr naming each; 0 when every item succeeded. Thin
wrappers around `SenderAgent.seal_many`, `revoke_many` and
`ReceiverAgent.open_many`; a run interrupted (a crash, Ctrl-C, no reply) is
resumed by running the same command again.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from broker.console import emit, json_option, run, say
from broker.deposit import Mode
from broker.messages import BATCH_LIMIT
from client.agent import ReceiverAgent, SenderAgent
from client.agent.bulk import BatchProgress, ItemResult
from client.agent.inputs import require_consignment_id
from client.agent.joblist import each_file, each_file_and_receiver, read_manifest
from client.cli._agentcli import AgentOptions, agent_options, running
from client.cli.options import into_option

__all__ = ["batch"]

_LABELS = {"seal": "sealing", "deposit": "depositing", "send": "sending", "key": "asking",
           "open": "opening", "revoke": "revoking"}  # fmt: skip


@contextmanager
def _bars() -> Iterator[BatchProgress | None]:
    """A progress bar per stage on stderr, when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    bars: dict[str, Any] = {}

    def step(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = click.progressbar(length=total, label=_LABELS.get(stage, stage), file=sys.stderr)
            bar.__enter__()
            bars[stage] = bar
        bar.update(done - bar.pos)

    try:
        yield step
    finally:
        for bar in bars.values():
            bar.__exit__(None, None, None)


def _offset(step: BatchProgress, start: int, total: int) -> BatchProgress:
    """Progress of one part, counted within the whole run."""
    return lambda stage, done, _total: step(stage, start + done, total)


def _report(results: list[ItemResult], as_json: bool, what: str) -> None:
    emit(
        [r.as_json() for r in results],
        as_json,
        "\n".join(
            f"{'ok' if r.ok else 'FAILED':<6} {r.key}  "
            + (r.consignment_id or "-")
            + ("" if r.ok else f"  {r.code}: {r.message}")
            for r in results
        ),
    )
    failed = [r for r in results if not r.ok]
    if not failed:
        say(f"OK {len(results)} {what}")
        return
    say(f"error: {len(failed)} of {len(results)} failed:")
    for r in failed:
        say(f"  {r.key}: {r.code}: {r.message}")
    say("hint: the others are done; fix these and run the same command again")
    sys.exit(1)


@click.group()
def batch() -> None:
    """Many consignments at once: seal and deposit, open, revoke."""


@batch.command("seal")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--to", "to", multiple=True, metavar="NAME", help="A receiver (repeatable).")
@click.option(
    "--each-receiver",
    is_flag=True,
    help="One consignment per file and receiver, instead of one per file to all.",
)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A CSV (files,to,output; ';' between several) or JSON Lines file of consignments.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The directory the consignment files are written to.",
)
@click.option(
    "--mode", type=click.Choice([m.value for m in Mode]), default=Mode.SPLIT.value,
    show_default=True, help="Split keys (K1+K2) or the key escrowed whole.",
)  # fmt: skip
@click.option("--send", "send_too", is_flag=True, help="Send each one to its receivers too.")
@agent_options
@json_option
def seal_many(
    opts: AgentOptions,
    files: tuple[Path, ...],
    to: tuple[str, ...],
    each_receiver: bool,
    manifest: Path | None,
    out: Path,
    mode: str,
    send_too: bool,
    as_json: bool,
) -> None:
    """Seal and deposit many consignments: one per FILE to every --to receiver
    (or one per FILE and receiver with --each-receiver), or those a --manifest
    lists. A missing input file refuses the run before anything is sealed."""
    if manifest is not None and (files or to):
        raise click.UsageError("give either FILES with --to, or --manifest")
    bad: list[ItemResult] = []
    if manifest is not None:
        jobs, bad = read_manifest(manifest, out)
    elif not files or not to:
        raise click.UsageError("name the FILES and at least one receiver (--to NAME)")
    else:
        jobs = (each_file_and_receiver if each_receiver else each_file)(list(files), to, out)

    async def go() -> list[ItemResult]:
        # In parts of one batch each, so the first consignments are on their way
        # while the next are sealed; the same command resumes the same parts.
        results: list[ItemResult] = []
        async with running(opts, SenderAgent) as agent:
            with _bars() as step:
                for start in range(0, len(jobs), BATCH_LIMIT):
                    part = jobs[start : start + BATCH_LIMIT]
                    counted = None if step is None else _offset(step, start, len(jobs))
                    done = await agent.seal_many(part, mode=Mode(mode), progress=counted)
                    if send_too:
                        done = await agent.send_many(done, progress=counted)
                    results += done
            return results

    results = run(go()) if jobs else []
    _report(bad + results, as_json, "consignment(s) sealed and deposited")


@batch.command("open")
@into_option
@click.option(
    "--wait", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
    help="Seconds the inbox must stay quiet before opening.",
)  # fmt: skip
@agent_options
@json_option
def open_many(opts: AgentOptions, into: Path, wait: float, as_json: bool) -> None:
    """Fetch your inbox and open every consignment that arrived and was not
    opened yet, asking the escrow for the key parts in batches."""

    async def go() -> list[ItemResult]:
        async with running(opts, ReceiverAgent) as agent:
            await agent.sync(idle=wait, timeout=max(opts.timeout, wait))
            with _bars() as step:
                return await agent.open_many(into, progress=step)

    _report(run(go()), as_json, "consignment(s) opened")


@batch.command("revoke")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option(
    "--receiver", "receivers", multiple=True, metavar="NAME",
    help="Revoke for this receiver only (repeatable) [default: every receiver].",
)  # fmt: skip
@agent_options
@json_option
def revoke_many(
    opts: AgentOptions, ids: tuple[str, ...], receivers: tuple[str, ...], as_json: bool
) -> None:
    """Revoke many consignments (ID...) in batches."""
    for cid in ids:
        require_consignment_id(cid)

    async def go() -> list[ItemResult]:
        async with running(opts, SenderAgent) as agent:
            with _bars() as step:
                return await agent.revoke_many(ids, receivers, progress=step)

    _report(run(go()), as_json, "consignment(s) revoked")

"""`consign seal`: seal files for receivers and deposit the key part at the escrow.

A thin wrapper around `SenderAgent.seal`. It must never overwrite a file unless
asked, and never print key material.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click
from pydantic import ValidationError

from broker import ControlAttributes, Mode
from broker.console import emit, iso, json_option, progress, say
from client.agent import Sealed, SenderAgent
from client.agent.inputs import check_release_window
from client.cli._agentcli import AgentOptions, Duration, Timestamp, agent_options, running
from client.errors import AgentError

#: The option that sets each control attribute, to name it in an error.
_OPTIONS = {
    "not_before": "--not-before",
    "not_after": "--not-after",
    "ask_within_seconds": "--ask-within",
    "max_releases": "--max-releases",
}


def describe(sealed: Sealed) -> dict[str, object]:
    receipt = sealed.receipt
    return {
        "consignment_id": sealed.consignment_id,
        "file": str(sealed.path),
        "mode": sealed.mode.value,
        "receivers": list(sealed.receivers),
        "size": sealed.consignment_size,
        "digest": sealed.consignment_digest,
        "receipt": {
            "deposited_at": iso(receipt.deposited_at),
            "sender": receipt.sender,
            "receivers": list(receipt.receivers),
            "plaintext_commitment": receipt.plaintext_commitment,
            "policy_digest": receipt.policy_digest.hex(),
            "request_id": receipt.request_id,
        },
    }


def _text(info: dict[str, object]) -> str:
    receipt = info["receipt"]
    assert isinstance(receipt, dict)
    receivers = info["receivers"]
    assert isinstance(receivers, list)
    return "\n".join(
        [
            f"consignment: {info['consignment_id']}",
            f"file: {info['file']}",
            f"mode: {info['mode']}",
            f"receivers: {', '.join(receivers)}",
            f"size: {info['size']}",
            f"digest: {info['digest']}",
            f"deposited: {receipt['deposited_at']}",
            f"receipt: signed by the escrow, request {receipt['request_id']}",
        ]
    )


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--to",
    "receivers",
    multiple=True,
    required=True,
    metavar="NAME",
    help="A receiver's registered name (repeatable).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The consignment file to write.",
)
@click.option(
    "--force", "--overwrite", is_flag=True, help="Overwrite the output file if it exists."
)
@click.option(
    "--mode",
    type=click.Choice([m.value for m in Mode]),
    default=Mode.SPLIT.value,
    show_default=True,
    help="split: K1 travels in the file, K2 at the escrow; escrowed: the wrapped key "
    "is only at the escrow.",
)
@click.option(
    "--not-before",
    type=Timestamp("up"),
    help="No release before this time (a fraction of a second rounds up).",
)
@click.option(
    "--not-after",
    type=Timestamp("down"),
    help="No release after this time (a fraction of a second rounds down).",
)
@click.option(
    "--ask-within",
    type=Duration(),
    help="Receivers must ask within this long of being notified (e.g. 7d).",
)
@click.option(
    "--max-releases", type=click.IntRange(min=1), help="Release the key part at most this often."
)
@agent_options
@json_option
def seal(
    opts: AgentOptions,
    files: tuple[Path, ...],
    receivers: tuple[str, ...],
    output: Path,
    force: bool,
    mode: str,
    not_before: int | None,
    not_after: int | None,
    ask_within: int | None,
    max_releases: int | None,
    as_json: bool,
) -> None:
    """Seal FILES (files or directories) for the receivers and deposit the
    escrow's key part.

    Looks up each receiver at the escrow (checking its certificate against your
    CA and the revocation list), writes the consignment to --output, deposits
    the key part sealed to the escrow, and prints the consignment id and the
    escrow's signed receipt. Then send the file with `consign send`, or by any
    other channel.
    """
    if not_before is not None and not_after is not None and not_after <= not_before:
        raise click.UsageError(
            f"--not-after ({iso(not_after)}) must be later than --not-before ({iso(not_before)})"
        )
    try:
        attributes = ControlAttributes(
            not_before=not_before,
            not_after=not_after,
            ask_within_seconds=ask_within,
            max_releases=max_releases,
        )
    except ValidationError as exc:  # the options' own types keep this rare
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        option = _OPTIONS.get(field, "the time options")
        raise click.UsageError(f"{option}: {first['msg']}") from None
    check_release_window(attributes, now=int(time.time()))  # before any broker or file
    if output.exists() and not force:
        raise AgentError(
            f"{output} already exists", "choose another --output, or pass --force to replace it"
        )
    total = sum(p.stat().st_size for p in files if p.is_file())

    async def go() -> Sealed:
        async with running(opts, SenderAgent) as agent:
            with progress("sealing", total) as step:
                return await agent.seal(
                    list(files),
                    output,
                    to=receivers,
                    mode=Mode(mode),
                    attributes=attributes,
                    progress=step,
                )

    sealed = asyncio.run(go())
    info = describe(sealed)
    emit(info, as_json, _text(info))
    say(
        f"OK sealed and deposited for {', '.join(sealed.receivers)}; "
        f"send it with `consign send {sealed.consignment_id}` or by any channel"
    )

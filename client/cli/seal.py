"""`consign seal`: seal files for receivers and deposit the key part at the escrow.

A thin wrapper around `SenderAgent.seal`. It must never overwrite a file unless
asked, and never print key material.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from broker import Mode
from broker.console import emit, iso, json_option, progress, run, say
from client.agent import Sealed, SenderAgent
from client.agent.inputs import check_attributes
from client.cli._agentcli import AgentOptions, agent_options, running
from client.cli.attributes import (
    SealCommand,
    attribute_options,
    policy_attributes,
    receiver_attributes,
)
from client.errors import AgentError


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


@click.command(cls=SealCommand)
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
@attribute_options
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
    receipt: bool,
    cosign: tuple[str, ...],
    for_names: tuple[str, ...],
    own: tuple[str, ...],
    as_json: bool,
) -> None:
    """Seal FILES (files or directories) for the receivers and deposit the
    escrow's key part.

    Looks up each receiver at the escrow (checking its certificate against your
    CA and the revocation list), writes the consignment to --output, deposits
    the key part sealed to the escrow, and prints the consignment id and the
    escrow's signed receipt. Then send the file with `consign send`, or by any
    other channel.

    Times are ISO 8601 (UTC unless a zone is given, e.g. 2026-12-31T00:00Z) or
    Unix seconds; durations 90, 90s, 15m, 2h or 7d. The attribute flags before
    the first --for hold for every receiver; those after `--for NAME` are
    NAME's own (e.g. `--for bob --not-after 2026-12-31T00:00Z --receipt`).
    """
    attributes = policy_attributes(
        not_before=not_before,
        not_after=not_after,
        ask_within=ask_within,
        max_releases=max_releases,
        receipt=receipt,
        cosign=cosign,
    )
    names = list(dict.fromkeys(receivers))
    per_receiver = receiver_attributes(for_names, own, names, attributes)
    # Before any broker or file:
    check_attributes(attributes, per_receiver, names, now=int(time.time()))
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
                    receiver_attributes=per_receiver,
                )

    sealed = run(go())
    info = describe(sealed)
    emit(info, as_json, _text(info))
    say(
        f"OK sealed and deposited for {', '.join(sealed.receivers)}; "
        f"send it with `consign send {sealed.consignment_id}` or by any channel"
    )

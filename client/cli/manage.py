"""`consign revoke` and `consign status`: the sender's control over a deposited
consignment. Thin wrappers around `SenderAgent.revoke` and `status`.
"""

from __future__ import annotations

import asyncio

import click

from client._agent import require_consignment_id
from client.agent import ConsignmentStatus, Revoked, SenderAgent
from client.cli._agentcli import AgentOptions, agent_options, iso, running
from escrow_worker.cli import emit, json_option
from escrow_worker.cli import status as say


@click.command()
@click.argument("consignment_id", metavar="ID")
@click.option(
    "--receiver",
    "receivers",
    multiple=True,
    metavar="NAME",
    help="Revoke for this receiver only (repeatable) [default: every receiver].",
)
@agent_options
@json_option
def revoke(
    opts: AgentOptions, consignment_id: str, receivers: tuple[str, ...], as_json: bool
) -> None:
    """Revoke consignment ID before its key part is released: the escrow then
    refuses every later request from the receivers named (or all of them)."""
    require_consignment_id(consignment_id)  # before asking for a passphrase

    async def go() -> Revoked:
        async with running(opts, SenderAgent) as agent:
            return await agent.revoke(consignment_id, receivers)

    revoked = asyncio.run(go())
    emit(
        {"consignment_id": revoked.consignment_id, "revoked": list(revoked.revoked)},
        as_json,
    )
    say(f"OK revoked for {', '.join(revoked.revoked) or 'nobody'}")


@click.command()
@click.argument("consignment_id", metavar="ID")
@agent_options
@json_option
def status(opts: AgentOptions, consignment_id: str, as_json: bool) -> None:
    """Ask the escrow about consignment ID: when it was deposited, and per
    receiver when it was notified, how often released, revoked or last denied."""
    require_consignment_id(consignment_id)  # before asking for a passphrase

    async def go() -> ConsignmentStatus:
        async with running(opts, SenderAgent) as agent:
            return await agent.status(consignment_id)

    state = asyncio.run(go())
    receivers: list[dict[str, object]] = [
        {
            "name": r.name,
            "notified_at": iso(r.notified_at),
            "releases": r.releases,
            "revoked_at": iso(r.revoked_at),
            "last_denied": r.last_denied,
        }
        for r in state.receivers
    ]
    data = {
        "consignment_id": state.consignment_id,
        "sender": state.sender,
        "mode": state.mode.value,
        "deposited_at": iso(state.deposited_at),
        "receivers": receivers,
    }
    lines = [
        f"consignment: {state.consignment_id}",
        f"sender: {state.sender}",
        f"mode: {state.mode.value}",
        f"deposited: {data['deposited_at']}",
    ]
    for r in receivers:
        lines.append(
            f"receiver {r['name']}: notified {r['notified_at'] or '-'}, released "
            f"{r['releases']}x, revoked {r['revoked_at'] or '-'}, last denied "
            f"{r['last_denied'] or '-'}"
        )
    emit(data, as_json, "\n".join(lines))

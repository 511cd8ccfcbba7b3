"""`consign revoke` and `consign status`: the sender's control over a deposited
consignment. Thin wrappers around `SenderAgent.revoke` and `status`; they must
never ask for a passphrase (or the escrow) about something that is not a
consignment id.
"""

from __future__ import annotations

import asyncio

import click

from broker.console import emit, iso, json_option, say
from client.agent import ConsignmentStatus, Revoked, SenderAgent
from client.agent.inputs import require_consignment_id
from client.cli._agentcli import AgentOptions, agent_options, running


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
    already = set(revoked.already_revoked)
    newly = [name for name in revoked.revoked if name not in already]
    released = {name: n for name, n in (revoked.releases or {}).items() if n > 0}
    emit(
        {
            "consignment_id": revoked.consignment_id,
            "revoked": list(revoked.revoked),
            "already_revoked": list(revoked.already_revoked),
            "releases": None if revoked.releases is None else dict(revoked.releases),
        },
        as_json,
        f"consignment: {revoked.consignment_id}\nrevoked: {', '.join(revoked.revoked) or '-'}",
    )
    for line in revoke_report(newly, list(revoked.already_revoked), released):
        say(line)


def revoke_report(newly: list[str], already: list[str], released: dict[str, int]) -> list[str]:
    """The status lines of a revoke: who is newly revoked, who was already, and
    who had the key part before it (revoking does not take that back)."""
    parts = []
    if newly:
        parts.append(f"revoked for {', '.join(newly)}")
    if already:
        parts.append(f"{', '.join(already)} already revoked before, nothing changed")
    lines = [f"OK {'; '.join(parts) or 'revoked for nobody'}"]
    for name, count in released.items():
        times = "once" if count == 1 else f"{count} times"
        lines.append(
            f"note: {name} already received the key part (released {times}); "
            "revoking only stops further releases"
        )
    return lines


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

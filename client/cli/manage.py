"""`consign revoke`, `status` and `history`: control over a deposited
consignment (status per receiver: notified, requested, released, receipt,
co-signatures, denied and why, expired). Thin wrappers around
`SenderAgent.revoke` and `status`; they must never ask for a passphrase (or the
escrow) about something that is not a consignment id.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from broker.console import emit, iso, json_option, run, say
from broker.files import write_bytes
from broker.txlog import Entry
from client.agent import ConsignmentStatus, Revoked, SenderAgent
from client.agent.history import History
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

    revoked = run(go())
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
    """Ask the escrow about consignment ID: when it was deposited, who has
    co-signed, and per receiver: notified, last requested, released (how
    often, last when), receipt, co-signatures, last denied and why, when its
    window closes, expired (closed unused), revoked."""
    require_consignment_id(consignment_id)  # before asking for a passphrase

    async def go() -> ConsignmentStatus:
        async with running(opts, SenderAgent) as agent:
            return await agent.status(consignment_id)

    state = run(go())
    data = status_data(state)
    emit(data, as_json, "\n".join(status_lines(state)))


def status_data(state: ConsignmentStatus) -> dict[str, object]:
    """The status for --json: times in ISO 8601 UTC, null where nothing happened."""
    receivers: list[dict[str, object]] = [
        {
            "name": r.name,
            "notified_at": iso(r.notified_at),
            "requested_at": iso(r.requested_at),
            "releases": r.releases,
            "released_at": iso(r.released_at),
            "receipt_required": r.receipt_required,
            "receipt_at": iso(r.receipt_at),
            "closes_at": iso(r.closes_at),
            "expired_at": iso(r.expired_at),
            "revoked_at": iso(r.revoked_at),
            "last_denied": r.last_denied,
            "last_denied_at": iso(r.last_denied_at),
        }
        for r in state.receivers
    ]
    return {
        "consignment_id": state.consignment_id,
        "sender": state.sender,
        "mode": state.mode.value,
        "deposited_at": iso(state.deposited_at),
        "receivers": receivers,
        "cosigners": [{"name": c.name, "signed_at": iso(c.signed_at)} for c in state.cosigners],
    }


def status_lines(state: ConsignmentStatus) -> list[str]:
    """The status for people: one line per receiver, what happened to it."""
    lines = [
        f"consignment: {state.consignment_id}",
        f"sender: {state.sender}",
        f"mode: {state.mode.value}",
        f"deposited: {iso(state.deposited_at)}",
    ]
    signed = [c for c in state.cosigners if c.signed_at is not None]
    cosigning = "-"
    if state.cosigners:
        missing = [c.name for c in state.cosigners if c.signed_at is None]
        cosigning = f"{len(signed)}/{len(state.cosigners)}" + (
            f" (missing {', '.join(missing)})" if missing else ""
        )
        for c in state.cosigners:
            lines.append(f"co-signer {c.name}: signed {iso(c.signed_at) or '-'}")
    for r in state.receivers:
        receipt = iso(r.receipt_at) or ("missing" if r.receipt_required else "not asked")
        denied = "-"
        if r.last_denied is not None:
            denied = f"{r.last_denied} at {iso(r.last_denied_at) or '?'}"
        lines.append(
            f"receiver {r.name}: notified {iso(r.notified_at) or '-'}, "
            f"requested {iso(r.requested_at) or '-'}, released {r.releases}x"
            f" (last {iso(r.released_at) or '-'}), receipt {receipt}, "
            f"co-signatures {cosigning}, denied {denied}, "
            f"window closes {iso(r.closes_at) or 'never'}, expired {iso(r.expired_at) or '-'}, "
            f"revoked {iso(r.revoked_at) or '-'}"
        )
    return lines


@click.command()
@click.argument("consignment_id", metavar="ID")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also keep the escrow's signed replies here (JSON): proof of the history.",
)
@agent_options
@json_option
def history(opts: AgentOptions, consignment_id: str, out: Path | None, as_json: bool) -> None:
    """The escrow's transaction log about consignment ID, signed by the escrow:
    what was deposited, notified, asked, released or refused, to whom and when.
    Its sender and co-signers see every entry; a receiver those about itself."""
    require_consignment_id(consignment_id)

    async def go() -> History:
        async with running(opts, SenderAgent) as agent:
            return await agent.history(consignment_id)

    found = run(go())
    if out is not None:
        proof = {
            "consignment_id": consignment_id,
            "signed_replies": [r.decode("ascii") for r in found.signed_replies],
        }
        write_bytes(out, json.dumps(proof, indent=1).encode(), private=False)
    data = {
        "consignment_id": consignment_id,
        "log_size": found.log_size,
        "log_head": found.log_head,
        "entries": [{**e.to_json(), "hash": e.hash} for e in found.entries],
    }
    lines = [f"{e.seq}\t{iso(e.at)}\t{e.kind}\t{_what(e)}" for e in found.entries]
    emit(data, as_json, "\n".join(["SEQ\tAT\tKIND\tWHAT", *lines]))
    if out is not None:
        say(f"OK kept {len(found.signed_replies)} signed replies in {out}")


def _what(entry: Entry) -> str:
    d = entry.data
    if entry.kind == "request":
        batch = d.get("batch")
        within = f" (in batch {batch.get('request_id')})" if isinstance(batch, dict) else ""
        return f"{d.get('signer')} {d.get('type')}: {d.get('decision')}{within}"
    body = d.get("body")
    kind = body.get("kind", entry.kind) if isinstance(body, dict) else entry.kind
    about = body.get("receiver") if isinstance(body, dict) else None
    return f"to {d.get('to')}: {kind}" + (f" about {about}" if about else "")

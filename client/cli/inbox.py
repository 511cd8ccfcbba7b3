"""`consign inbox` and `consign events`: fetch what arrived in your inbox (each
message verified and stored before it is acked) and list it.

Thin wrappers around `ReceiverAgent.fetch` and `events`. They must never show a
refused message as received: refusals are listed apart, with the reason.
"""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import asdict

import click

from broker.console import emit, iso, json_option, say
from client.agent import InboxContents, ReceiverAgent
from client.agent.inputs import require_consignment_id
from client.cli._agentcli import AgentOptions, agent_options, running

_wait_option = click.option(
    "--wait",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds the inbox must stay quiet before the listing.",
)


async def _fetch(opts: AgentOptions, wait: float) -> InboxContents:
    async with running(opts, ReceiverAgent) as agent:
        return await agent.fetch(idle=wait, timeout=max(opts.timeout, wait))


def _data(contents: InboxContents) -> dict[str, list[dict[str, object]]]:
    def plain(item: object) -> dict[str, object]:
        data = asdict(item)  # type: ignore[call-overload]
        return {k: _value(k, v) for k, v in data.items()}

    return {
        "notifications": [plain(n) for n in contents.notifications],
        "received": [plain(r) for r in contents.received],
        "events": [plain(e) for e in contents.events],
        "refused": [plain(r) for r in contents.refused],
    }


def _value(key: str, value: object) -> object:
    """Paths as strings; times (`at`, `*_at`) in ISO 8601 UTC, as status and seal
    print them."""
    if key == "path" and value is not None:
        return str(value)
    if (key == "at" or key.endswith("_at")) and isinstance(value, int):
        return iso(value)
    return value


def _event_line(event: dict[str, object]) -> str:
    parts = [str(event["at"]), str(event["consignment_id"]), str(event["kind"])]
    if event["receiver"]:
        parts.append(f"receiver={event['receiver']}")
    if event["reason"]:
        parts.append(f"reason={event['reason']}")
    return "  ".join(parts)


@click.command()
@_wait_option
@agent_options
@json_option
def inbox(opts: AgentOptions, wait: float, as_json: bool) -> None:
    """Fetch your inbox and list what arrived: notifications of consignments
    waiting for you at the escrow, consignments received over the broker (checked
    against their digest), the escrow's events, and messages refused as
    untrustworthy."""
    data = _data(asyncio.run(_fetch(opts, wait)))
    lines: list[str] = []
    for n in data["notifications"]:
        lines.append(
            f"notified  {n['consignment_id']}  from {n['sender']}  {n['consignment_size']} bytes"
            f"  deposited {n['deposited_at']}"
        )
    for r in data["received"]:
        where = (
            r["path"]
            if r["state"] == "complete"
            else r["reason"] or (f"{r['chunks_received']}/{r['chunks']} chunks")
        )
        lines.append(f"{r['state']:<9} {r['consignment_id']}  from {r['sender']}  {where}")
    for e in data["events"]:
        lines.append(f"event     {_event_line(e)}")
    for x in data["refused"]:
        lines.append(f"refused   {x['type']}  {x['reason']}: {x['message']}")
    emit(data, as_json, "\n".join(lines))
    say(
        f"OK {len(data['notifications'])} notification(s), {len(data['received'])} "
        f"consignment(s), {len(data['events'])} event(s), {len(data['refused'])} refused"
    )


@click.command()
@click.argument("consignment_id", required=False, metavar="[ID]")
@_wait_option
@agent_options
@json_option
@click.option(
    "--follow",
    is_flag=True,
    help="Then print each new event as it arrives, until SIGTERM or Ctrl-C "
    "(with --json: one JSON object per line).",
)
def events(
    opts: AgentOptions, consignment_id: str | None, wait: float, as_json: bool, follow: bool
) -> None:
    """Fetch your inbox and list the escrow's events about your consignments
    (deposited, notified, released, denied and why, revoked), oldest first;
    only those of consignment ID if given."""
    if consignment_id is not None:
        require_consignment_id(consignment_id)
    if follow:
        asyncio.run(_follow(opts, consignment_id, as_json))
        return
    data = _data(asyncio.run(_fetch(opts, wait)))["events"]
    if consignment_id is not None:
        data = [e for e in data if e["consignment_id"] == consignment_id]
    emit(data, as_json, "\n".join(_event_line(e) for e in data))
    say(f"OK {len(data)} event(s)")


async def _follow(opts: AgentOptions, consignment_id: str | None, as_json: bool) -> None:
    """Every event kept, then each new one as the inbox files it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(opts, ReceiverAgent) as agent:
        say("OK following events (SIGTERM stops)")
        async for event in agent.follow(consignment_id, stop=stop, replay=True):
            data = {k: _value(k, v) for k, v in asdict(event).items()}
            line = json.dumps(data, sort_keys=True) if as_json else _event_line(data)
            click.echo(line)
    say("OK stopped")

"""`consign escrow policy ...`: the operator's trust policy commands (who may
send to whom). Thin wrappers around `ca.policy`; this module must never decide a
policy question itself.
"""

from __future__ import annotations

from pathlib import Path

import click

from broker.console import emit, json_option, run, say
from broker.sqlite import transaction
from escrow_worker.ca import policy as trust
from escrow_worker.ca.directory import get_user
from escrow_worker.ca.operator import open_escrow
from escrow_worker.cli.options import escrow_dir_option


def _describe(policy: trust.TrustPolicy) -> dict[str, object]:
    return {
        "mode": "restricted" if policy.restricted else "open",
        "rules": [{"from": a, "to": b} for a, b in sorted(policy.rules)],
    }


def _text(data: dict[str, object]) -> str:
    rules = data["rules"]
    assert isinstance(rules, list)
    lines = [f"mode: {data['mode']}"]
    lines += [f"allow: {r['from']} -> {r['to']}" for r in rules]
    return "\n".join(lines)


@click.group()
def policy() -> None:
    """Decide which identities may send consignments to which.

    Open by default: every registered user may send to every other. Once
    restricted, a sender may send to a receiver only if a rule "GROUP_A may send
    to GROUP_B" matches one of each one's groups ("*" matches anyone). Everyone
    may always send to itself.
    """


@policy.command()
@escrow_dir_option
@json_option
def show(escrow_dir: Path, as_json: bool) -> None:
    """Print the mode and the rules."""

    async def go() -> trust.TrustPolicy:
        async with open_escrow(escrow_dir) as esc:
            return await trust.load_policy(esc.conn)

    data = _describe(run(go()))
    emit(data, as_json, _text(data))


@policy.command()
@escrow_dir_option
@click.argument("mode", type=click.Choice(["open", "restricted"]))
@json_option
def mode(escrow_dir: Path, mode: str, as_json: bool) -> None:
    """Set MODE: "open" (everyone may exchange) or "restricted" (rules decide)."""

    async def go() -> trust.TrustPolicy:
        async with open_escrow(escrow_dir) as esc:
            async with transaction(esc.conn):
                await trust.set_restricted(esc.conn, mode == "restricted")
            return await trust.load_policy(esc.conn)

    data = _describe(run(go()))
    emit(data, as_json, _text(data))
    say(f"OK policy is {mode}")


@policy.command()
@escrow_dir_option
@click.argument("from_group", metavar="FROM_GROUP")
@click.argument("to_group", metavar="TO_GROUP")
@json_option
def allow(escrow_dir: Path, from_group: str, to_group: str, as_json: bool) -> None:
    """Let members of FROM_GROUP send to members of TO_GROUP ("*": anyone).
    Rules apply once the mode is "restricted"."""

    async def go() -> tuple[bool, trust.TrustPolicy]:
        async with open_escrow(escrow_dir) as esc:
            async with transaction(esc.conn):
                added = await trust.add_rule(esc.conn, from_group, to_group)
            return added, await trust.load_policy(esc.conn)

    added, current = run(go())
    data = _describe(current)
    emit(data, as_json, _text(data))
    say(f"OK {from_group} -> {to_group} " + ("added" if added else "was already there"))
    if not current.restricted:
        say("note: the policy is open; `consign escrow policy mode restricted` enforces rules")


@policy.command()
@escrow_dir_option
@click.argument("from_group", metavar="FROM_GROUP")
@click.argument("to_group", metavar="TO_GROUP")
@json_option
def remove(escrow_dir: Path, from_group: str, to_group: str, as_json: bool) -> None:
    """Remove the rule FROM_GROUP -> TO_GROUP."""

    async def go() -> tuple[bool, trust.TrustPolicy]:
        async with open_escrow(escrow_dir) as esc:
            async with transaction(esc.conn):
                removed = await trust.remove_rule(esc.conn, from_group, to_group)
            return removed, await trust.load_policy(esc.conn)

    removed, current = run(go())
    data = _describe(current)
    emit(data, as_json, _text(data))
    say(f"OK {from_group} -> {to_group} " + ("removed" if removed else "was not there"))


@policy.command()
@escrow_dir_option
@click.argument("sender")
@click.argument("receiver")
@json_option
def check(escrow_dir: Path, sender: str, receiver: str, as_json: bool) -> None:
    """Say whether SENDER may send to RECEIVER now: both registered and not
    revoked, and the trust policy allowing it (exit 0 either way; the answer is
    the data)."""

    async def go() -> trust.Decision:
        async with open_escrow(escrow_dir) as esc:
            for name in (sender, receiver):
                user = await get_user(esc.conn, name)
                if user is not None and user.revoked_at is not None:
                    return trust.Decision(
                        False, f"{name} was revoked on {user.revoked_at:%Y-%m-%d %H:%M} UTC"
                    )
            policy = await trust.load_policy(esc.conn)
            return trust.may_send(
                await trust.member(esc.conn, sender),
                await trust.member(esc.conn, receiver),
                policy,
            )

    decision = run(go())
    data = {
        "sender": sender,
        "receiver": receiver,
        "allowed": decision.allowed,
        "reason": decision.reason,
    }
    emit(data, as_json, "allowed" if decision else f"denied: {decision.reason}")

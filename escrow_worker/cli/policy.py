"""`consign escrow policy ...`: the operator's trust policy commands (who may
send to whom). Thin wrappers around `ca.policy`; this module must never decide a
policy question itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import click

from broker.console import emit, json_option, run, say
from escrow_worker.ca import policy as trust
from escrow_worker.ca.directory import get_user
from escrow_worker.ca.operator import open_escrow
from escrow_worker.cli.options import escrow_location
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location


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
@escrow_location
@json_option
def show(location: Location, as_json: bool) -> None:
    """Print the mode and the rules."""

    async def go() -> trust.TrustPolicy:
        async with open_escrow(location) as esc:
            return await esc.store.run(trust.load_policy)

    data = _describe(run(go()))
    emit(data, as_json, _text(data))


@policy.command()
@escrow_location
@click.argument("mode", type=click.Choice(["open", "restricted"]))
@json_option
def mode(location: Location, mode: str, as_json: bool) -> None:
    """Set MODE: "open" (everyone may exchange) or "restricted" (rules decide)."""

    async def go() -> trust.TrustPolicy:
        async with open_escrow(location) as esc:

            async def job(tx: Tx) -> trust.TrustPolicy:
                await trust.set_restricted(tx, mode == "restricted")
                return await trust.load_policy(tx)

            return await esc.store.run(job)

    data = _describe(run(go()))
    emit(data, as_json, _text(data))
    say(f"OK policy is {mode}")


def _change_rule(
    location: Location,
    change: Callable[[Tx, str, str], Awaitable[bool]],
    from_group: str,
    to_group: str,
) -> tuple[bool, trust.TrustPolicy]:
    """Apply `change` to the rule FROM -> TO in one transaction: whether it
    changed anything, and the policy after it."""

    async def go() -> tuple[bool, trust.TrustPolicy]:
        async with open_escrow(location) as esc:

            async def job(tx: Tx) -> tuple[bool, trust.TrustPolicy]:
                changed = await change(tx, from_group, to_group)
                return changed, await trust.load_policy(tx)

            return await esc.store.run(job)

    return run(go())


@policy.command()
@escrow_location
@click.argument("from_group", metavar="FROM_GROUP")
@click.argument("to_group", metavar="TO_GROUP")
@json_option
def allow(location: Location, from_group: str, to_group: str, as_json: bool) -> None:
    """Let members of FROM_GROUP send to members of TO_GROUP ("*": anyone).
    Rules apply once the mode is "restricted"."""

    added, current = _change_rule(location, trust.add_rule, from_group, to_group)
    data = _describe(current)
    emit(data, as_json, _text(data))
    say(f"OK {from_group} -> {to_group} " + ("added" if added else "was already there"))
    if not current.restricted:
        say("note: the policy is open; `consign escrow policy mode restricted` enforces rules")


@policy.command()
@escrow_location
@click.argument("from_group", metavar="FROM_GROUP")
@click.argument("to_group", metavar="TO_GROUP")
@json_option
def remove(location: Location, from_group: str, to_group: str, as_json: bool) -> None:
    """Remove the rule FROM_GROUP -> TO_GROUP."""

    removed, current = _change_rule(location, trust.remove_rule, from_group, to_group)
    data = _describe(current)
    emit(data, as_json, _text(data))
    say(f"OK {from_group} -> {to_group} " + ("removed" if removed else "was not there"))


@policy.command()
@escrow_location
@click.argument("sender")
@click.argument("receiver")
@json_option
def check(location: Location, sender: str, receiver: str, as_json: bool) -> None:
    """Say whether SENDER may send to RECEIVER now: both registered and not
    revoked, and the trust policy allowing it (exit 0 either way; the answer is
    the data)."""

    async def decide(tx: Tx) -> trust.Decision:
        for name in (sender, receiver):
            user = await get_user(tx, name)
            if user is not None and user.revoked_at is not None:
                return trust.Decision(
                    False, f"{name} was revoked on {user.revoked_at:%Y-%m-%d %H:%M} UTC"
                )
        policy = await trust.load_policy(tx)
        return trust.may_send(
            await trust.member(tx, sender), await trust.member(tx, receiver), policy
        )

    async def go() -> trust.Decision:
        async with open_escrow(location) as esc:
            return await esc.store.run(decide)

    decision = run(go())
    data = {
        "sender": sender,
        "receiver": receiver,
        "allowed": decision.allowed,
        "reason": decision.reason,
    }
    emit(data, as_json, "allowed" if decision else f"denied: {decision.reason}")

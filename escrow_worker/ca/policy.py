"""The operator's trust policy: who may send consignments to whom.

By default the policy is open: every registered party may exchange with every
other. Once restricted, a sender may send to a receiver only if a rule "group A
may send to group B" matches a group of each ("*" matches anyone). A party may
always send to itself (the virtual safe). `may_send` is pure; the async helpers
load and store the policy in escrow.db inside the caller's transaction. This
module must never look at certificates or revocation: it assumes both parties
were already authenticated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from broker.canonical import check_name
from escrow_worker.ca.cache import cached, directory_changed
from escrow_worker.ca.directory import get_user
from escrow_worker.errors import DirectoryError
from escrow_worker.state.base import LogItem, Tx
from escrow_worker.state.meta import get_meta, set_meta

ANY = "*"


@dataclass(frozen=True)
class Member:
    """A registered party as the trust policy sees it: its name and groups."""

    name: str
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TrustPolicy:
    restricted: bool = False
    rules: frozenset[tuple[str, str]] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


def may_send(sender: Member, receiver: Member, policy: TrustPolicy) -> Decision:
    if sender.name == receiver.name:
        return Decision(True)
    if not policy.restricted:
        return Decision(True)
    senders = sender.groups | {ANY}
    receivers = receiver.groups | {ANY}
    for from_group, to_group in sorted(policy.rules):
        if from_group in senders and to_group in receivers:
            return Decision(True)
    return Decision(
        False,
        f"no rule lets {sender.name!r} (groups: {', '.join(sorted(sender.groups)) or 'none'})"
        f" send to {receiver.name!r} (groups: {', '.join(sorted(receiver.groups)) or 'none'})",
    )


def _group(name: str) -> str:
    return name if name == ANY else check_name(name, "group")


async def load_policy(tx: Tx) -> TrustPolicy:
    return await cached(tx, "trust policy", _load_policy)


async def _load_policy(tx: Tx) -> TrustPolicy:
    restricted = await get_meta(tx, "policy") == "restricted"
    rows = await tx.fetchall("SELECT from_group, to_group FROM policy_rules")
    return TrustPolicy(restricted, frozenset((str(a), str(b)) for a, b in rows))


def _log(tx: Tx, data: dict[str, object], now: int | None) -> None:
    tx.log(LogItem("policy", data, int(time.time()) if now is None else now))


async def set_restricted(tx: Tx, restricted: bool, *, now: int | None = None) -> None:
    mode = "restricted" if restricted else "open"
    await set_meta(tx, "policy", mode)
    _log(tx, {"mode": mode}, now)
    await directory_changed(tx)


async def add_rule(tx: Tx, from_group: str, to_group: str, *, now: int | None = None) -> bool:
    """Add a rule; False if it was already there."""
    count = await tx.execute(
        "INSERT INTO policy_rules (from_group, to_group) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (_group(from_group), _group(to_group)),
    )
    if count == 1:
        _log(tx, {"allow": [from_group, to_group]}, now)
    await directory_changed(tx)
    return count == 1


async def remove_rule(tx: Tx, from_group: str, to_group: str, *, now: int | None = None) -> bool:
    count = await tx.execute(
        "DELETE FROM policy_rules WHERE from_group = ? AND to_group = ?",
        (from_group, to_group),
    )
    if count == 1:
        _log(tx, {"disallow": [from_group, to_group]}, now)
    await directory_changed(tx)
    return count == 1


async def member(tx: Tx, name: str) -> Member:
    user = await get_user(tx, name)
    if user is None:
        raise DirectoryError(f"no user named {name!r}", "see `consign escrow users`")
    return Member(user.name, frozenset(user.groups))

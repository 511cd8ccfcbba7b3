"""Checks of what a caller hands an agent, made before anything is signed, sent
or sealed: consignment ids, user names, release windows and consignment files.

Each raises a `ClientError` whose message says what is wrong and whose hint says
what to give instead. They must never let a bad argument reach the escrow or the
sealing. Pure checks; only `require_file` looks at the file system.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

from broker.canonical import HEX_ID, check_name, iso_utc
from broker.deposit import ControlAttributes, ReceiverAttributes
from broker.errors import BrokerError
from client.errors import AgentError, SealError


def is_consignment_id(value: str) -> bool:
    return bool(HEX_ID.match(value))


def require_consignment_id(value: str) -> str:
    """`value` if it is a consignment id, else an `AgentError` saying so (before
    anything is signed or sent)."""
    if is_consignment_id(value):
        return value
    if is_consignment_id(value.lower()):
        hint = f"consignment ids are lowercase: {value.lower()}"
    else:
        hint = "copy the id that `consign seal` printed (or `consign inbox` lists)"
    raise AgentError(f"{value!r} is not a consignment id (32 lowercase hex digits)", hint)


def require_name(value: str) -> str:
    """`value` if it can be a registered user's name (`broker.canonical`'s one
    rule), else an `AgentError`."""
    try:
        return check_name(value, "user name")
    except BrokerError as exc:
        raise AgentError(
            f"{value!r} is not a user name", f"{exc.hint}; consign escrow users lists them"
        ) from None


def check_release_window(
    attributes: ControlAttributes | None, *, now: int, who: str | None = None
) -> None:
    """Refuse to seal what nobody (or receiver `who`) could ever open: a release
    window already over at `now` (the escrow would refuse every request as
    expired)."""
    if attributes is None or attributes.not_after is None or attributes.not_after > now:
        return
    nobody = "nobody" if who is None else who
    raise SealError(
        f"the release window is already over (not after {iso_utc(attributes.not_after)}): "
        f"{nobody} could ever open this consignment",
        "give a later --not-after, or none; nothing was sealed or deposited",
    )


def check_attributes(
    attributes: ControlAttributes | None,
    own: Mapping[str, ReceiverAttributes],
    receivers: Sequence[str],
    *,
    now: int,
) -> None:
    """Refuse contradictory attributes before anything is looked up, sealed or
    deposited: a receiver's own attributes for someone not among `receivers`,
    a window whose end is not after its start once a receiver's own times are
    put over the policy-wide ones, or a window already over."""
    base = attributes or ControlAttributes()
    unknown = sorted(set(own) - set(receivers))
    if unknown:
        raise SealError(
            f"attributes given for {', '.join(unknown)}, who is not a receiver",
            "name only receivers given with --to in --for; nothing was sealed or deposited",
        )
    check_release_window(base, now=now)
    for name, given in own.items():
        try:
            merged = ControlAttributes.model_validate({**base.model_dump(), **given.overrides()})
        except ValueError:
            raise SealError(
                f"for {name}: its not-after would not be later than its not-before "
                "(its own times with the policy-wide ones)",
                "give times that leave a window; nothing was sealed or deposited",
            ) from None
        check_release_window(merged, now=now, who=name)


async def require_file(path: Path) -> None:
    if not await asyncio.to_thread(path.is_file):
        raise AgentError(f"no consignment file {path}", "check the path, or give the id")

"""The escrow's decisions, as pure functions over plain data.

Each function takes what the database and the directory say (gathered by the
handlers in `handlers`) and the escrow's clock reading in whole Unix seconds,
and returns None (go ahead) or a `Denial` with a typed code and a message the
requester can act on. No I/O, no clock, no randomness: the same facts give the
same answer, so the time windows are testable to the second.

Time windows are inclusive: a key is released at exactly `not_before`, at
exactly `not_after`, and at exactly `notified_at + ask_within_seconds`; one
second outside any of them is refused. `max_releases` counts per receiver.
This module must never read a key part or decide anything about authenticity
(that is `handlers.auth` and `broker.pki.checks`, before any decision).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broker.deposit import ControlAttributes, Policy
from broker.messages import ErrorCode
from escrow_worker.ca.policy import Member, TrustPolicy, may_send
from escrow_worker.state.records import ReceiverRecord


@dataclass(frozen=True)
class Denial:
    code: ErrorCode
    message: str
    #: The finer reason, where one exists (e.g. why a deposit is `malformed`).
    detail: str | None = None


@dataclass(frozen=True)
class DirectoryFacts:
    """What the directory says about a party named in a deposit, now.

    `current_key` is the raw X25519 key of its current, valid, unrevoked
    encryption certificate, or None if it has none."""

    name: str
    registered: bool
    current_key: bytes | None = None
    groups: frozenset[str] = field(default_factory=frozenset)


def decide_deposit(
    policy: Policy,
    *,
    requester: DirectoryFacts,
    escrow_name: str,
    already_deposited: bool,
    receivers: Mapping[str, DirectoryFacts],
    trust: TrustPolicy,
) -> Denial | None:
    """May `requester` deposit a consignment under `policy` at this escrow?"""
    if requester.name != policy.sender:
        return Denial(
            ErrorCode.NOT_SENDER,
            f"the policy names {policy.sender!r} as sender, not {requester.name!r}",
        )
    if policy.escrow != escrow_name:
        return Denial(
            ErrorCode.WRONG_ESCROW,
            f"the policy names escrow {policy.escrow!r}, not {escrow_name!r}; "
            "seal it again for this escrow",
        )
    if already_deposited:
        return Denial(
            ErrorCode.ALREADY_DEPOSITED, "a consignment with this id is already deposited"
        )
    unsupported = _unsupported(policy.attributes)
    if unsupported is not None:
        return unsupported
    sender = Member(requester.name, requester.groups)
    for spec in policy.receivers:
        facts = receivers.get(spec.name)
        if facts is None or not facts.registered:
            return Denial(
                ErrorCode.UNKNOWN_USER,
                f"receiver {spec.name!r} is not a registered, unrevoked party of this escrow",
            )
        if facts.current_key is None:
            return Denial(
                ErrorCode.UNKNOWN_USER,
                f"receiver {spec.name!r} has no current encryption certificate",
            )
        if facts.current_key != spec.encryption_key:
            return Denial(
                ErrorCode.WRONG_KEY,
                f"the key given for receiver {spec.name!r} is not its current encryption key; "
                "look it up again and seal again",
            )
        trusted = may_send(sender, Member(facts.name, facts.groups), trust)
        if not trusted:
            return Denial(ErrorCode.NOT_ALLOWED, trusted.reason or "the trust policy forbids it")
    return None


def _unsupported(attributes: ControlAttributes) -> Denial | None:
    if attributes.receipt_required:
        return Denial(
            ErrorCode.UNSUPPORTED,
            "this escrow does not yet enforce receipt_required; seal without it",
        )
    if attributes.cosigners:
        return Denial(
            ErrorCode.UNSUPPORTED, "this escrow does not yet enforce cosigners; seal without them"
        )
    return None


def decide_release(
    policy: Policy,
    state: ReceiverRecord | None,
    *,
    requester: str,
    held_digest: str,
    asked_digest: str,
    now: int,
) -> Denial | None:
    """May `requester` have the key part of this consignment at `now`?

    `state` is the requester's row, None if it is not a receiver."""
    if policy.receiver(requester) is None or state is None:
        return Denial(
            ErrorCode.NOT_A_RECEIVER, f"{requester!r} is not a receiver of this consignment"
        )
    if state.revoked_at is not None:
        return Denial(ErrorCode.REVOKED, "the sender revoked this consignment for you")
    if asked_digest != held_digest:
        return Denial(
            ErrorCode.DIGEST_MISMATCH,
            "the consignment you hold is not the one deposited (its digest differs)",
        )
    return check_window(policy.attributes, state, now=now)


def check_recorded_key(policy: Policy, requester: str, current_key: bytes | None) -> Denial | None:
    """The key part goes only to the encryption key the sender sealed for, the
    one the policy recorded at deposit, and only while it is still the
    requester's current one (`current_key`: raw X25519, None if it has none)."""
    spec = policy.receiver(requester)
    if spec is None:
        return Denial(
            ErrorCode.NOT_A_RECEIVER, f"{requester!r} is not a receiver of this consignment"
        )
    if current_key is None:
        return Denial(
            ErrorCode.NOT_ALLOWED,
            "you have no current encryption certificate to release the key to; ask the operator",
        )
    if current_key != spec.encryption_key:
        return Denial(
            ErrorCode.KEY_CHANGED,
            "your current encryption key is not the one this consignment was sealed for "
            "(you were registered again since it was deposited); ask the sender to seal "
            "it again for your new key",
        )
    return None


def check_window(
    attributes: ControlAttributes, state: ReceiverRecord, *, now: int
) -> Denial | None:
    """The control attributes that depend on time and on earlier releases."""
    if attributes.not_before is not None and now < attributes.not_before:
        return Denial(
            ErrorCode.NOT_YET,
            f"the key is released from {iso_utc(attributes.not_before)} on; "
            f"ask again in {duration(attributes.not_before - now)}",
        )
    if attributes.not_after is not None and now > attributes.not_after:
        return Denial(
            ErrorCode.EXPIRED,
            f"the key was released only until {iso_utc(attributes.not_after)}",
        )
    if attributes.ask_within_seconds is not None:
        if state.notified_at is None:
            return Denial(ErrorCode.ASK_WINDOW_CLOSED, "you were never notified of it")
        deadline = state.notified_at + attributes.ask_within_seconds
        if now > deadline:
            return Denial(
                ErrorCode.ASK_WINDOW_CLOSED,
                f"the key had to be asked for within "
                f"{duration(attributes.ask_within_seconds)} of the notification "
                f"(by {iso_utc(deadline)})",
            )
    if attributes.max_releases is not None and state.releases >= attributes.max_releases:
        return Denial(
            ErrorCode.EXHAUSTED,
            f"the key was already released {state.releases} time(s), the most allowed",
        )
    return None


def decide_sender_request(sender: str, *, requester: str, what: str) -> Denial | None:
    """Revoke and status: only the consignment's sender."""
    if requester != sender:
        return Denial(ErrorCode.NOT_SENDER, f"only the sender may {what} this consignment")
    return None


def decide_revoke(
    policy: Policy, names: tuple[str, ...], *, requester: str
) -> tuple[Denial | None, tuple[str, ...]]:
    """Who a revoke request covers: `names`, or every receiver if empty."""
    refusal = decide_sender_request(policy.sender, requester=requester, what="revoke")
    if refusal is not None:
        return refusal, ()
    everyone = tuple(r.name for r in policy.receivers)
    if not names:
        return None, everyone
    unknown = sorted(set(names) - set(everyone))
    if unknown:
        return Denial(
            ErrorCode.NOT_A_RECEIVER,
            f"not receivers of this consignment: {', '.join(unknown)}",
        ), ()
    return None, tuple(n for n in everyone if n in set(names))


def iso_utc(ts: int) -> str:
    """Unix seconds as ISO 8601 UTC, e.g. 2030-01-31T12:00:00Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def duration(seconds: int) -> str:
    """A human duration, the two largest units: "3 s", "2 h 5 min", "1131 d 21 h"."""
    if seconds <= 0:
        return "0 s"
    parts: list[str] = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count or parts:
            parts.append(f"{count} {unit}")
    shown = [p for p in parts[:2] if not p.startswith("0 ")]
    return " ".join(shown)

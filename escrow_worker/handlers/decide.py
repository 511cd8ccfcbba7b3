"""The escrow's decisions, as pure functions over plain data.

Each function takes what the database and the directory say (gathered by the
handlers in `handlers`) and the escrow's clock reading in whole Unix seconds,
and returns None (go ahead) or a `Denial` with a typed code and a message the
requester can act on. No I/O, no clock, no randomness: the same facts give the
same answer, so the time windows are testable to the second.

Time windows are inclusive: a key is released at exactly `not_before`, at
exactly `not_after`, and at exactly `notified_at + ask_within_seconds`; one
second outside any of them is refused. `max_releases` counts per receiver. A
receiver's attributes are its own where the policy gives it any
(`Policy.attributes_for`). Whether a receipt's or agreement's signature
verifies is a fact the handler hands in, like the directory's.
This module must never read a key part or decide anything about authenticity
(that is `handlers.auth` and `broker.pki.checks`, before any decision).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from broker.attest import Statement, StatementKind
from broker.canonical import duration, iso_utc
from broker.deposit import ControlAttributes, Policy
from broker.messages import ErrorCode
from escrow_worker.ca.policy import Member, TrustPolicy, may_send
from escrow_worker.state.records import ReceiverRecord

#: How far in the escrow's future a receipt or agreement may say it was signed.
STATEMENT_SKEW = 120


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
    cosigners: Mapping[str, DirectoryFacts] | None = None,
) -> Denial | None:
    """May `requester` deposit a consignment under `policy` at this escrow?

    Every co-signer named must be a registered, unrevoked party (`cosigners`,
    by name); a co-signer needs no encryption key and receives nothing."""
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
    for name in policy.attributes.cosigners:
        facts = (cosigners or {}).get(name)
        if facts is None or not facts.registered:
            return Denial(
                ErrorCode.UNKNOWN_USER,
                f"co-signer {name!r} is not a registered, unrevoked party of this escrow",
            )
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


@dataclass(frozen=True)
class ReleaseFacts:
    """What a release depends on besides the receiver's row: the trust policy
    now (with the sender and the receiver as it sees them), whether the
    receiver's receipt is in, and which co-signers have signed."""

    trust: TrustPolicy
    sender: Member
    receiver: Member
    receipt: bool = False
    cosigned: frozenset[str] = frozenset()


def decide_release(
    policy: Policy,
    state: ReceiverRecord | None,
    *,
    requester: str,
    held_digest: str,
    asked_digest: str,
    now: int,
    facts: ReleaseFacts | None = None,
) -> Denial | None:
    """May `requester` have the key part of this consignment at `now`?

    `state` is the requester's row, None if it is not a receiver. The
    requester's own attributes (`Policy.attributes_for`) apply. After the
    window: the trust policy as it is now (an operator's rule removed since
    the deposit stops later releases), then the receipt, then the co-signers.
    Without `facts` (tests of the windows alone) those three are not checked
    but a required receipt or co-signer is still refused."""
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
    attributes = policy.attributes_for(requester)
    refusal = check_window(attributes, state, now=now)
    if refusal is not None:
        return refusal
    if facts is not None:
        trusted = may_send(facts.sender, facts.receiver, facts.trust)
        if not trusted:
            return Denial(
                ErrorCode.TRUST_WITHDRAWN,
                f"the escrow's trust policy no longer allows it: {trusted.reason}",
            )
    if attributes.receipt_required and not (facts is not None and facts.receipt):
        return Denial(
            ErrorCode.RECEIPT_REQUIRED,
            "the sender asks for your signed receipt first; send it, then ask again",
        )
    signed = facts.cosigned if facts is not None else frozenset()
    missing = [name for name in attributes.cosigners if name not in signed]
    if missing:
        return Denial(
            ErrorCode.COSIGNATURES_PENDING,
            f"the key is released once every co-signer has signed; still missing: "
            f"{', '.join(missing)}",
        )
    return None


def window_closes(attributes: ControlAttributes, *, notified_at: int) -> int | None:
    """When a receiver's window closes: the last second a key is released
    (`not_after`, or `notified_at + ask_within_seconds`, whichever is first);
    None if neither is set."""
    ends = [attributes.not_after]
    if attributes.ask_within_seconds is not None:
        ends.append(notified_at + attributes.ask_within_seconds)
    given = [end for end in ends if end is not None]
    return min(given) if given else None


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


@dataclass(frozen=True)
class AttestationFacts:
    """What the escrow holds about the consignment a receipt or an agreement is
    for, and what it found checking it."""

    consignment_id: str
    consignment_digest: str
    policy_digest: bytes
    #: The statement's signature verifies with the requester's signing certificate.
    signature_valid: bool
    #: The requester's statement of this kind for this consignment is in already.
    already: bool


def decide_attestation(
    policy: Policy, statement: Statement, facts: AttestationFacts, *, requester: str, now: int
) -> Denial | None:
    """May this receipt (from a receiver) or agreement (from a co-signer) be
    stored? Refused, in this order: from a party the policy does not name for
    it; about another consignment, digest or policy, or naming another signer,
    or signed in the future (`subject_mismatch`, `detail` says which); a
    signature that does not verify; one that is in already."""
    if statement.kind is StatementKind.RECEIPT and policy.receiver(requester) is None:
        return Denial(
            ErrorCode.NOT_A_RECEIVER,
            f"{requester!r} is not a receiver of this consignment; only receivers sign receipts",
        )
    if statement.kind is StatementKind.AGREEMENT and requester not in policy.attributes.cosigners:
        return Denial(
            ErrorCode.NOT_A_COSIGNER, f"{requester!r} is not a co-signer of this consignment"
        )
    what = "receipt" if statement.kind is StatementKind.RECEIPT else "agreement"
    mismatch = [
        ("consignment", statement.consignment_id != facts.consignment_id, "another consignment"),
        ("digest", statement.consignment_digest != facts.consignment_digest, "another digest"),
        ("policy", statement.policy_digest != facts.policy_digest, "another policy"),
        ("signer", statement.signer != requester, f"{statement.signer!r}, not {requester!r}"),
        ("signed_at", statement.signed_at > now + STATEMENT_SKEW, "a time in the future"),
    ]
    for detail, wrong, says in mismatch:
        if wrong:
            return Denial(
                ErrorCode.SUBJECT_MISMATCH,
                f"the {what} is about {says}: sign the consignment as the escrow holds it",
                detail,
            )
    if not facts.signature_valid:
        return Denial(
            ErrorCode.INVALID_SIGNATURE,
            f"the {what}'s signature does not verify with {requester!r}'s signing certificate",
        )
    if facts.already:
        return Denial(
            ErrorCode.ALREADY_SIGNED, f"{requester!r}'s {what} for this consignment is in already"
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

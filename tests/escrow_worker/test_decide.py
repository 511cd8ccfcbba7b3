"""The pure decision functions alone, at the boundaries of every time window and
count: no database, no broker, no clock."""

from __future__ import annotations

import dataclasses
import os

import pytest

from broker import ControlAttributes, Policy, ReceiverSpec
from broker.canonical import duration
from broker.messages import ErrorCode
from escrow_worker import TrustPolicy
from escrow_worker.ca.policy import Member
from escrow_worker.handlers.decide import (
    Denial,
    DirectoryFacts,
    ReleaseFacts,
    check_recorded_key,
    check_window,
    decide_deposit,
    decide_release,
    decide_revoke,
    decide_sender_request,
)
from escrow_worker.state.records import ReceiverRecord

T = 1_900_000_000
KEYS = {name: os.urandom(32) for name in ("alice", "bob", "carol")}
DIGEST = "ab" * 32


def policy(
    receivers: tuple[str, ...] = ("bob", "carol"), escrow: str = "acme", **attributes: object
) -> Policy:
    return Policy(
        escrow=escrow,
        sender="alice",
        receivers=tuple(ReceiverSpec(name=n, encryption_key=KEYS[n]) for n in receivers),
        attributes=ControlAttributes(**attributes),  # type: ignore[arg-type]
    )


def window(now: int, state: ReceiverRecord | None = None, **attributes: object) -> ErrorCode | None:
    state = state or ReceiverRecord("bob", notified_at=T)
    refusal = check_window(ControlAttributes(**attributes), state, now=now)  # type: ignore[arg-type]
    return None if refusal is None else refusal.code


@pytest.mark.parametrize(("offset", "expected"), [(-1, ErrorCode.NOT_YET), (0, None), (1, None)])
def test_not_before_is_inclusive(offset: int, expected: ErrorCode | None) -> None:
    assert window(T + 100 + offset, not_before=T + 100) == expected


@pytest.mark.parametrize(("offset", "expected"), [(-1, None), (0, None), (1, ErrorCode.EXPIRED)])
def test_not_after_is_inclusive(offset: int, expected: ErrorCode | None) -> None:
    assert window(T + 100 + offset, not_after=T + 100) == expected


def message(now: int, state: ReceiverRecord | None = None, **attributes: object) -> str:
    state = state or ReceiverRecord("bob", notified_at=T)
    refusal = check_window(ControlAttributes(**attributes), state, now=now)  # type: ignore[arg-type]
    assert refusal is not None
    return refusal.message


def test_refusals_say_times_in_iso_8601_and_durations_for_people() -> None:
    # T is 2030-03-17T17:46:40Z.
    assert message(T - 97_800_589, not_before=T) == (
        "the key is released from 2030-03-17T17:46:40Z on; ask again in 1131 d 22 h"
    )
    assert message(T + 1, not_after=T) == "the key was released only until 2030-03-17T17:46:40Z"
    assert message(T + 7 * 86400 + 1, ask_within_seconds=7 * 86400) == (
        "the key had to be asked for within 7 d of the notification (by 2030-03-24T17:46:40Z)"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (1, "1 s"), (60, "1 min"), (61, "1 min 1 s"), (3661, "1 h 1 min"),
     (86400, "1 d"), (90061, "1 d 1 h")],
)  # fmt: skip
def test_durations_show_the_two_largest_units(seconds: int, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("offset", "expected"), [(-1, None), (0, None), (1, ErrorCode.ASK_WINDOW_CLOSED)]
)
def test_ask_within_counts_from_the_notification(offset: int, expected: ErrorCode | None) -> None:
    state = ReceiverRecord("bob", notified_at=T + 50)
    assert window(T + 50 + 60 + offset, state, ask_within_seconds=60) == expected


def test_ask_within_without_a_notification_is_refused() -> None:
    assert window(T, ReceiverRecord("bob"), ask_within_seconds=60) == ErrorCode.ASK_WINDOW_CLOSED


@pytest.mark.parametrize(
    ("released", "expected"),
    [(0, None), (2, None), (3, ErrorCode.EXHAUSTED), (4, ErrorCode.EXHAUSTED)],
)
def test_max_releases(released: int, expected: ErrorCode | None) -> None:
    state = ReceiverRecord("bob", notified_at=T, releases=released)
    assert window(T, state, max_releases=3) == expected


def test_no_attributes_always_allow() -> None:
    assert window(0) is None
    assert window(2**52) is None


def test_window_order_reports_the_first_failing_condition() -> None:
    state = ReceiverRecord("bob", notified_at=T, releases=9)
    assert window(T - 1, state, not_before=T, max_releases=1) == ErrorCode.NOT_YET


def release(
    p: Policy, state: ReceiverRecord | None, *, requester: str = "bob", digest: str = DIGEST
) -> ErrorCode | None:
    refusal = decide_release(
        p, state, requester=requester, held_digest=DIGEST, asked_digest=digest, now=T
    )
    return None if refusal is None else refusal.code


def test_release_to_a_receiver_in_its_window() -> None:
    assert release(policy(), ReceiverRecord("bob", notified_at=T)) is None


def test_release_refusals_in_order() -> None:
    p = policy()
    assert release(p, None, requester="mallory") == ErrorCode.NOT_A_RECEIVER
    assert release(p, None) == ErrorCode.NOT_A_RECEIVER  # on the list but no row: refuse
    revoked = ReceiverRecord("bob", notified_at=T, revoked_at=T)
    assert release(p, revoked, digest="00" * 32) == ErrorCode.REVOKED
    assert release(p, ReceiverRecord("bob", notified_at=T), digest="00" * 32) == (
        ErrorCode.DIGEST_MISMATCH
    )
    assert release(policy(not_before=T + 1), ReceiverRecord("bob", notified_at=T)) == (
        ErrorCode.NOT_YET
    )


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (KEYS["bob"], None),  # the key the policy recorded: released
        (os.urandom(32), ErrorCode.KEY_CHANGED),  # registered again since the deposit
        (None, ErrorCode.NOT_ALLOWED),  # no current encryption certificate at all
    ],
    ids=["recorded", "changed", "none"],
)
def test_the_part_goes_only_to_the_recorded_key(
    current: bytes | None, expected: ErrorCode | None
) -> None:
    refusal = check_recorded_key(policy(), "bob", current)
    assert (None if refusal is None else refusal.code) == expected
    outsider = check_recorded_key(policy(), "mallory", KEYS["bob"])
    assert outsider is not None
    assert outsider.code == ErrorCode.NOT_A_RECEIVER


def facts(name: str, *, registered: bool = True, key: bytes | None = None) -> DirectoryFacts:
    return DirectoryFacts(name, registered, KEYS.get(name) if key is None else key)


def deposit_code(
    p: Policy,
    *,
    requester: str = "alice",
    already: bool = False,
    receivers: dict[str, DirectoryFacts] | None = None,
    trust: TrustPolicy | None = None,
    cosigners: dict[str, DirectoryFacts] | None = None,
) -> ErrorCode | None:
    refusal = decide_deposit(
        p,
        requester=facts(requester),
        escrow_name="acme",
        already_deposited=already,
        receivers=receivers if receivers is not None else {n: facts(n) for n in ("bob", "carol")},
        trust=trust or TrustPolicy(),
        cosigners=cosigners,
    )
    return None if refusal is None else refusal.code


def test_deposit_accepted() -> None:
    assert deposit_code(policy()) is None


def test_deposit_refusals() -> None:
    assert deposit_code(policy(), requester="mallory") == ErrorCode.NOT_SENDER
    assert deposit_code(policy(escrow="globex")) == ErrorCode.WRONG_ESCROW
    assert deposit_code(policy(), already=True) == ErrorCode.ALREADY_DEPOSITED
    # Receipts and co-signers are enforced: a co-signer must be a registered party.
    assert deposit_code(policy(receipt_required=True)) is None
    assert deposit_code(policy(cosigners=("dave",)), cosigners={"dave": facts("dave")}) is None
    gone = {"dave": facts("dave", registered=False)}
    assert deposit_code(policy(cosigners=("dave",)), cosigners=gone) == ErrorCode.UNKNOWN_USER
    assert deposit_code(policy(cosigners=("dave",))) == ErrorCode.UNKNOWN_USER
    unregistered = {"bob": facts("bob", registered=False), "carol": facts("carol")}
    assert deposit_code(policy(), receivers=unregistered) == ErrorCode.UNKNOWN_USER
    assert deposit_code(policy(), receivers={"bob": facts("bob")}) == ErrorCode.UNKNOWN_USER
    no_key = {"bob": DirectoryFacts("bob", True, None), "carol": facts("carol")}
    assert deposit_code(policy(), receivers=no_key) == ErrorCode.UNKNOWN_USER
    rekeyed = {"bob": facts("bob", key=os.urandom(32)), "carol": facts("carol")}
    assert deposit_code(policy(), receivers=rekeyed) == ErrorCode.WRONG_KEY


def test_deposit_follows_the_trust_policy() -> None:
    restricted = TrustPolicy(restricted=True)
    assert deposit_code(policy(), trust=restricted) == ErrorCode.NOT_ALLOWED
    # A party may always send to itself (the virtual safe).
    own = policy(receivers=("alice",))
    assert deposit_code(own, trust=restricted, receivers={"alice": facts("alice")}) is None
    allowed = TrustPolicy(restricted=True, rules=frozenset({("*", "*")}))
    assert deposit_code(policy(), trust=allowed) is None
    # A rule for another group does not let alice (in no group) send.
    others = TrustPolicy(restricted=True, rules=frozenset({("staff", "*")}))
    assert deposit_code(policy(), trust=others) == ErrorCode.NOT_ALLOWED


def test_revoke_and_status_only_by_the_sender() -> None:
    p = policy()
    assert decide_sender_request("alice", requester="alice", what="x") is None
    refusal = decide_sender_request("alice", requester="bob", what="x")
    assert refusal is not None
    assert refusal.code == ErrorCode.NOT_SENDER
    assert decide_revoke(p, (), requester="alice") == (None, ("bob", "carol"))
    assert decide_revoke(p, ("carol",), requester="alice") == (None, ("carol",))
    refused, names = decide_revoke(p, ("dave",), requester="alice")
    assert refused is not None
    assert refused.code == ErrorCode.NOT_A_RECEIVER
    assert names == ()
    refused, _ = decide_revoke(p, (), requester="bob")
    assert refused is not None
    assert refused.code == ErrorCode.NOT_SENDER


ANYONE = ReleaseFacts(TrustPolicy(), Member("alice", frozenset()), Member("bob", frozenset()))


def release_with(p: Policy, facts: ReleaseFacts) -> Denial | None:
    return decide_release(
        p,
        ReceiverRecord("bob", notified_at=T),
        requester="bob",
        held_digest=DIGEST,
        asked_digest=DIGEST,
        now=T,
        facts=facts,
    )


def test_release_after_the_trust_policy_stopped_allowing_it_is_refused() -> None:
    assert release_with(policy(), ANYONE) is None
    closed = dataclasses.replace(ANYONE, trust=TrustPolicy(restricted=True))
    refusal = release_with(policy(), closed)
    assert refusal is not None
    assert refusal.code == ErrorCode.TRUST_WITHDRAWN
    assert "'bob'" in refusal.message
    staff = frozenset({"staff"})
    rule = TrustPolicy(restricted=True, rules=frozenset({("staff", "staff")}))
    allowed = ReleaseFacts(rule, Member("alice", staff), Member("bob", staff))
    assert release_with(policy(), allowed) is None


def test_release_waits_for_the_required_receipt() -> None:
    p = policy(receipt_required=True)
    refusal = release_with(p, ANYONE)
    assert refusal is not None
    assert refusal.code == ErrorCode.RECEIPT_REQUIRED
    assert release_with(p, dataclasses.replace(ANYONE, receipt=True)) is None
    assert release(p, ReceiverRecord("bob", notified_at=T)) == ErrorCode.RECEIPT_REQUIRED


def test_release_waits_for_every_cosigner() -> None:
    p = policy(cosigners=("dave", "erin"))
    for signed, missing in [((), "dave, erin"), (("dave",), "erin")]:
        refusal = release_with(p, dataclasses.replace(ANYONE, cosigned=frozenset(signed)))
        assert refusal is not None
        assert refusal.code == ErrorCode.COSIGNATURES_PENDING
        assert refusal.message.endswith(f"still missing: {missing}")
    assert (
        release_with(p, dataclasses.replace(ANYONE, cosigned=frozenset({"dave", "erin"}))) is None
    )
    assert release(p, ReceiverRecord("bob", notified_at=T)) == ErrorCode.COSIGNATURES_PENDING

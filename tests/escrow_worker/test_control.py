"""The rest of the sender's control, decided by the escrow service on both store
backends with an injected clock: receipts before release, co-signing, each
receiver's own attributes (bound into the policy digest), the trust policy
checked again at release, and expiry events from the sweep (once, even with two
workers sweeping at once). Bad receipts and agreements are refused with their
own code, recorded, and change nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import (
    ControlAttributes,
    Deposit,
    Policy,
    ReceiverAttributes,
    StatementKind,
    statement_signature_valid,
)
from broker.messages import (
    AgreementReplyBody,
    CosignReplyBody,
    ErrorCode,
    EventKind,
    MessageType,
    ReceiptReplyBody,
    StatusReplyBody,
)
from escrow_worker.ca.policy import add_rule, remove_rule, set_restricted
from escrow_worker.state.base import Tx
from escrow_worker.state.location import Location
from tests.broker.pki_helpers import NOW
from tests.escrow_worker.control_helpers import (
    Direct,
    control_state,
    signed_body,
)
from tests.escrow_worker.helpers import full_snapshot, make_escrow, seal_for

USERS = ("alice", "bob", "carol", "dave", "mallory")
T = int(NOW.timestamp())


@pytest.fixture
async def esc(escrow_location: Location) -> AsyncIterator[Direct]:
    setup = await make_escrow(escrow_location, USERS)
    async with await setup.open_service() as service:
        yield Direct(setup, service)


def sealed(
    esc: Direct,
    receivers: tuple[str, ...] = ("bob", "carol"),
    own: dict[str, ReceiverAttributes] | None = None,
    **attributes: Any,
) -> Deposit:
    """A consignment from alice; `own` gives receivers attributes of their own."""
    _, deposit = seal_for(
        esc.setup["alice"],
        [esc.setup[r] for r in receivers],
        attributes=ControlAttributes(**attributes),
    )
    if not own:
        return deposit
    specs = tuple(
        spec.model_copy(update={"attributes": own.get(spec.name)})
        for spec in deposit.policy.receivers
    )
    policy = Policy.model_validate({**deposit.policy.model_dump(), "receivers": specs})
    return deposit.model_copy(update={"policy": policy, "policy_digest": policy.digest()})


# -- receipts ----------------------------------------------------------------------


async def test_a_receipt_comes_before_the_release_and_goes_to_the_sender(esc: Direct) -> None:
    # bob owes a receipt (his own attribute); carol does not.
    deposit = sealed(esc, own={"bob": ReceiverAttributes(receipt_required=True)})
    await esc.deposit(deposit)
    asked = await esc.key("bob", deposit)
    assert asked.code == ErrorCode.RECEIPT_REQUIRED
    assert asked.kinds() == [("alice", "denied", "bob")]
    assert (await esc.key("carol", deposit)).reply.type == MessageType.KEY_RELEASE

    answer = await esc.ask("bob", "receipt", signed_body(esc.setup["bob"], deposit))
    assert isinstance(answer.reply.body, ReceiptReplyBody)
    assert answer.reply.body.receiver == "bob"
    assert answer.reply.body.recorded_at == T
    assert answer.kinds() == [("alice", "receipt", "bob")]
    proof = answer.events[0][1].body.attestation
    assert proof is not None
    cert = x509.load_pem_x509_certificate(proof.certificate.encode())
    assert cert == esc.setup["bob"].signing_certificate
    key = cert.public_key()
    assert statement_signature_valid(proof.statement, proof.signature, key)  # type: ignore[arg-type]
    assert proof.statement.policy_digest == deposit.policy_digest

    assert (await esc.key("bob", deposit)).reply.type == MessageType.KEY_RELEASE
    status = (await esc.ask("alice", "status", {"consignment_id": deposit.consignment_id})).reply
    assert isinstance(status.body, StatusReplyBody)
    bob, carol = status.body.receivers
    assert (bob.receipt_required, bob.receipt_at, bob.releases) == (True, T, 1)
    assert (carol.receipt_required, carol.receipt_at, carol.releases) == (False, None, 1)
    assert bob.requested_at == T
    assert bob.last_denied == "receipt_required"


async def test_a_receipt_for_everyone_when_the_policy_asks_it(esc: Direct) -> None:
    deposit = sealed(esc, receipt_required=True)
    await esc.deposit(deposit)
    for name in ("bob", "carol"):
        assert (await esc.key(name, deposit)).code == ErrorCode.RECEIPT_REQUIRED
    await esc.ask("carol", "receipt", signed_body(esc.setup["carol"], deposit))
    assert (await esc.key("carol", deposit)).reply.type == MessageType.KEY_RELEASE
    assert (await esc.key("bob", deposit)).code == ErrorCode.RECEIPT_REQUIRED


# -- co-signing --------------------------------------------------------------------


async def test_nobody_gets_the_key_until_every_cosigner_signed(esc: Direct) -> None:
    deposit = sealed(esc, receivers=("bob",), cosigners=("carol", "dave"))
    deposited = await esc.deposit(deposit)
    asked = [(to, kind) for to, kind, _ in deposited.kinds() if kind == "cosign_requested"]
    assert asked == [("carol", "cosign_requested"), ("dave", "cosign_requested")]
    assert (await esc.key("bob", deposit)).code == ErrorCode.COSIGNATURES_PENDING

    terms = await esc.ask("dave", "agreement", {"consignment_id": deposit.consignment_id})
    assert isinstance(terms.reply.body, AgreementReplyBody)
    assert (
        terms.reply.body.policy.digest() == deposit.policy_digest == terms.reply.body.policy_digest
    )
    assert [(c.name, c.signed_at) for c in terms.reply.body.cosigners] == [
        ("carol", None),
        ("dave", None),
    ]

    agreement = StatementKind.AGREEMENT
    first = await esc.ask("carol", "cosign", signed_body(esc.setup["carol"], deposit, agreement))
    assert isinstance(first.reply.body, CosignReplyBody)
    assert [(c.name, c.signed_at) for c in first.reply.body.cosigners] == [
        ("carol", T),
        ("dave", None),
    ]
    assert first.kinds() == [(who, "cosigned", "carol") for who in ("alice", "carol", "dave")]
    pending = await esc.key("bob", deposit)
    assert pending.code == ErrorCode.COSIGNATURES_PENDING
    assert "dave" in pending.reply.body.message
    assert "carol" not in pending.reply.body.message

    esc.setup.clock.advance(5)
    last = await esc.ask("dave", "cosign", signed_body(esc.setup["dave"], deposit, agreement))
    assert last.kinds() == [
        *[(who, "cosigned", "dave") for who in ("alice", "carol", "dave")],
        *[(who, "cosigned_all", None) for who in ("alice", "carol", "dave")],
    ]
    assert (await esc.key("bob", deposit)).reply.type == MessageType.KEY_RELEASE
    status = await esc.ask("alice", "status", {"consignment_id": deposit.consignment_id})
    assert [(c.name, c.signed_at) for c in status.reply.body.cosigners] == [
        ("carol", T),
        ("dave", T + 5),
    ]


async def test_concurrent_last_cosignatures_complete_the_set_once(esc: Direct) -> None:
    deposit = sealed(esc, receivers=("bob",), cosigners=("carol", "dave"))
    await esc.deposit(deposit)
    agreement = StatementKind.AGREEMENT
    second = await esc.setup.open_service()
    try:
        other = Direct(esc.setup, second)
        answers = await asyncio.gather(
            esc.ask("carol", "cosign", signed_body(esc.setup["carol"], deposit, agreement)),
            other.ask("dave", "cosign", signed_body(esc.setup["dave"], deposit, agreement)),
        )
    finally:
        await second.close()
    complete = [k for a in answers for k in a.kinds() if k[1] == "cosigned_all"]
    assert len(complete) == 3  # sender and both co-signers, told once


# -- bad receipts and agreements -----------------------------------------------------


BAD: dict[str, tuple[str, dict[str, Any], str, str | None]] = {
    # case: (requester, how the body is made, code, detail)
    "forged": ("bob", {"forge": True}, "invalid_signature", None),
    "another consignment": ("bob", {"consignment_id": "0" * 32}, "subject_mismatch", "consignment"),
    "another digest": ("bob", {"consignment_digest": "0" * 64}, "subject_mismatch", "digest"),
    "another policy": ("bob", {"policy_digest": bytes(32)}, "subject_mismatch", "policy"),
    "another signer": ("bob", {"signer": "carol"}, "subject_mismatch", "signer"),
    "from the future": ("bob", {"signed_at": T + 121}, "subject_mismatch", "signed_at"),
    "not a receiver": ("mallory", {}, "not_a_receiver", None),
    "duplicate": ("bob", {"twice": True}, "already_signed", None),
    "agreement forged": ("carol", {"agreement": True, "forge": True}, "invalid_signature", None),
    "agreement not a cosigner": ("bob", {"agreement": True}, "not_a_cosigner", None),
    "agreement other policy": (
        "carol",
        {"agreement": True, "policy_digest": bytes(32)},
        "subject_mismatch",
        "policy",
    ),
    "agreement duplicate": ("carol", {"agreement": True, "twice": True}, "already_signed", None),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_a_bad_receipt_or_agreement_is_refused_and_changes_nothing(
    esc: Direct, case: str
) -> None:
    who, how, code, detail = BAD[case]
    how = dict(how)
    deposit = sealed(esc, receipt_required=True, cosigners=("carol",))
    await esc.deposit(deposit)
    kind = StatementKind.AGREEMENT if how.pop("agreement", False) else StatementKind.RECEIPT
    key = Ed25519PrivateKey.generate() if how.pop("forge", False) else None
    twice = how.pop("twice", False)
    type_ = "cosign" if kind is StatementKind.AGREEMENT else "receipt"
    if twice:
        first = signed_body(esc.setup[who], deposit, kind, signed_at=T - 10)
        assert (await esc.ask(who, type_, first)).reply.type != MessageType.ERROR
    body = signed_body(esc.setup[who], deposit, kind, key=key, **how)
    before, everything = await esc.setup.run(control_state), await full_snapshot(esc.setup)

    answer = await esc.ask(who, type_, body)
    assert answer.code == code, answer.reply.body
    assert answer.reply.body.detail == detail
    assert answer.kinds() == [("alice", "denied", who)]
    assert code in answer.events[0][1].body.reason
    assert await esc.setup.run(control_state) == before
    after = await full_snapshot(esc.setup)
    decided = [r for r in after["requests"] if r not in everything["requests"]]
    assert [r[6] for r in decided] == [code]  # recorded as the decision
    # Beyond the decision, its `denied` event, the request's nonce and their
    # entries in the transaction log: nothing.
    kept = ("requests", "outbox", "seen_requests", "sqlite_sequence", "log_entries", "log_parties")
    assert {t: r for t, r in after.items() if t not in kept} == {
        t: r for t, r in everything.items() if t not in kept
    }


async def test_receipts_and_agreements_about_nothing_deposited(esc: Direct) -> None:
    deposit = sealed(esc)
    answer = await esc.ask("bob", "receipt", signed_body(esc.setup["bob"], deposit))
    assert answer.code == ErrorCode.UNKNOWN_CONSIGNMENT
    assert answer.events == []
    asked = await esc.ask("carol", "agreement", {"consignment_id": deposit.consignment_id})
    assert asked.code == ErrorCode.UNKNOWN_CONSIGNMENT


async def test_only_cosigners_and_the_sender_see_the_agreement(esc: Direct) -> None:
    deposit = sealed(esc, receivers=("bob",), cosigners=("carol",))
    await esc.deposit(deposit)
    snooped = await esc.ask("mallory", "agreement", {"consignment_id": deposit.consignment_id})
    assert snooped.code == ErrorCode.NOT_A_COSIGNER
    assert snooped.kinds() == [("alice", "denied", None)]
    own = await esc.ask("alice", "agreement", {"consignment_id": deposit.consignment_id})
    assert own.reply.type == MessageType.AGREEMENT_REPLY


# -- attributes per receiver, at each boundary ------------------------------------------


@pytest.mark.parametrize(("offset", "bob", "carol"), [
    (-1, "not_yet", "not_yet"),
    (0, "ok", "not_yet"),
    (100, "ok", "ok"),
    (200, "ok", "ok"),
    (201, "expired", "ok"),
    (300, "expired", "ok"),
    (301, "expired", "expired"),
])  # fmt: skip
async def test_each_receiver_has_its_own_window(
    esc: Direct, offset: int, bob: str, carol: str
) -> None:
    """The policy says from T+0 to T+200; carol's own: from T+100 to T+300."""
    own = {"carol": ReceiverAttributes(not_before=T + 100, not_after=T + 300)}
    deposit = sealed(esc, own=own, not_before=T, not_after=T + 200)
    await esc.deposit(deposit)
    esc.setup.clock.now = NOW
    esc.setup.clock.advance(offset)
    for name, expected in (("bob", bob), ("carol", carol)):
        answer = await esc.key(name, deposit)
        assert (answer.code or "ok") == expected, name


@pytest.mark.parametrize(("offset", "expected"), [(30, None), (31, "ask_window_closed")])
async def test_a_receivers_own_ask_within_counts_from_its_notification(
    esc: Direct, offset: int, expected: str | None
) -> None:
    """The policy gives a day; bob his own 30 s."""
    own = {"bob": ReceiverAttributes(ask_within_seconds=30)}
    deposit = sealed(esc, own=own, ask_within_seconds=86400)
    await esc.deposit(deposit)
    esc.setup.clock.advance(offset)
    assert (await esc.key("bob", deposit)).code == expected
    assert (await esc.key("carol", deposit)).code is None


async def test_each_receiver_has_its_own_release_limit(esc: Direct) -> None:
    deposit = sealed(esc, own={"carol": ReceiverAttributes(max_releases=2)}, max_releases=1)
    await esc.deposit(deposit)
    codes = [(await esc.key(n, deposit)).code for n in ("bob", "bob", "carol", "carol", "carol")]
    assert codes == [None, "exhausted", None, None, "exhausted"]


async def test_own_attributes_are_bound_into_the_policy_digest(esc: Direct) -> None:
    plain = sealed(esc)
    own = sealed(esc, own={"bob": ReceiverAttributes(max_releases=1)})
    assert b'"attributes":{' in own.policy.canonical()
    assert own.policy.digest() != plain.policy.digest()
    # A receiver without attributes of its own encodes as before: no member at all.
    assert plain.policy.canonical().count(b'"attributes"') == 1


# -- the trust policy at release ----------------------------------------------------------


async def test_a_trust_rule_removed_after_the_deposit_stops_later_releases(esc: Direct) -> None:
    async def restrict(tx: Tx) -> None:
        await set_restricted(tx, True)
        await add_rule(tx, "*", "*")

    await esc.setup.run(restrict)
    deposit = sealed(esc, receivers=("bob", "alice"))
    await esc.deposit(deposit)
    assert (await esc.key("bob", deposit)).reply.type == MessageType.KEY_RELEASE
    await esc.setup.run(lambda tx: remove_rule(tx, "*", "*"))
    before = await esc.setup.run(control_state)
    refused = await esc.key("bob", deposit)
    assert refused.code == ErrorCode.TRUST_WITHDRAWN
    assert "no rule lets 'alice'" in refused.reply.body.message
    assert refused.kinds() == [("alice", "denied", "bob")]
    assert await esc.setup.run(control_state) == before
    # A party may always send to itself: the virtual safe still opens.
    assert (await esc.key("alice", deposit)).reply.type == MessageType.KEY_RELEASE


# -- expiry -----------------------------------------------------------------------------


async def test_expiry_is_reported_once_per_receiver_a_second_after_its_window(
    esc: Direct,
) -> None:
    # bob: until T+100 (the policy's); carol: must ask within 50 s of the notification.
    own = {"carol": ReceiverAttributes(ask_within_seconds=50)}
    deposit = sealed(esc, receivers=("bob", "carol", "dave"), own=own, not_after=T + 100)
    await esc.deposit(deposit)
    assert (await esc.key("dave", deposit)).reply.type == MessageType.KEY_RELEASE  # used

    clock = esc.setup.clock
    clock.advance(50)
    assert await esc.expire() == []  # carol may still ask, at exactly T+50
    clock.advance(1)
    expired = await esc.expire()
    assert [(to, e.body.kind, e.body.receiver) for to, e in expired] == [
        ("alice", EventKind.EXPIRED, "carol")
    ]
    assert expired[0][1].body.reason.startswith("ask_within: ")
    assert await esc.expire() == []  # once
    clock.advance(49)  # T+100: bob's last second
    assert await esc.expire() == []
    clock.advance(1)
    later = await esc.expire()
    assert [(e.body.receiver, e.body.reason.split(":")[0]) for _, e in later] == [
        ("bob", "not_after")
    ]
    clock.advance(3600)
    assert await esc.expire() == []  # dave was released: his window was used
    status = await esc.ask("alice", "status", {"consignment_id": deposit.consignment_id})
    assert [(r.name, r.closes_at, r.expired_at) for r in status.reply.body.receivers] == [
        ("bob", T + 100, T + 101),
        ("carol", T + 50, T + 51),
        ("dave", T + 100, None),
    ]
    # The events are in the outbox, stored as sent by nobody yet: a sweep resends them.
    pending = await esc.service.pending_outbox(older_than=timedelta(0))
    assert len([p for p in pending if p.message.type == "event.v1"]) >= 2


async def test_a_revoked_receiver_never_expires(esc: Direct) -> None:
    deposit = sealed(esc, receivers=("bob",), not_after=T + 10)
    await esc.deposit(deposit)
    await esc.ask("alice", "revoke", {"consignment_id": deposit.consignment_id, "receivers": []})
    esc.setup.clock.advance(11)
    assert await esc.expire() == []


async def test_two_workers_sweeping_at_once_report_each_expiry_once(esc: Direct) -> None:
    deposits = [sealed(esc, receivers=("bob", "carol"), not_after=T + 10) for _ in range(5)]
    for deposit in deposits:
        await esc.deposit(deposit)
    esc.setup.clock.advance(11)
    others = [await esc.setup.open_service() for _ in range(2)]
    try:
        swept = await asyncio.gather(esc.expire(), *(Direct(esc.setup, s).expire() for s in others))
    finally:
        for other in others:
            await other.close()
    reported = sorted(
        (e.body.consignment_id, e.body.receiver) for events in swept for _, e in events
    )
    assert reported == sorted((d.consignment_id, r) for d in deposits for r in ("bob", "carol"))
    assert await esc.expire() == []

"""Every refusal, through a running worker on both transports: the typed error
(or the dead-letter queue for what cannot be parsed), an event to the sender
where it concerns its consignment, no state change, and the worker still serves
a valid request afterwards."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import (
    ESCROW,
    ControlAttributes,
    Deposit,
    Message,
    Mode,
    Policy,
    ReceiverSpec,
    SignedEnvelope,
    seal_deposit,
)
from broker.canonical import canonical_json
from broker.messages import (
    DepositBody,
    ErrorCode,
    EventKind,
    LookupReplyBody,
    MessageType,
    RevokeBody,
    StatusBody,
)
from broker.pki.profile import fingerprint
from escrow_worker import EscrowService, open_escrow, register_user, revoke_user
from escrow_worker.ca.authority import load_ca
from escrow_worker.ca.policy import set_restricted
from escrow_worker.state.location import Location
from tests.broker.pki_helpers import ESCROW_PASS, make_ca, make_identity
from tests.escrow_worker.helpers import (
    Agent,
    EscrowSetup,
    deposit_body,
    full_snapshot,
    key_request_body,
    make_escrow,
    request,
    request_id_of,
    running_worker,
    seal_for,
    state,
)
from tests.support import TransportFactory


@dataclass
class World:
    setup: EscrowSetup
    service: EscrowService
    agents: dict[str, Agent]
    factory: TransportFactory

    def req(self, name: str, type_: str, body: Any, **kw: Any) -> bytes:
        kw.setdefault("now", self.setup.clock.now)
        return request(self.setup[name], type_, body, **kw)

    async def deposited(
        self,
        receivers: tuple[str, ...] = ("bob",),
        attributes: ControlAttributes | None = None,
        mode: Mode = Mode.SPLIT,
    ) -> Deposit:
        _, deposit = seal_for(
            self.setup["alice"],
            [self.setup[r] for r in receivers],
            attributes=attributes,
            mode=mode,
        )
        reply = await self.agents["alice"].ask(
            self.req("alice", "deposit", deposit_body(self.setup, deposit))
        )
        assert reply.type == MessageType.DEPOSIT_RECEIPT, reply.body
        for agent in self.agents.values():
            await agent.drain(0.1)
        return deposit


@dataclass(frozen=True)
class Expect:
    data: bytes
    #: The agent that publishes it.
    by: str
    #: The error code, or None: no reply at all (dead-lettered, unless `dead` is False).
    code: str | None
    #: Where the error goes (default: `by`).
    inbox: str | None = None
    detail: str | None = None
    #: The sender (alice) gets a "denied" event about its consignment.
    event: bool = False
    #: The refusal is a decision, stored with the request id (a retry gets it again).
    stored: bool = False
    #: With no `code`: the message goes to the dead letters (else: answered to nobody).
    dead: bool = True


Case = Callable[[World], Awaitable[Expect]]


# -- unparseable: dead-lettered -----------------------------------------------------


async def not_json(w: World) -> Expect:
    return Expect(b"this is not json {", "alice", None)


async def envelope_fields_invalid(w: World) -> Expect:
    payload = base64.b64encode(canonical_json({"type": "lookup"})).decode()
    return Expect(canonical_json({"payload": payload, "signature": "AAAA", "v": 1}), "alice", None)


async def not_canonical(w: World) -> Expect:
    return Expect(w.req("alice", "lookup", {"name": "bob"}).replace(b",", b", ", 1), "alice", None)


# -- authentication: an error to the claimed inbox, nothing stored -------------------


async def tampered(w: World) -> Expect:
    signed = SignedEnvelope.from_wire(w.req("alice", "lookup", {"name": "bob"}))
    forged = SignedEnvelope(
        payload=signed.payload.replace(b'"bob"', b'"eve"'), signature=signed.signature
    )
    return Expect(forged.to_wire(), "alice", "unauthenticated", detail="bad_signature")


async def missing_signature(w: World) -> Expect:
    signed = SignedEnvelope.from_wire(w.req("alice", "lookup", {"name": "bob"}))
    unsigned = SignedEnvelope(payload=signed.payload, signature=b"")
    return Expect(unsigned.to_wire(), "alice", "unauthenticated", detail="bad_signature")


async def signed_by_another_key(w: World) -> Expect:
    data = w.req("alice", "lookup", {"name": "bob"}, key=Ed25519PrivateKey.generate())
    return Expect(data, "alice", "unauthenticated", detail="bad_signature")


async def unknown_signer(w: World) -> Expect:
    """Signed by a certificate this escrow never issued: nobody it could tell
    (the claimed `reply_to` is the sender's to choose), so no answer at all."""
    stranger = make_identity(make_ca("other"), "bob")
    data = request(stranger, "lookup", {"name": "alice"}, now=w.setup.clock.now)
    return Expect(data, "bob", None, dead=False)


async def forged_copy_with_the_forgers_inbox(w: World) -> Expect:
    """Alice's request altered in flight by mallory, with mallory's inbox as
    `reply_to`: mallory learns nothing; alice, the registered signer, is told
    (an error that decided nothing)."""
    signed = SignedEnvelope.from_wire(w.req("alice", "lookup", {"name": "bob"}, reply_to="mallory"))
    forged = SignedEnvelope(
        payload=signed.payload.replace(b'"bob"', b'"eve"'), signature=signed.signature
    )
    return Expect(forged.to_wire(), "mallory", "unauthenticated", inbox="alice",
                  detail="bad_signature")  # fmt: skip


async def encryption_certificate_as_signer(w: World) -> Expect:
    alice = w.setup["alice"]
    data = w.req(
        "alice", "lookup", {"name": "bob"}, signer=fingerprint(alice.encryption_certificate)
    )
    return Expect(data, "alice", "unauthenticated", detail="wrong_usage")


async def wrong_audience(w: World) -> Expect:
    data = w.req("alice", "lookup", {"name": "bob"}, audience="globex")
    return Expect(data, "alice", "unauthenticated", detail="wrong_audience")


async def revoked_signer(w: World) -> Expect:
    async with open_escrow(w.setup.location) as escrow:
        ca = await load_ca(escrow, ESCROW_PASS)
        await revoke_user(escrow, ca, "mallory", now=w.setup.clock.now)
    data = w.req("mallory", "lookup", {"name": "bob"})
    return Expect(data, "mallory", "unauthenticated", detail="revoked")


async def reply_to_someone_else(w: World) -> Expect:
    data = w.req("mallory", "lookup", {"name": "bob"}, reply_to="bob")
    return Expect(data, "mallory", "unauthenticated", detail="reply_to")


# -- freshness, replay, type: an error to the signer, nothing stored --------------------


async def expired(w: World) -> Expect:
    data = w.req("alice", "lookup", {"name": "bob"}, now=w.setup.clock.now - timedelta(minutes=8))
    return Expect(data, "alice", "stale", detail="expired")


async def from_the_future(w: World) -> Expect:
    data = w.req("alice", "lookup", {"name": "bob"}, now=w.setup.clock.now + timedelta(minutes=5))
    return Expect(data, "alice", "stale", detail="from_future")


async def lives_too_long(w: World) -> Expect:
    data = w.req("alice", "lookup", {"name": "bob"}, lifetime=timedelta(hours=2))
    return Expect(data, "alice", "stale", detail="lifetime_too_long")


async def request_id_reused_for_other_bytes(w: World) -> Expect:
    first = w.req("alice", "lookup", {"name": "bob"})
    await w.agents["alice"].ask(first)
    data = w.req("alice", "lookup", {"name": "carol"}, request_id=request_id_of(first))
    return Expect(data, "alice", "replayed")


async def request_id_reused_by_another_signer(w: World) -> Expect:
    first = w.req("alice", "lookup", {"name": "bob"})
    await w.agents["alice"].ask(first)
    data = w.req("carol", "lookup", {"name": "bob"}, request_id=request_id_of(first))
    return Expect(data, "carol", "replayed")


async def nonce_reused(w: World) -> Expect:
    nonce = os.urandom(16)
    await w.agents["alice"].ask(w.req("alice", "lookup", {"name": "bob"}, nonce=nonce))
    return Expect(w.req("alice", "lookup", {"name": "carol"}, nonce=nonce), "alice", "replayed")


async def unknown_type(w: World) -> Expect:
    return Expect(w.req("alice", "frobnicate", {"name": "bob"}), "alice", "unknown_type")


async def unknown_version(w: World) -> Expect:
    return Expect(w.req("alice", "lookup", {"name": "bob"}, version=2), "alice", "unknown_type")


async def reply_type_sent_to_escrow(w: World) -> Expect:
    body = {"consignment_id": "0" * 32, "kind": "released", "at": 1}
    return Expect(w.req("alice", "event", body), "alice", "unknown_type")


async def body_does_not_fit(w: World) -> Expect:
    data = w.req("alice", "lookup", {"name": "bob", "extra": 1})
    return Expect(data, "alice", "malformed")


# -- decisions: stored, with an event to the sender where it is its consignment ------


async def lookup_unknown_user(w: World) -> Expect:
    data = w.req("alice", "lookup", {"name": "nobody"})
    return Expect(data, "alice", "unknown_user", stored=True)


async def key_request_unknown_consignment(w: World) -> Expect:
    _, deposit = seal_for(w.setup["alice"], [w.setup["bob"]])  # never deposited
    data = w.req("bob", "key-request", key_request_body(deposit))
    return Expect(data, "bob", "unknown_consignment", stored=True)


async def key_request_not_a_receiver(w: World) -> Expect:
    deposit = await w.deposited(("bob",))
    data = w.req("carol", "key-request", key_request_body(deposit))
    return Expect(data, "carol", "not_a_receiver", event=True, stored=True)


async def key_request_after_revocation(w: World) -> Expect:
    deposit = await w.deposited(("bob",))
    revoke = RevokeBody(consignment_id=deposit.consignment_id)
    await w.agents["alice"].ask(w.req("alice", "revoke", revoke))
    await w.agents["alice"].drain(0.1)
    data = w.req("bob", "key-request", key_request_body(deposit))
    return Expect(data, "bob", "revoked", event=True, stored=True)


async def key_request_after_reregistration(w: World) -> Expect:
    """Bob's key changed after the deposit (revoked, registered again): the part
    goes only to the key the policy recorded, so his new identity gets none."""
    deposit = await w.deposited(("bob",))
    async with open_escrow(w.setup.location) as escrow:
        ca = await load_ca(escrow, ESCROW_PASS)
        await revoke_user(escrow, ca, "bob", now=w.setup.clock.now)
        w.setup.users["bob"] = await register_user(
            escrow, ca, "bob", groups=(), now=w.setup.clock.now, save=lambda _: None
        )
    data = w.req("bob", "key-request", key_request_body(deposit))
    return Expect(data, "bob", "key_changed", event=True, stored=True)


async def key_request_digest_mismatch(w: World) -> Expect:
    deposit = await w.deposited(("bob",))
    data = w.req("bob", "key-request", key_request_body(deposit, digest="ab" * 32))
    return Expect(data, "bob", "digest_mismatch", event=True, stored=True)


async def key_request_before_not_before(w: World) -> Expect:
    attributes = ControlAttributes(not_before=w.setup.clock.t + 60)
    deposit = await w.deposited(("bob",), attributes)
    w.setup.clock.advance(59)
    data = w.req("bob", "key-request", key_request_body(deposit))
    return Expect(data, "bob", "not_yet", event=True, stored=True)


async def key_request_after_not_after(w: World) -> Expect:
    attributes = ControlAttributes(not_after=w.setup.clock.t + 60)
    deposit = await w.deposited(("bob",), attributes)
    w.setup.clock.advance(61)
    data = w.req("bob", "key-request", key_request_body(deposit))
    return Expect(data, "bob", "expired", event=True, stored=True)


async def key_request_outside_ask_window(w: World) -> Expect:
    attributes = ControlAttributes(ask_within_seconds=30)
    deposit = await w.deposited(("bob",), attributes)
    w.setup.clock.advance(31)
    data = w.req("bob", "key-request", key_request_body(deposit))
    return Expect(data, "bob", "ask_window_closed", event=True, stored=True)


async def key_request_past_max_releases(w: World) -> Expect:
    deposit = await w.deposited(("bob",), ControlAttributes(max_releases=1))
    await w.agents["bob"].ask(w.req("bob", "key-request", key_request_body(deposit)))
    await w.agents["alice"].drain(0.1)
    data = w.req("bob", "key-request", key_request_body(deposit))
    return Expect(data, "bob", "exhausted", event=True, stored=True)


def _deposit_data(w: World, deposit: Deposit, by: str = "alice") -> bytes:
    return w.req(by, "deposit", deposit_body(w.setup, deposit))


async def deposit_by_someone_not_the_sender(w: World) -> Expect:
    _, deposit = seal_for(w.setup["alice"], [w.setup["bob"]])
    return Expect(_deposit_data(w, deposit, "mallory"), "mallory", "not_sender", stored=True)


async def deposit_naming_an_unregistered_receiver(w: World) -> Expect:
    stranger = make_identity(make_ca("other"), "zed")
    _, deposit = seal_for(w.setup["alice"], [w.setup["bob"], stranger])
    return Expect(_deposit_data(w, deposit), "alice", "unknown_user", stored=True)


async def deposit_naming_a_revoked_receiver(w: World) -> Expect:
    _, deposit = seal_for(w.setup["alice"], [w.setup["carol"]])
    async with open_escrow(w.setup.location) as escrow:
        ca = await load_ca(escrow, ESCROW_PASS)
        await revoke_user(escrow, ca, "carol", now=w.setup.clock.now)
    return Expect(_deposit_data(w, deposit), "alice", "unknown_user", stored=True)


def _with_policy(deposit: Deposit, policy: Policy) -> Deposit:
    return deposit.model_copy(update={"policy": policy, "policy_digest": policy.digest()})


async def deposit_with_a_wrong_key(w: World) -> Expect:
    _, deposit = seal_for(w.setup["alice"], [w.setup["bob"]])
    wrong = X25519PrivateKey.generate().public_key().public_bytes_raw()
    policy = deposit.policy.model_copy(
        update={"receivers": (ReceiverSpec(name="bob", encryption_key=wrong),)}
    )
    data = _deposit_data(w, _with_policy(deposit, policy))
    return Expect(data, "alice", "wrong_key", stored=True)


async def deposit_for_another_escrow(w: World) -> Expect:
    _, deposit = seal_for(w.setup["alice"], [w.setup["bob"]], escrow="globex")
    return Expect(_deposit_data(w, deposit), "alice", "wrong_escrow", stored=True)


async def deposit_naming_an_unregistered_cosigner(w: World) -> Expect:
    attributes = ControlAttributes(cosigners=("carol", "nobody"))
    _, deposit = seal_for(w.setup["alice"], [w.setup["bob"]], attributes=attributes)
    return Expect(_deposit_data(w, deposit), "alice", "unknown_user", stored=True)


async def deposit_twice(w: World) -> Expect:
    deposit = await w.deposited(("bob",))
    return Expect(_deposit_data(w, deposit), "alice", "already_deposited", stored=True)


async def deposit_sealed_to_another_key(w: World) -> Expect:
    _, deposit = seal_for(w.setup["alice"], [w.setup["bob"]])
    body = DepositBody(
        consignment_id=deposit.consignment_id,
        sealed_deposit=seal_deposit(deposit, w.setup["bob"].encryption_key.public_key()),
    )
    return Expect(w.req("alice", "deposit", body), "alice", "malformed", stored=True)


async def deposit_under_another_consignment_id(w: World) -> Expect:
    _, deposit = seal_for(w.setup["alice"], [w.setup["bob"]])
    body = deposit_body(w.setup, deposit).model_copy(update={"consignment_id": "0" * 32})
    return Expect(w.req("alice", "deposit", body), "alice", "malformed", stored=True)


async def deposit_the_trust_policy_forbids(w: World) -> Expect:
    await w.setup.run(lambda tx: set_restricted(tx, True))
    _, deposit = seal_for(w.setup["alice"], [w.setup["bob"]])
    return Expect(_deposit_data(w, deposit), "alice", "not_allowed", stored=True)


async def revoke_by_someone_not_the_sender(w: World) -> Expect:
    deposit = await w.deposited(("bob",))
    data = w.req("bob", "revoke", RevokeBody(consignment_id=deposit.consignment_id))
    return Expect(data, "bob", "not_sender", event=True, stored=True)


async def revoke_naming_a_non_receiver(w: World) -> Expect:
    deposit = await w.deposited(("bob",))
    body = RevokeBody(consignment_id=deposit.consignment_id, receivers=("carol",))
    return Expect(w.req("alice", "revoke", body), "alice", "not_a_receiver", stored=True)


async def revoke_unknown_consignment(w: World) -> Expect:
    body = RevokeBody(consignment_id="1" * 32)
    return Expect(w.req("alice", "revoke", body), "alice", "unknown_consignment", stored=True)


async def status_by_someone_not_the_sender(w: World) -> Expect:
    deposit = await w.deposited(("bob",))
    data = w.req("mallory", "status", StatusBody(consignment_id=deposit.consignment_id))
    return Expect(data, "mallory", "not_sender", event=True, stored=True)


CASES: dict[str, Case] = {
    f.__name__: f
    for f in (
        not_json,
        envelope_fields_invalid,
        not_canonical,
        tampered,
        forged_copy_with_the_forgers_inbox,
        missing_signature,
        signed_by_another_key,
        unknown_signer,
        encryption_certificate_as_signer,
        wrong_audience,
        revoked_signer,
        reply_to_someone_else,
        expired,
        from_the_future,
        lives_too_long,
        request_id_reused_for_other_bytes,
        request_id_reused_by_another_signer,
        nonce_reused,
        unknown_type,
        unknown_version,
        reply_type_sent_to_escrow,
        body_does_not_fit,
        lookup_unknown_user,
        key_request_unknown_consignment,
        key_request_not_a_receiver,
        key_request_after_revocation,
        key_request_after_reregistration,
        key_request_digest_mismatch,
        key_request_before_not_before,
        key_request_after_not_after,
        key_request_outside_ask_window,
        key_request_past_max_releases,
        deposit_by_someone_not_the_sender,
        deposit_naming_an_unregistered_receiver,
        deposit_naming_a_revoked_receiver,
        deposit_with_a_wrong_key,
        deposit_for_another_escrow,
        deposit_naming_an_unregistered_cosigner,
        deposit_twice,
        deposit_sealed_to_another_key,
        deposit_under_another_consignment_id,
        deposit_the_trust_policy_forbids,
        revoke_by_someone_not_the_sender,
        revoke_naming_a_non_receiver,
        revoke_unknown_consignment,
        status_by_someone_not_the_sender,
    )
}


@pytest.fixture
async def world(
    escrow_location: Location, tmp_path: Path, transport_factory: TransportFactory
) -> AsyncIterator[World]:
    setup = await make_escrow(escrow_location)
    worker_transport = await transport_factory()
    async with await setup.open_service() as service, running_worker(service, worker_transport):
        agents = {
            name: await Agent(setup, setup[name], await transport_factory()).start()
            for name in ("alice", "bob", "carol", "mallory")
        }
        yield World(setup, service, agents, transport_factory)


async def _handled_after(w: World) -> None:
    """Send alice a request refused as stale (nothing stored) and wait for it: the
    worker has handled what was published before it."""
    old = w.setup.clock.now - timedelta(hours=1)
    reply = await w.agents["alice"].ask(w.req("alice", "lookup", {"name": "bob"}, now=old))
    assert reply.code == "stale"


async def _still_serves(w: World) -> None:
    reply = await w.agents["alice"].ask(w.req("alice", "lookup", {"name": "bob"}))
    assert isinstance(reply.body, LookupReplyBody)


async def _dead_letters(w: World, wait: float = 0.0) -> list[bytes]:
    """What the dead-letter queue holds, waiting up to `wait` for the first."""
    transport = w.agents["alice"].transport
    found = []
    while (d := await transport.get(transport.config.dead_letter_queue, timeout=wait)) is not None:
        found.append(d.body)
        await d.ack()
        wait = 0.2
    return found


@pytest.mark.parametrize("case", list(CASES))
async def test_refusal(world: World, case: str) -> None:
    expect = await CASES[case](world)
    setup = world.setup
    before_state, before_all = await state(setup), await full_snapshot(setup)
    agent = world.agents[expect.by]
    await agent.send(expect.data)

    if expect.code is None and expect.dead:
        assert await _dead_letters(world, 5.0) == [expect.data]
        assert await agent.drain() == []
    elif expect.code is None:
        await _handled_after(world)  # the request was handled before this one
        for anyone in world.agents.values():
            assert [r for r in await anyone.drain() if r.type != MessageType.EVENT] == []
        assert await _dead_letters(world) == []
    else:
        inbox = world.agents[expect.inbox or expect.by]
        claimed = SignedEnvelope.from_wire(expect.data).unverified()
        reply = await inbox.reply_to(claimed.request_id)
        assert reply.type == MessageType.ERROR
        assert reply.code == expect.code, reply.body
        assert reply.body.request_type == claimed.type
        if expect.detail is not None:
            assert reply.body.detail == expect.detail
        if inbox is not agent:  # whoever published it hears nothing
            assert [r for r in await agent.drain() if r.type != MessageType.EVENT] == []
        assert await _dead_letters(world) == []

    events = [r.body for r in await world.agents["alice"].drain() if r.type == MessageType.EVENT]
    if expect.event:
        assert [(e.kind, e.reason.split(": ")[1]) for e in events] == [
            (EventKind.DENIED, expect.code)
        ]
    else:
        assert events == []

    assert await state(setup) == before_state
    after_all = await full_snapshot(setup)
    if expect.stored:
        # The decision is recorded with its request id, and nothing else.
        rows = {r[0]: r for r in after_all["requests"]}
        claimed = SignedEnvelope.from_wire(expect.data).unverified()
        assert rows[claimed.request_id][6] == expect.code
        assert len(after_all["requests"]) == len(before_all["requests"]) + 1
    else:
        assert after_all == before_all
    await _still_serves(world)


async def test_oversize_request_is_dead_lettered(
    world: World, transport_factory: TransportFactory
) -> None:
    big = await transport_factory(max_message_size=4 << 20)
    data = canonical_json({"payload": "A" * (1 << 20), "signature": "AAAA", "v": 1})
    await big.publish(ESCROW, Message(body=data, message_id="big-one", type="request.v1"))
    dead = await _dead_letters(world, 5.0)
    assert [len(d) for d in dead] == [len(data)]
    await _still_serves(world)


def test_every_expected_code_is_a_real_error_code() -> None:
    expected = {"unauthenticated", "stale", "replayed", "unknown_type", "malformed"}
    assert expected <= {c.value for c in ErrorCode}

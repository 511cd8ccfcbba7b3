"""Every handler's happy path through a running worker, on both transports:
lookup, deposit (with notifications and events), key-request in split and
escrowed mode (the receiver opens the consignment with what it gets), revoke and
status."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from broker import ControlAttributes, KeyRelease, Mode, SealedMessageError, open_key_part
from broker.messages import (
    DepositReceiptBody,
    EventKind,
    KeyReleaseBody,
    LookupReplyBody,
    MessageType,
    NotifyBody,
    RevokeBody,
    RevokeReplyBody,
    StatusBody,
    StatusReplyBody,
)
from broker.pki.profile import fingerprint
from client import unseal
from escrow_worker import EscrowService
from escrow_worker.state.location import Location
from tests.escrow_worker.helpers import (
    Agent,
    EscrowSetup,
    Received,
    deposit_body,
    key_request_body,
    make_escrow,
    request,
    running_worker,
    seal_for,
    state,
)
from tests.support import TransportFactory


@dataclass
class Running:
    setup: EscrowSetup
    service: EscrowService
    alice: Agent
    bob: Agent
    carol: Agent
    mallory: Agent


@pytest.fixture
async def running(
    escrow_location: Location, tmp_path: Path, transport_factory: TransportFactory
) -> AsyncIterator[Running]:
    setup = await make_escrow(escrow_location)
    worker_transport = await transport_factory()
    async with await setup.open_service() as service, running_worker(service, worker_transport):
        agents = [
            await Agent(setup, setup[name], await transport_factory()).start()
            for name in ("alice", "bob", "carol", "mallory")
        ]
        yield Running(setup, service, *agents)


def kinds(received: list[Received]) -> list[tuple[str, str | None]]:
    return [(r.body.kind, r.body.receiver) for r in received if r.type == MessageType.EVENT]


def opened(consignment: bytes, agent: Agent, release: KeyRelease) -> bytes:
    out = io.BytesIO()
    unseal(
        io.BytesIO(consignment),
        out,
        identity=agent.identity.encryption_key,
        release=release,
        sender_key=agent.setup["alice"].signing_key.public_key(),
    )
    return out.getvalue()


async def test_lookup_answers_a_partys_certificates_and_the_crl(running: Running) -> None:
    reply = await running.alice.ask(request(running.setup["alice"], "lookup", {"name": "bob"}))
    assert reply.type == MessageType.LOOKUP_REPLY
    body = reply.body
    assert isinstance(body, LookupReplyBody)
    bob = running.setup["bob"]
    assert x509.load_pem_x509_certificate(body.encryption_certificate.encode()) == (
        bob.encryption_certificate
    )
    assert x509.load_pem_x509_certificate(body.signing_certificate.encode()) == (
        bob.signing_certificate
    )
    crl = x509.load_der_x509_crl(body.crl)
    assert crl.issuer == bob.ca_certificate.subject


async def test_lookup_of_the_escrow_gives_the_escrows_certificates(running: Running) -> None:
    reply = await running.bob.ask(request(running.setup["bob"], "lookup", {"name": "acme"}))
    assert isinstance(reply.body, LookupReplyBody)
    cert = x509.load_pem_x509_certificate(reply.body.encryption_certificate.encode())
    assert fingerprint(cert) == fingerprint(running.service.encryption_certificate)


@pytest.mark.parametrize("mode", [Mode.SPLIT, Mode.ESCROWED])
async def test_deposit_then_release_opens_the_consignment(running: Running, mode: Mode) -> None:
    setup, alice, bob, carol = running.setup, running.alice, running.bob, running.carol
    consignment, deposit = seal_for(setup["alice"], [setup["bob"], setup["carol"]], mode=mode)

    receipt = await alice.ask(request(setup["alice"], "deposit", deposit_body(setup, deposit)))
    assert isinstance(receipt.body, DepositReceiptBody)
    assert receipt.body.consignment_id == deposit.consignment_id
    assert receipt.body.policy_digest == deposit.policy_digest
    assert receipt.body.consignment_digest == deposit.consignment_digest
    assert receipt.body.receivers == ("bob", "carol")
    assert receipt.body.deposited_at == setup.clock.t

    # Each receiver is notified, and the sender hears of the deposit and each notice.
    for agent in (bob, carol):
        notices = [r.body for r in await agent.drain() if r.type == MessageType.NOTIFY]
        assert len(notices) == 1
        assert isinstance(notices[0], NotifyBody)
        assert notices[0].consignment_digest == deposit.consignment_digest
        assert notices[0].sender == "alice"
    events = [r.body for r in await alice.drain()]
    assert [(e.kind, e.receiver) for e in events] == [
        (EventKind.DEPOSITED, None),
        (EventKind.NOTIFIED, "bob"),
        (EventKind.NOTIFIED, "carol"),
    ]

    for agent in (bob, carol):
        reply = await agent.ask(request(agent.identity, "key-request", key_request_body(deposit)))
        body = reply.body
        assert isinstance(body, KeyReleaseBody), body
        assert (body.mode, body.sender) == (mode, "alice")
        assert body.policy_digest == deposit.policy_digest
        part = body.sealed_key_part
        if mode is Mode.SPLIT:
            # K2 travels sealed to the receiver, never in clear.
            assert part != deposit.escrow_key
            part = open_key_part(
                part, agent.identity.encryption_key, deposit.consignment_id, body.policy_digest
            )
            assert part == deposit.escrow_key
        release = KeyRelease(
            consignment_id=body.consignment_id,
            mode=body.mode,
            escrow=deposit.policy.escrow,
            policy_digest=body.policy_digest,
            key_part=part,
        )
        assert opened(consignment, agent, release) == b"the quarterly figures"
    released = [e.receiver for e in [r.body for r in await alice.drain()]]
    assert released == ["bob", "carol"]


async def test_split_release_cannot_be_opened_by_another_receiver(running: Running) -> None:
    setup = running.setup
    _, deposit = seal_for(setup["alice"], [setup["bob"], setup["carol"]])
    await running.alice.ask(request(setup["alice"], "deposit", deposit_body(setup, deposit)))
    reply = await running.bob.ask(request(setup["bob"], "key-request", key_request_body(deposit)))
    with pytest.raises(SealedMessageError):
        open_key_part(
            reply.body.sealed_key_part,
            setup["carol"].encryption_key,
            deposit.consignment_id,
            deposit.policy_digest,
        )


async def test_revoke_stops_release_and_status_shows_it(running: Running) -> None:
    setup, alice, bob, carol = running.setup, running.alice, running.bob, running.carol
    _, deposit = seal_for(setup["alice"], [setup["bob"], setup["carol"]])
    await alice.ask(request(setup["alice"], "deposit", deposit_body(setup, deposit)))
    released = await carol.ask(request(setup["carol"], "key-request", key_request_body(deposit)))
    assert isinstance(released.body, KeyReleaseBody)
    await alice.drain()

    revoke = RevokeBody(consignment_id=deposit.consignment_id, receivers=("bob",))
    reply = await alice.ask(request(setup["alice"], "revoke", revoke))
    assert isinstance(reply.body, RevokeReplyBody)
    assert reply.body.revoked == ("bob",)
    assert kinds(await alice.drain()) == [(EventKind.REVOKED, "bob")]

    denied = await bob.ask(request(setup["bob"], "key-request", key_request_body(deposit)))
    assert denied.code == "revoked"

    status = await alice.ask(
        request(setup["alice"], "status", StatusBody(consignment_id=deposit.consignment_id))
    )
    assert isinstance(status.body, StatusReplyBody)
    rows = {r.name: r for r in status.body.receivers}
    assert rows["bob"].revoked_at == setup.clock.t
    assert rows["bob"].last_denied == "revoked"
    assert rows["bob"].releases == 0
    assert rows["carol"].releases == 1
    assert rows["carol"].revoked_at is None
    assert all(r.notified_at == setup.clock.t for r in rows.values())

    # Revoking everyone covers the rest; bob's revocation is not repeated as an event.
    await alice.drain()
    everyone = RevokeBody(consignment_id=deposit.consignment_id)
    reply = await alice.ask(request(setup["alice"], "revoke", everyone))
    assert reply.body.revoked == ("bob", "carol")
    assert kinds(await alice.drain()) == [(EventKind.REVOKED, "carol")]


async def test_virtual_safe_sender_is_its_own_receiver(running: Running) -> None:
    setup, alice = running.setup, running.alice
    consignment, deposit = seal_for(setup["alice"], [setup["alice"]], mode=Mode.ESCROWED)
    await alice.ask(request(setup["alice"], "deposit", deposit_body(setup, deposit)))
    reply = await alice.ask(request(setup["alice"], "key-request", key_request_body(deposit)))
    body = reply.body
    assert isinstance(body, KeyReleaseBody)
    release = KeyRelease(
        consignment_id=body.consignment_id,
        mode=body.mode,
        escrow=deposit.policy.escrow,
        policy_digest=body.policy_digest,
        key_part=body.sealed_key_part,
    )
    assert opened(consignment, alice, release) == b"the quarterly figures"


async def test_max_releases_counts_each_release_once(running: Running) -> None:
    setup, bob = running.setup, running.bob
    _, deposit = seal_for(
        setup["alice"], [setup["bob"]], attributes=ControlAttributes(max_releases=2)
    )
    await running.alice.ask(request(setup["alice"], "deposit", deposit_body(setup, deposit)))
    codes = []
    for _ in range(3):
        reply = await bob.ask(request(setup["bob"], "key-request", key_request_body(deposit)))
        codes.append(reply.code or reply.type)
    assert codes == ["key-release", "key-release", "exhausted"]
    assert len((await state(setup))["releases"]) == 2

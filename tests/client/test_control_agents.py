"""The sender's control end to end, the agents against the real escrow worker on
both transports (in process and RabbitMQ): a receipt before release (kept and
verified by the sender), co-signing with `CosignerAgent`, a receiver's own
attributes, contradictory attributes refused before anything is sealed, an
agent refusing a forged receipt, and the `expired` event from the sweep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from broker import (
    Attestation,
    ControlAttributes,
    ReceiverAttributes,
    Statement,
    StatementKind,
    Transport,
    sign_statement,
)
from broker.messages import EventBody, EventKind, MessageType
from broker.pki.profile import to_pem
from client import (
    CosignerAgent,
    EscrowRefused,
    ReceiverAgent,
    SealError,
    SenderAgent,
    consignment_digest,
)
from escrow_worker import EscrowService, EscrowWorker
from tests.client.agent_helpers import (
    ESCROW_NAME,
    ESCROW_PASS,
    WorkerRunner,
    World,
    make_world,
)
from tests.support import TransportFactory

WAIT = 10.0
NAMES = ("alice", "bob", "carol", "dave")


@pytest.fixture
async def world(tmp_path: Path) -> World:
    return await make_world(tmp_path, NAMES)


@pytest.fixture
async def escrow(world: World, transport_factory: TransportFactory) -> AsyncIterator[WorkerRunner]:
    async with WorkerRunner(world, await transport_factory()) as runner:
        yield runner


A = TypeVar("A", SenderAgent, ReceiverAgent, CosignerAgent)


def agent(kind: type[A], world: World, transport: Transport, root: Path, name: str) -> A:
    return kind(world.identities[name], transport, ESCROW_NAME, root / "agents" / name)


async def sealed(
    alice: SenderAgent,
    root: Path,
    to: list[str],
    *,
    name: str = "contract",
    attributes: ControlAttributes | None = None,
    own: dict[str, ReceiverAttributes] | None = None,
    send: bool = True,
) -> str:
    source = root / f"{name}.txt"
    source.write_text(f"the {name}\n")
    done = await alice.seal(
        [source],
        root / f"{name}.consignment",
        to=to,
        attributes=attributes,
        receiver_attributes=own,
    )
    if send:
        await alice.send(done.consignment_id)
    return done.consignment_id


async def events_of(
    who: SenderAgent | ReceiverAgent | CosignerAgent, cid: str, count: int
) -> list[tuple[str, str | None]]:
    """Wait until `who` kept at least `count` events of `cid`; (kind, receiver) of each."""
    async with asyncio.timeout(WAIT):
        while True:
            await who.sync(idle=0.2)
            events = await who.events(cid)
            if len(events) >= count:
                return [(str(e.kind), e.receiver) for e in events]


async def test_a_receipt_before_release_goes_to_the_sender_as_proof(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    async with (
        agent(SenderAgent, world, transport, tmp_path, "alice") as alice,
        agent(ReceiverAgent, world, transport, tmp_path, "bob") as bob,
        agent(ReceiverAgent, world, transport, tmp_path, "carol") as carol,
    ):
        own = {"bob": ReceiverAttributes(receipt_required=True)}
        cid = await sealed(alice, tmp_path, ["bob", "carol"], own=own)
        await bob.fetch()
        opened = await bob.open(cid, tmp_path / "bob-out")
        assert opened.receipt_signed_at is not None
        assert (tmp_path / "bob-out" / "contract.txt").read_text() == "the contract\n"
        await carol.fetch()
        assert (await carol.open(cid, tmp_path / "carol-out")).receipt_signed_at is None

        kinds = await events_of(alice, cid, 7)
        assert ("receipt", "bob") in kinds
        assert ("denied", "bob") in kinds  # the first request, before the receipt
        (proof,) = await alice.attestations(cid, StatementKind.RECEIPT)
        assert (proof.signer, proof.verified, proof.problem) == ("bob", True, None)
        assert proof.consignment_digest == consignment_digest(tmp_path / "contract.consignment")
        status = await alice.status(cid)
        bob_state = next(r for r in status.receivers if r.name == "bob")
        assert bob_state.receipt_required
        assert bob_state.receipt_at is not None
        assert bob_state.releases == 1

        # Without signing one, the refusal says what is missing.
        cid2 = await sealed(alice, tmp_path, ["bob"], name="second", own=own)
        await bob.fetch()
        with pytest.raises(EscrowRefused) as refused:
            await bob.open(cid2, tmp_path / "bob-out-2", receipt=False)
        assert refused.value.code == "receipt_required"
        assert await alice.attestations(cid2) == []


async def test_nobody_opens_before_every_cosigner_signed(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    async with (
        agent(SenderAgent, world, transport, tmp_path, "alice") as alice,
        agent(ReceiverAgent, world, transport, tmp_path, "bob") as bob,
        agent(CosignerAgent, world, transport, tmp_path, "carol") as carol,
        agent(CosignerAgent, world, transport, tmp_path, "dave") as dave,
    ):
        attributes = ControlAttributes(cosigners=("carol", "dave"))
        cid = await sealed(alice, tmp_path, ["bob"], attributes=attributes)
        await bob.fetch()
        with pytest.raises(EscrowRefused) as pending:
            await bob.open(cid, tmp_path / "out")
        assert pending.value.code == "cosignatures_pending"

        assert ("cosign_requested", "carol") in await events_of(carol, cid, 1)
        terms = await carol.agreement(cid)
        assert [r.name for r in terms.policy.receivers] == ["bob"]
        assert terms.policy.attributes.cosigners == ("carol", "dave")
        assert [(c.name, c.signed_at) for c in terms.cosigners] == [
            ("carol", None),
            ("dave", None),
        ]
        first = await carol.cosign(terms)
        assert [c.name for c in first.cosigners if c.signed_at is not None] == ["carol"]
        with pytest.raises(EscrowRefused) as still:
            await bob.open(cid, tmp_path / "out")
        assert still.value.code == "cosignatures_pending"
        last = await dave.cosign(await dave.agreement(cid))
        assert all(c.signed_at is not None for c in last.cosigners)
        again = await dave.cosign(await dave.agreement(cid))  # the stored reply: nothing new
        assert again.recorded_at == last.recorded_at
        sent = await dave.store.fetchall("SELECT * FROM requests WHERE type = 'cosign'")
        assert len(sent) == 1

        opened = await bob.open(cid, tmp_path / "out")
        assert opened.files[0].name == "contract.txt"
        kinds = await events_of(alice, cid, 7)
        assert ("cosigned", "carol") in kinds
        assert ("cosigned", "dave") in kinds
        assert ("cosigned_all", None) in kinds
        proofs = await alice.attestations(cid, StatementKind.AGREEMENT)
        assert sorted((p.signer, p.verified) for p in proofs) == [("carol", True), ("dave", True)]
        assert ("cosigned_all", None) in await events_of(carol, cid, 4)
        status = await alice.status(cid)
        assert [c.name for c in status.cosigners if c.signed_at] == ["carol", "dave"]


async def test_contradictory_attributes_are_refused_before_anything_is_sealed(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    async with agent(SenderAgent, world, transport, tmp_path, "alice") as alice:
        (tmp_path / "a.txt").write_text("a")
        now = int(datetime.now(UTC).timestamp())
        cases = [
            ({"dave": ReceiverAttributes(max_releases=1)}, None, "not a receiver"),
            (
                {"bob": ReceiverAttributes(not_after=now + 100)},
                ControlAttributes(not_before=now + 200),
                "not-after would not be later",
            ),
            ({"bob": ReceiverAttributes(not_after=now - 1)}, None, "bob could ever open"),
        ]
        for own, attributes, says in cases:
            with pytest.raises(SealError, match=says):
                await alice.seal(
                    [tmp_path / "a.txt"],
                    tmp_path / "a.consignment",
                    to=["bob", "carol"],
                    attributes=attributes,
                    receiver_attributes=own,
                )
            assert not (tmp_path / "a.consignment").exists()
        assert await alice.store.fetchall("SELECT * FROM sent") == []
        deposits = await alice.store.fetchall("SELECT * FROM requests WHERE type = 'deposit'")
        assert deposits == []


async def test_an_agent_refuses_a_forged_receipt_the_escrow_would_never_send(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    async with (
        agent(SenderAgent, world, transport, tmp_path, "alice") as alice,
        agent(ReceiverAgent, world, transport, tmp_path, "bob") as bob,
    ):
        cid = await sealed(alice, tmp_path, ["bob"])
        bob_identity = world.identities["bob"]
        said = Statement(
            kind=StatementKind.RECEIPT,
            consignment_id=cid,
            consignment_digest="0" * 64,
            policy_digest=bytes(32),
            signer="bob",
            signed_at=int(datetime.now(UTC).timestamp()),
        )
        forged = Attestation(
            statement=said,
            signature=sign_statement(said, world.identities["carol"].signing_key),
            certificate=to_pem(bob_identity.signing_certificate),
        )
        event = EventBody(
            consignment_id=cid,
            kind=EventKind.RECEIPT,
            receiver="bob",
            at=int(datetime.now(UTC).timestamp()),
            attestation=forged,
        )
        await world.forger().send(transport, "alice", MessageType.EVENT, event)
        async with asyncio.timeout(WAIT):
            while not (await alice.inbox()).refused:
                await alice.sync(idle=0.2)
        (refusal,) = (await alice.inbox()).refused
        assert refusal.reason == "bad_attestation"
        assert await alice.attestations(cid) == []
        assert bob is not None


async def test_the_sender_is_told_once_when_a_window_closes_unused(
    world: World, transport_factory: TransportFactory, tmp_path: Path
) -> None:
    clock = Clock()
    transport = await transport_factory()
    service = await EscrowService.open(world.escrow_dir, ESCROW_PASS, clock=clock)
    stop = asyncio.Event()
    worker = EscrowWorker(service, await transport_factory(), sweep_interval=0.1)
    task = asyncio.create_task(worker.run(stop))
    try:
        async with agent(SenderAgent, world, transport, tmp_path, "alice") as alice:
            now = int(datetime.now(UTC).timestamp())
            own = {"carol": ReceiverAttributes(not_after=now + 3600)}
            attributes = ControlAttributes(not_after=now + 60)
            cid = await sealed(
                alice, tmp_path, ["bob", "carol"], attributes=attributes, own=own, send=False
            )
            clock.advance(61)  # bob's window closed a second ago; carol's runs on
            assert ("expired", "bob") in await events_of(alice, cid, 4)
            await asyncio.sleep(0.5)  # several sweeps
            expired = [e for e in await alice.events(cid) if e.kind == EventKind.EXPIRED]
            assert [(e.receiver, (e.reason or "").split(":")[0]) for e in expired] == [
                ("bob", "not_after")
            ]
            status = await alice.status(cid)
            assert [(r.name, r.expired_at is not None) for r in status.receivers] == [
                ("bob", True),
                ("carol", False),
            ]
    finally:
        stop.set()
        await task
        await service.close()


class Clock:
    """The escrow's clock: the real time, moved forward by the test."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

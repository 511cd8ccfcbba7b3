"""A consignment's history through the agents and the real escrow worker, on
both transports (in process and RabbitMQ): the
sender sees every step, the receiver its own, each entry checked against its
hash, and the escrow's signed replies kept as proof."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker import SignedEnvelope, Transport
from client import EscrowRefused, ReceiverAgent, SenderAgent
from tests.client.agent_helpers import ESCROW_NAME, WorkerRunner, World, make_world
from tests.support import TransportFactory


@pytest.fixture
async def world(tmp_path: Path) -> World:
    return await make_world(tmp_path, ("alice", "bob", "mallory"))


@pytest.fixture
async def escrow(world: World, transport_factory: TransportFactory) -> AsyncIterator[WorkerRunner]:
    async with WorkerRunner(world, await transport_factory()) as runner:
        yield runner


async def test_history_of_a_consignment(
    world: World, escrow: WorkerRunner, transport: Transport, tmp_path: Path
) -> None:
    def root(name: str) -> Path:
        return tmp_path / "agents" / name

    ids = world.identities
    async with (
        SenderAgent(ids["alice"], transport, ESCROW_NAME, root("alice")) as alice,
        ReceiverAgent(ids["bob"], transport, ESCROW_NAME, root("bob")) as bob,
        SenderAgent(ids["mallory"], transport, ESCROW_NAME, root("mallory")) as mallory,
    ):
        source = tmp_path / "contract.txt"
        source.write_text("the contract\n")
        done = await alice.seal([source], tmp_path / "c.consignment", to=["bob"])
        cid = done.consignment_id
        await alice.send(cid)
        await bob.fetch()
        await bob.open(cid, tmp_path / "out")

        seen = await alice.history(cid)
        requests = [(e.data["signer"], e.data["type"]) for e in seen.entries if e.kind == "request"]
        assert requests == [("alice", "deposit"), ("bob", "key-request")]
        assert seen.log_size >= seen.entries[-1].seq
        assert len(seen.signed_replies) == 1
        # bob's key request is there as he signed it: a proof he asked.
        asked = next(e for e in seen.entries if e.data.get("type") == "key-request")
        wire = SignedEnvelope.from_wire(base64.b64decode(asked.data["request"]))
        assert wire.unverified().signer == ids["bob"].signer

        bobs = await bob.history(cid)
        assert {e.seq for e in bobs.entries} <= {e.seq for e in seen.entries} | {
            e.seq for e in bobs.entries if e.seq > seen.log_size
        }
        assert all("bob" in e.parties for e in bobs.entries)

        with pytest.raises(EscrowRefused) as refused:
            await mallory.history(cid)
        assert refused.value.code == "not_allowed"

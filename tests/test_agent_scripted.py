"""The agents' side of the protocol against a scripted escrow (tests/agent_helpers):
replies are verified and matched on the signed in_reply_to, requests are stored
and re-sent with the same bytes, chunks are verified and checked as a whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker import Transport
from broker.deposit import Mode
from client import ReceiverAgent, SenderAgent
from tests.agent_helpers import ESCROW_NAME, ScriptedEscrow, World, make_world


@pytest.fixture
async def world(tmp_path: Path) -> World:
    return await make_world(tmp_path)


def agents(world: World, transport: Transport, root: Path) -> tuple[SenderAgent, ReceiverAgent]:
    alice = SenderAgent(
        world.identities["alice"], transport, ESCROW_NAME, root / "alice", reply_timeout=5
    )
    bob = ReceiverAgent(
        world.identities["bob"], transport, ESCROW_NAME, root / "bob", reply_timeout=5
    )
    return alice, bob


@pytest.mark.parametrize("mode", [Mode.SPLIT, Mode.ESCROWED])
async def test_seal_send_open(
    world: World, transport: Transport, tmp_path: Path, mode: Mode
) -> None:
    (tmp_path / "report.txt").write_bytes(b"quarterly numbers\n" * 50000)
    escrow = ScriptedEscrow(world, transport)
    alice, bob = agents(world, transport, tmp_path)
    async with escrow.running(), alice, bob:
        sealed = await alice.seal(
            [tmp_path / "report.txt"], tmp_path / "r.consignment", to=["bob"], mode=mode
        )
        assert sealed.receipt.consignment_id == sealed.consignment_id
        sent = await alice.send(sealed.consignment_id)
        assert sent.chunks == 2
        inbox = await bob.fetch()
        assert [n.consignment_id for n in inbox.notifications] == [sealed.consignment_id]
        (received,) = inbox.received
        assert received.state == "complete"
        opened = await bob.open(sealed.consignment_id, tmp_path / "out")
        assert opened.sender == "alice"
        assert (tmp_path / "out" / "report.txt").read_bytes() == b"quarterly numbers\n" * 50000
        await alice.sync()
        kinds = [e.kind for e in await alice.events(sealed.consignment_id)]
        assert kinds == ["deposited", "notified", "released"]

"""`ReceiverAgent.open` of an altered file: one message, whichever header field
was altered, until something authenticated says more. The agent reads the
header before anything is verified (to know which consignment to ask for), so
it must never state what it read there as a fact."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from broker import Transport
from client import OpenError, ReceiverAgent, SenderAgent
from client.errors import EscrowRefused
from tests.client.agent_helpers import ESCROW_NAME, WorkerRunner, World, make_world
from tests.support import TransportFactory


@pytest.fixture
async def world(tmp_path: Path) -> World:
    return await make_world(tmp_path, ("alice", "bob"))


@pytest.fixture
async def escrow(world: World, transport_factory: TransportFactory) -> AsyncIterator[WorkerRunner]:
    async with WorkerRunner(world, await transport_factory()) as runner:
        yield runner


def _replace_in_line(field: bytes, old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        start = data.index(b"\n" + field + b" ") + 1
        end = data.index(b"\n", start)
        line = data[start:end]
        assert old in line
        return data[:start] + line.replace(old, new, 1) + data[end:]

    return edit


def _flip_id(data: bytes) -> bytes:
    start = data.index(b"\nid ") + 4
    digit = data[start : start + 1]
    return data[:start] + (b"1" if digit == b"0" else b"0") + data[start + 1 :]


def _flip(pos: int) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        out = bytearray(data)
        out[pos % len(out)] ^= 0x01
        return bytes(out)

    return edit


ALTERATIONS: dict[str, Callable[[bytes], bytes]] = {
    "escrow": _replace_in_line(b"escrow", b"acme", b"acmf"),
    "id": _flip_id,
    "mode": _replace_in_line(b"mode", b"split", b"splat"),
    "policy": _flip(len(b"consignment/v1\nid ") + 32 + len(b"\nescrow acme\nmode split\npolicy ")),
    "payload": _flip(-200),
    "trailer": _flip(-1),
    "truncated": lambda data: data[:-10],
    "not-a-consignment": lambda data: b"hello\n",
}


@pytest.mark.parametrize("alter", ALTERATIONS.values(), ids=ALTERATIONS.keys())
async def test_an_altered_file_gets_the_one_message(
    world: World,
    escrow: WorkerRunner,
    transport: Transport,
    tmp_path: Path,
    alter: Callable[[bytes], bytes],
) -> None:
    source = tmp_path / "r.txt"
    source.write_bytes(b"the figures\n")
    async with SenderAgent(
        world.identities["alice"], transport, ESCROW_NAME, tmp_path / "alice"
    ) as alice:
        await alice.seal([source], tmp_path / "r.consignment", to=["bob"])
    altered = tmp_path / "altered.consignment"
    altered.write_bytes(alter((tmp_path / "r.consignment").read_bytes()))
    async with ReceiverAgent(
        world.identities["bob"], transport, ESCROW_NAME, tmp_path / "bob"
    ) as bob:
        with pytest.raises(OpenError) as info:
            await bob.open(altered, tmp_path / "out")
    assert type(info.value) is OpenError
    assert (info.value.message, info.value.hint) == (OpenError.MESSAGE, OpenError.HINT)
    assert "acmf" not in str(info.value)
    assert not (tmp_path / "out").exists()
    cause = info.value.__cause__
    assert cause is None or isinstance(cause, EscrowRefused)  # the escrow's words, for logs
